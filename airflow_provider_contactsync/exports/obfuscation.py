"""Per-field obfuscation of exported values: SHA-256, SHA-512 or HMAC-SHA256, after normalisation.

Ad platforms match hashed audiences only when both sides hash the same text, so emails and phones are
normalised first, the way their documentation asks (Google Customer Match, Meta custom audiences):

- email: trimmed, lower-cased (``" Jane.Doe@Example.COM "`` -> ``"jane.doe@example.com"``);
- phone: E.164 (``"06 12 34 56 78"`` with default region FR -> ``"+33612345678"``); a number that
  cannot be read is hashed as trimmed text, and said so by :func:`normalise` (the export reports it);
- other text: trimmed.

The digest is lower-case hex. An empty or null value stays empty: hashing "" would give every empty
cell the same digest, which reads as one shared value.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Algorithm = Literal["sha256", "sha512", "hmac-sha256"]
Kind = Literal["email", "phone", "text"]
ALGORITHMS: tuple[str, ...] = ("sha256", "sha512", "hmac-sha256")


def normalise(value: str, kind: Kind, *, region: str = "FR") -> tuple[str, bool]:
    """The text to hash and whether the normalisation applied (False: a phone that could not be read)."""
    text = value.strip()
    if kind == "email":
        return text.lower(), True
    if kind == "phone":
        import phonenumbers

        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return text, False
        if not phonenumbers.is_possible_number(number):
            return text, False
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), True
    return text, True


def obfuscate(
    value: object, algorithm: Algorithm, *, kind: Kind = "text", key: bytes | None = None, region: str = "FR"
) -> str:
    """The hex digest of one value after normalisation ("" for null or empty).

    :param key: the HMAC key (from an Airflow connection); required for ``hmac-sha256``, refused otherwise.
    :raises ValueError: an unknown algorithm, or a key missing or given where it does not belong.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown hashing algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    if (algorithm == "hmac-sha256") != (key is not None):
        raise ValueError("hmac-sha256 needs a key (from an Airflow connection); sha256 and sha512 take none")
    if value is None or str(value).strip() == "":
        return ""
    text, _ = normalise(str(value), kind, region=region)
    data = text.encode("utf-8")
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest()
    if algorithm == "sha512":
        return hashlib.sha512(data).hexdigest()
    assert key is not None
    return hmac.new(key, data, hashlib.sha256).hexdigest()

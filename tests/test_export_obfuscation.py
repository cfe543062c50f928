"""Export obfuscation (issue 16, item 3): digests checked against hashlib and hmac, normalisation as ad
platforms expect it."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from airflow_provider_contactsync.exports.obfuscation import normalise, obfuscate


def test_emails_are_trimmed_and_lower_cased_before_hashing() -> None:
    expected = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert obfuscate("  Jane.Doe@Example.COM ", "sha256", kind="email") == expected
    assert (
        obfuscate("jane.doe@example.com", "sha512", kind="email") == hashlib.sha512(b"jane.doe@example.com").hexdigest()
    )


def test_phones_are_hashed_in_e164() -> None:
    assert normalise("06 12 34 56 78", "phone") == ("+33612345678", True)
    assert obfuscate("06 12 34 56 78", "sha256", kind="phone") == hashlib.sha256(b"+33612345678").hexdigest()
    assert (
        obfuscate("+1 202-555-0143", "sha256", kind="phone", region="FR") == hashlib.sha256(b"+12025550143").hexdigest()
    )
    assert normalise(" not a phone ", "phone") == ("not a phone", False)


def test_hmac_uses_the_key_and_needs_one() -> None:
    key = b"export-secret"
    assert obfuscate("Jane", "hmac-sha256", key=key) == hmac.new(key, b"Jane", hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="needs a key"):
        obfuscate("Jane", "hmac-sha256")
    with pytest.raises(ValueError, match="take none"):
        obfuscate("Jane", "sha256", key=key)
    with pytest.raises(ValueError, match="unknown hashing algorithm"):
        obfuscate("Jane", "md5")  # type: ignore[arg-type]


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_values_stay_empty(empty: object) -> None:
    assert obfuscate(empty, "sha256", kind="email") == ""

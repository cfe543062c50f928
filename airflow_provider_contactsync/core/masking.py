"""Personal data in error reports: kept raw, masked, or hashed (``reports.values``).

Error reports name the rows that were not loaded, with the value that was wrong and why. Those
values are personal data (emails, phone numbers, names). ``masked`` keeps the reason and the shape
a person needs to find the problem (``j***@example.com``, ``+33 6** *** **78``) but not the value;
``hashed`` replaces each value by a short SHA-256 digest, so the same value can be followed across
reports without being shown. A digest of an email is pseudonymous, not anonymous: anyone holding the
address can compute it.

Reasons quote values too (``refused by Brevo: ... whose EMAIL is owner@example.com``): emails in
them are masked or hashed the same way.
"""

from __future__ import annotations

import hashlib
import re

VALUE_MODES = ("raw", "masked", "hashed")

_EMAIL = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+\.[A-Za-z0-9-]{2,}")


def protect(text: str, mode: str) -> str:
    """A report value as ``mode`` says (``raw`` returns it as it is)."""
    if mode == "raw" or not text:
        return text
    if mode == "hashed":
        return digest(text)
    if "@" in text and _EMAIL.fullmatch(text.strip()):
        return mask_email(text.strip())
    return mask_text(text)


def protect_reason(reason: str, mode: str) -> str:
    """A reason with the emails it quotes masked or hashed."""
    if mode == "raw" or "@" not in reason:
        return reason
    return _EMAIL.sub(lambda found: protect(found.group(0), mode), reason)


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: the domain stays (it says which provider failed)."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_text(text: str) -> str:
    """Keep the shape: separators and the length stay, letters and digits become ``*`` except the
    first one and (for text of 6 characters or more) the last two."""
    keep_tail = 2 if len(text) >= 6 else 0
    out = []
    for index, char in enumerate(text):
        visible = index == 0 or index >= len(text) - keep_tail or not char.isalnum()
        out.append(char if visible else "*")
    return "".join(out)


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

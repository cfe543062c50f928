"""Contact values as Brevo checks them: emails, phone numbers, and attribute values by type.

Brevo silently ignores attribute values that do not fit the attribute's type; :func:`coerce_value`
returns :data:`DROP` for those so callers can mimic that (and the request log still shows them).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, region_code_for_country_code

DROP = object()
"""Marker: the value does not fit the attribute and is ignored, as Brevo does."""

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
PHONE_ATTRIBUTES = frozenset({"SMS", "WHATSAPP", "LANDLINE_NUMBER"})
ATTRIBUTE_TYPES = ("text", "date", "float", "boolean", "id", "category", "multiple-choice", "user")
ATTRIBUTE_CATEGORIES = ("normal", "transactional", "category", "calculated", "global")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Brevo's ids are int64, as are SQLite's integers: a larger Python int cannot even be looked up."""


def digits(text: str) -> int | None:
    """The integer that ``text`` spells in ASCII digits (``"42"``), else ``None`` (``"²"`` and ``"٤٢"``
    are digits to ``str.isdigit`` but not ids)."""
    return int(text) if text.isascii() and text.isdigit() else None


def db_int(value: int) -> int | None:
    """``value`` as an SQLite parameter: ``None`` (which matches no row) when it is outside int64, so an
    id that cannot exist is simply not found."""
    return value if INT64_MIN <= value <= INT64_MAX else None


def normalize_email(value: Any) -> str | None:
    """Lower-cased email, or ``None`` when it is not an email address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if EMAIL_RE.match(email) and len(email) <= 254 else None


_PHONE_PUNCTUATION = re.compile(r"[\s.\-()]")


def normalize_phone(value: Any) -> str | None:
    """Digits with country code (``33612345678``) from ``+33…``, ``33…`` or ``0033…``; ``None`` if invalid."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    if text[:1] == "+" and text[1:].isdigit():  # the usual E.164 form: nothing to strip
        text = text[1:]
    else:
        text = _PHONE_PUNCTUATION.sub("", text)
        if text.startswith("+"):
            text = text[1:]
        elif text.startswith("00"):
            text = text[2:]
    if not text.isdigit() or not 6 <= len(text) <= 15:
        return None
    fast = _phone_fast_path(text)
    return _parse_phone(text) if fast is _UNKNOWN else fast


def _parse_phone(digits: str) -> str | None:
    """The reference: phonenumbers' parse and length check (~25 µs a number)."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return f"{number.country_code}{number.national_number}"


_UNKNOWN: Any = object()
_country: dict[str, tuple[int, int, re.Pattern[str] | None] | None] = {}
_possible_length: dict[tuple[int, int], bool] = {}


def _phone_fast_path(digits: str) -> Any:
    """:func:`_parse_phone`'s answer without parsing, or ``_UNKNOWN`` (then parse).

    For ``+<digits>``, phonenumbers takes the country code as the first 1-3 digits that name one,
    strips a national prefix only when its ``national_prefix_for_parsing`` matches the rest, and
    then checks only the length of the national number. So when no national prefix matches, the
    answer is ``<code><int(rest)>`` or ``None`` depending on (code, len(rest)) alone, learned once
    from the reference.
    """
    head = digits[:3]
    if head not in _country:
        _country[head] = _country_of(head)
    country = _country[head]
    if country is None or not digits.isascii():
        return _UNKNOWN
    size, code, prefix_re = country
    rest = digits[size:]
    if prefix_re is not None and prefix_re.match(rest):
        return _UNKNOWN
    key = (code, len(rest))
    possible = _possible_length.get(key)
    if possible is None:
        answer = _parse_phone(digits)
        if answer is not None and answer != f"{code}{int(rest)}":
            return answer  # not the shape this shortcut assumes: never learn from it
        _possible_length[key] = answer is not None
        return answer
    return f"{code}{int(rest)}" if possible else None


def _country_of(head: str) -> tuple[int, int, re.Pattern[str] | None] | None:
    """(code length, country calling code, national prefix pattern) for a number's first 3 digits."""
    if not head.isascii() or not head.isdigit() or head[0] == "0":
        return None
    for size in range(1, len(head) + 1):
        code = int(head[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region_code_for_country_code(code))
            prefix = metadata.national_prefix_for_parsing if metadata is not None else None
            return size, code, re.compile(prefix) if prefix else None
    return None


def parse_date(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return None
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return None


def coerce_value(attr: dict[str, Any], value: Any) -> Any:
    """The stored form of ``value`` for attribute ``attr`` (a store row), or :data:`DROP`."""
    kind = attr["type"]
    if value is None:
        return DROP
    if kind == "text":
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            return DROP
        return value if isinstance(value, str) else str(value)
    if kind == "date":
        return parse_date(value) or DROP
    if kind == "float":
        if isinstance(value, bool):
            return DROP
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else DROP  # NaN and infinities are not JSON numbers
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return DROP
            if not math.isfinite(number):
                return DROP
            return int(number) if number.is_integer() and "." not in value else number
        return DROP
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return DROP
    if kind == "id":
        if isinstance(value, bool):
            return DROP
        if isinstance(value, int):
            return value
        number = digits(value.strip()) if isinstance(value, str) else None
        return DROP if number is None else number
    if kind == "category":
        for item in attr.get("enumeration") or []:
            if isinstance(value, bool):
                break
            if isinstance(value, int) and value == item["value"]:
                return item["value"]
            if isinstance(value, str) and (
                value.strip() == str(item["value"]) or value.strip().lower() == str(item["label"]).lower()
            ):
                return item["value"]
        return DROP
    if kind == "multiple-choice":
        options = {o.lower(): o for o in attr.get("options") or []}
        items = value if isinstance(value, list) else value.split(",") if isinstance(value, str) else None
        if items is None:
            return DROP
        chosen = [options[str(i).strip().lower()] for i in items if str(i).strip().lower() in options]
        return chosen or DROP
    return DROP


def render_value(attr: dict[str, Any] | None, value: Any) -> Any:
    """How a stored value is shown in answers: category attributes show their label."""
    if attr is not None and attr["type"] == "category":
        for item in attr.get("enumeration") or []:
            if item["value"] == value:
                return item["label"]
    return value

"""Field values between their three forms: JSON (REST bodies and answers), SQLite columns, CSV (Bulk 2.0).

Stored forms: text as TEXT, booleans 0/1, doubles REAL, dates ``YYYY-MM-DD``, date-times as whole
seconds since the epoch (Salesforce keeps date-times to the second: every value it answers ends in
``.000+0000``, which is why many records share one ``SystemModstamp``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from . import errors
from .errors import Problem
from .schema import Field, normalize_id

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE
)
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")


def parse_date(text: str) -> str | None:
    """``YYYY-MM-DD`` if ``text`` is a real calendar date, else None."""
    match = _DATE.fullmatch(text)
    if not match:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError:
        return None


def parse_datetime(value: str | dt.datetime) -> int | None:
    """Whole epoch seconds from an aware datetime or an ISO date-time string (``Z``, ``+0000`` and
    ``+00:00`` offsets; no offset means UTC, as Salesforce reads it); None if it is not one."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return math.floor(value.timestamp())
    if not isinstance(value, str):
        return None
    match = _DATETIME.fullmatch(value.strip())
    if not match:
        return None
    offset = 0
    zone = match[8]
    if zone and zone.upper() != "Z":
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 60 + int(digits[2:])) * 60 * (1 if zone[0] == "+" else -1)
    try:
        stamp = dt.datetime(
            int(match[1]),
            int(match[2]),
            int(match[3]),
            int(match[4]),
            int(match[5]),
            int(match[6]),
            tzinfo=dt.timezone.utc,
        )
    except ValueError:
        return None
    return int(stamp.timestamp()) - offset


def render_datetime(seconds: int | None, bulk: bool = False) -> str | None:
    """REST: ``2024-01-15T10:30:00.000+0000``; Bulk 2.0 CSV: ``2024-01-15T10:30:00.000Z``."""
    if seconds is None:
        return None
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000")
    return stamp + ("Z" if bulk else "+0000")


def to_json(f: Field, stored: Any) -> Any:
    """A stored value as the REST API answers it."""
    if stored is None:
        return None
    if f.type == "boolean":
        return bool(stored)
    if f.type == "datetime":
        return render_datetime(stored)
    if f.type == "double":
        return float(stored)
    return stored


def to_csv(f: Field, stored: Any) -> str:
    """A stored value as a Bulk 2.0 query result cell (empty for null)."""
    if stored is None:
        return ""
    if f.type == "boolean":
        return "true" if stored else "false"
    if f.type == "datetime":
        return render_datetime(stored, bulk=True) or ""
    if f.type == "double":
        number = float(stored)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    return str(stored)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER_INT" if isinstance(value, int) else "VALUE_NUMBER_FLOAT"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"


def _cannot(kind: str, value: Any) -> errors.ApiError:
    shown = value if isinstance(value, (str, int, float)) else ""
    return errors.json_parser(
        f"Cannot deserialize instance of {kind} from {_type_name(value)} value {shown} "
        "or request may be missing a required field"
    )


def from_json(f: Field, value: Any) -> tuple[Any, Problem | None]:
    """A written value in its stored form and the field-level problem, if any.

    A value of the wrong JSON type raises :class:`~.errors.ApiError` ``JSON_PARSER_ERROR`` (the whole
    request fails, as in Salesforce); a value Salesforce parses but refuses (too long, bad email, not in
    the picklist...) is returned as a :class:`~.errors.Problem` naming the field.
    """
    if value is None:
        return None, None
    if f.type == "boolean":
        if not isinstance(value, bool):
            raise _cannot("boolean", value)
        return int(value), None
    if f.type == "double":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _cannot("double", value)
        try:
            number = round(float(value), f.scale)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            return None, Problem(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        if f.precision and abs(number) >= 10 ** (f.precision - f.scale):
            return None, Problem(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return number, None
    if f.type == "date":
        if not isinstance(value, str):
            raise _cannot("date", value)
        date = parse_date(value)
        if date is None:
            raise _cannot("date", value)
        return date, None
    if f.type == "datetime":
        if not isinstance(value, str):
            raise _cannot("datetime", value)
        seconds = parse_datetime(value)
        if seconds is None:
            raise _cannot("datetime", value)
        return seconds, None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _cannot("string", value)
    text = value if isinstance(value, str) else str(value)
    if text == "":
        return None, None  # Salesforce stores an empty string as null
    if f.type in ("id", "reference"):
        normalized = normalize_id(text)
        prefixes = {"Account": "001", "User": "005", "Contact": "003", "Lead": "00Q"}
        wanted = {prefixes.get(name) for name in f.reference_to}
        if normalized is None or (wanted and normalized[:3] not in wanted):
            return None, Problem("MALFORMED_ID", f"{f.label}: id value of incorrect type: {text}", [f.name])
        return normalized, None
    if f.length and len(text) > f.length:
        return None, Problem(
            "STRING_TOO_LONG", f"{f.label}: data value too large: {text} (max length={f.length})", [f.name]
        )
    if f.type == "email" and not _EMAIL.fullmatch(text):
        return None, Problem("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
    if f.picklist and text not in f.picklist:
        return None, Problem(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{f.label}: bad value for restricted picklist field: {text}",
            [f.name],
        )
    return text, None

"""contactsync's own formula functions: cleaning and converting contact data.

Unlike standard CEL functions, these are null-tolerant: ``null`` in gives ``null`` out (except
``isNull`` and ``ifNull``, whose job is null), because empty cells are normal in contact data.
Bad values raise :class:`RowError` with a reason the error report can show as is.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import os
from functools import lru_cache
from typing import Any

import phonenumbers

from ..errors import RowError
from .stdlib import UTC, int_of_text, is_int_text, to_string
from .values import UInt, check_int, short, type_name

_TRUE = frozenset({"true", "yes", "1", "oui", "y", "t", "vrai"})
_FALSE = frozenset({"false", "no", "0", "non", "n", "f", "faux"})
#: Formats ``asDate()`` tries after ISO 8601; day-first, as in most of Europe.
DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d", "%d/%m/%y")


def _expect(name: str, value: Any, wanted: str) -> RowError:
    return RowError(f"{name}: expected {wanted}, got {type_name(value)} {short(value)}")


def normalize_email(value: Any) -> str | None:
    if type(value) is str:
        return value.strip().lower()
    if value is None:
        return None
    raise _expect("normalizeEmail", value, "a string")


def _phone_library() -> object:
    """``phonenumbers``, or its drop-in Rust port ``rphonenumbers`` (~6x faster) when installed.

    Phone parsing is most of a typical transform's cost. The port is optional (extra ``fast``),
    checked against ``phonenumbers`` by tests/test_formulas_phone_backend.py, and can be turned off
    with ``CONTACTSYNC_PHONE_LIBRARY=phonenumbers``.
    """
    if os.environ.get("CONTACTSYNC_PHONE_LIBRARY", "auto") == "phonenumbers":
        return phonenumbers
    try:
        return importlib.import_module("rphonenumbers")
    except ImportError:
        return phonenumbers


PHONE_LIBRARY = _phone_library()
_parse = PHONE_LIBRARY.parse  # type: ignore[attr-defined]
_is_valid = PHONE_LIBRARY.is_valid_number  # type: ignore[attr-defined]
_format = PHONE_LIBRARY.format_number  # type: ignore[attr-defined]
_E164 = PHONE_LIBRARY.PhoneNumberFormat.E164  # type: ignore[attr-defined]
_ParseError = PHONE_LIBRARY.NumberParseException  # type: ignore[attr-defined]


@lru_cache(maxsize=16384)
def normalize_phone_number(text: str, regions: tuple[str, ...]) -> str | None:
    """E.164 form of ``text`` for the first region where it is a valid number, else ``None``.

    Cached on (text, regions): the same helper serves the engine and the benchmark baseline.
    """
    for region in regions or (None,):
        try:
            number = _parse(text, region)
        except _ParseError:
            continue
        if _is_valid(number):
            return _format(number, _E164)
    return None


def phone_regions(regions: Any) -> tuple[str, ...]:
    """Normalise the optional region argument ("FR" or ["FR", "BE"]) to an upper-case tuple."""
    if regions is None:
        return ()
    if type(regions) is str:
        return (regions.upper(),)
    if type(regions) in (list, tuple) and all(type(r) is str for r in regions):
        return tuple(r.upper() for r in regions)
    raise RowError(f"normalizePhoneNumber: regions must be a string or a list of strings, got {short(regions)}")


def phone_error(value: str, regions: tuple[str, ...]) -> RowError:
    tried = f"tried {', '.join(regions)}" if regions else "international format expected, e.g. +33 6 12 34 56 78"
    return RowError(f"normalizePhoneNumber: {short(value)} is not a valid phone number ({tried})")


def normalize_phone(value: Any, regions: Any = None) -> str | None:
    if type(value) is not str:
        if value is None:
            return None
        raise _expect("normalizePhoneNumber", value, "a string")
    key = regions if type(regions) is tuple else phone_regions(regions)
    result = normalize_phone_number(value, key)
    if result is None:
        raise phone_error(value, key)
    return result


def trim(value: Any) -> str | None:
    if type(value) is str:
        return value.strip()
    if value is None:
        return None
    raise _expect("trim", value, "a string")


def lower(value: Any) -> str | None:
    if type(value) is str:
        return value.lower()
    if value is None:
        return None
    raise _expect("lower", value, "a string")


def upper(value: Any) -> str | None:
    if type(value) is str:
        return value.upper()
    if value is None:
        return None
    raise _expect("upper", value, "a string")


def is_null(value: Any) -> bool:
    return value is None


def if_null(value: Any, default: Any) -> Any:
    return default if value is None else value


def as_int(value: Any) -> int | None:
    t = type(value)
    if t is int:
        return value
    if t is str:
        text = value.strip()
        if text.isdigit() and text.isascii() and len(text) < 19:  # fast path: plain digits fit int64
            return int(text)
        if is_int_text(text):
            return check_int(int_of_text(text))
        try:
            number = float(text.replace(",", ".")) if "_" not in text else math.nan
        except ValueError:
            number = math.nan
        if number.is_integer():
            return check_int(int(number))
        raise RowError(f"asInt: {short(value)} is not an integer")
    if value is None:
        return None
    if t is UInt:
        return check_int(int(value))
    if t is float:
        if value.is_integer():
            return check_int(int(value))
        raise RowError(f"asInt: {short(value)} is not an integer")
    raise _expect("asInt", value, "a string or a number")


def as_float(value: Any) -> float | None:
    t = type(value)
    if t is float:
        return value
    if t is int or t is UInt:
        return float(value)
    if t is str:
        text = value.strip()
        if "," in text and "." not in text and text.count(",") == 1:
            text = text.replace(",", ".")
        if "_" not in text and text:
            try:
                return float(text)
            except ValueError:
                pass
        raise RowError(f"asFloat: {short(value)} is not a number")
    if value is None:
        return None
    raise _expect("asFloat", value, "a string or a number")


def as_bool(value: Any) -> bool | None:
    if value is True or value is False or value is None:
        return value
    t = type(value)
    if t is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise RowError(f"asBool: {short(value)} is not a boolean (use true/false, yes/no, 1/0, oui/non)")
    if (t is int or t is UInt) and value in (0, 1):
        return bool(value)
    raise RowError(f"asBool: {short(value)} is not a boolean")


def as_string(value: Any) -> str | None:
    """CEL's ``string()`` conversion, but null-tolerant and refusing lists and maps."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, (list, dict)):
        raise _expect("asString", value, "a scalar value")
    try:
        return to_string(value)
    except RowError:
        raise _expect("asString", value, "a scalar value") from None


def _parse_date(name: str, value: str, fmt: Any) -> dt.date:
    text = value.strip()
    if fmt is not None:
        if type(fmt) is not str:
            raise _expect(name, fmt, "a format string")
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            raise RowError(f"{name}: {short(value)} does not match the format {short(fmt)}") from None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        pass
    for candidate in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, candidate).date()
        except ValueError:
            continue
    raise RowError(f"{name}: {short(value)} is not a date (expected YYYY-MM-DD, DD/MM/YYYY or DD.MM.YYYY)")


def as_date(value: Any, fmt: Any = None) -> dt.date | None:
    if type(value) is str:
        return _parse_date("asDate", value, fmt)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise _expect("asDate", value, "a string, date or timestamp")


def format_date(value: Any, fmt: Any = None) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        value = _parse_date("formatDate", value, None)
    if not isinstance(value, dt.date):
        raise _expect("formatDate", value, "a date or timestamp")
    if fmt is None:
        return value.isoformat() if type(value) is dt.date else value.date().isoformat()
    if type(fmt) is not str:
        raise _expect("formatDate", fmt, "a format string")
    return value.strftime(fmt)


def as_timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    t = type(value)
    if t is str:
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = dt.datetime.combine(_parse_date("asTimestamp", value, None), dt.time())
            except RowError:
                raise RowError(f"asTimestamp: {short(value)} is not a timestamp (expected ISO 8601)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if t is int or t is float:
        try:
            return dt.datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError(f"asTimestamp: {short(value)} is out of range") from None
    raise _expect("asTimestamp", value, "a string, number, date or timestamp")

"""Standard CEL functions: conversions, string and size functions, timestamp accessors, and the
cel-go strings extension (charAt, indexOf, replace, split, substring, join, ...).

Standard functions follow CEL strictly: ``null`` is not a string, so ``size(null)`` is a
"no such overload" error. (The contactsync functions in ``contactsync.py`` are null-tolerant.)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import RowError
from .limits import MAX_REGEX_CHARS, MAX_REPLACE_CHARS
from .regex import Regex, cached
from .values import UINT_MAX, UInt, check_int, check_uint, no_overload, short, type_value

UTC = dt.timezone.utc
_FLOAT_TEXT = Regex(r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def is_int_text(text: str) -> bool:
    """``[+-]?[0-9]+``, the integer syntax of conversions from text."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


def int_of_text(text: str) -> int:
    """An int from :func:`is_int_text` text; past int64 (even past Python's 4,300 digits) is an overflow."""
    try:
        return int(text)
    except ValueError:
        raise RowError("int overflow") from None


# -- conversions -----------------------------------------------------------------------------------


def to_int(value: Any) -> int:
    t = type(value)
    if t is int:
        return value
    if t is UInt:
        return check_int(int(value))
    if t is float:
        if math.isnan(value) or math.isinf(value):
            raise RowError("int overflow")
        return check_int(int(value))
    if t is str:
        if is_int_text(value):
            return check_int(int_of_text(value))
        raise RowError(f"int: cannot convert {short(value)} to int")
    if isinstance(value, dt.datetime):
        return check_int(int((value - _EPOCH).total_seconds() // 1))
    raise no_overload("int", value)


def to_uint(value: Any) -> UInt:
    t = type(value)
    if t is UInt:
        return value
    if t is int:
        return check_uint(value)
    if t is float:
        if math.isnan(value) or math.isinf(value) or not -1 < value < UINT_MAX + 1:
            raise RowError("uint overflow")
        return check_uint(int(value))
    if t is str:
        if is_int_text(value) and not value.startswith("-"):
            return check_uint(int_of_text(value))
        raise RowError(f"uint: cannot convert {short(value)} to uint")
    raise no_overload("uint", value)


def to_double(value: Any) -> float:
    t = type(value)
    if t is float:
        return value
    if t is int or t is UInt:
        return float(value)
    if t is str:
        if _FLOAT_TEXT.fullmatch(value) is not None:
            return float(value)
        raise RowError(f"double: cannot convert {short(value)} to double")
    raise no_overload("double", value)


def format_double(x: float) -> str:
    """Format a double like Go's ``%g`` (what cel-go's ``string(double)`` prints)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, exp = Decimal(repr(x)).as_tuple()
    assert isinstance(exp, int)
    dp = len(digit_tuple) + exp
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    nd = len(digits)
    e = dp - 1
    if e < -4 or e >= 6:  # Go switches to exponent form at the shortest-%g precision, 6
        text = digits[0] + ("." + digits[1:] if nd > 1 else "") + ("e-" if e < 0 else "e+") + f"{abs(e):02d}"
    elif dp <= 0:
        text = "0." + "0" * (-dp) + digits
    elif dp >= nd:
        text = digits + "0" * (dp - nd)
    else:
        text = digits[:dp] + "." + digits[dp:]
    return "-" + text if sign else text


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with the shortest fraction, as cel-go prints timestamps."""
    utc = value.astimezone(UTC) if value.tzinfo else value
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_duration(value: dt.timedelta) -> str:
    micros = value // dt.timedelta(microseconds=1)
    seconds = Decimal(micros).scaleb(-6).normalize()
    return f"{seconds:f}s"


def to_string(value: Any) -> str:
    t = type(value)
    if t is str:
        return value
    if t is int or t is UInt:
        return str(int(value))
    if t is float:
        return format_double(value)
    if t is bool:
        return "true" if value else "false"
    if t is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise RowError("string: bytes are not valid UTF-8") from None
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if t is dt.timedelta:
        return format_duration(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if t is type(type_value(None)):
        return value.name
    raise no_overload("string", value)


def to_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value) is str:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise RowError(f"bool: cannot convert {short(value)} to bool")
    raise no_overload("bool", value)


def to_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8")
    raise no_overload("bytes", value)


_RFC3339 = Regex(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})", capture=True)


def parse_timestamp(text: str) -> dt.datetime:
    groups = _RFC3339.fullmatch(text)
    if groups is None:
        raise RowError(f"timestamp: cannot parse {short(text)} (expected RFC 3339, e.g. 2024-01-31T10:00:00Z)")
    day, clock, frac, zone = groups
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        return dt.datetime.fromisoformat(f"{day}T{clock}.{(frac or '0')[:6]:0<6}{zone}")
    except ValueError:
        raise RowError(f"timestamp: {short(text)} is out of range") from None


def to_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    t = type(value)
    if t is str:
        return parse_timestamp(value)
    if t is int:
        try:
            return _EPOCH + dt.timedelta(seconds=value)
        except OverflowError:
            raise RowError("timestamp overflow") from None
    raise no_overload("timestamp", value)


#: Units in the order they are tried: two-letter units before the one-letter units they start with.
_UNITS = ("ns", "us", "µs", "ms", "s", "m", "h")
_DIGITS = frozenset("0123456789")
_UNIT_MICROS = {
    "ns": Decimal("0.001"),
    "us": Decimal(1),
    "µs": Decimal(1),
    "ms": Decimal(1000),
    "s": Decimal(1_000_000),
    "m": Decimal(60_000_000),
    "h": Decimal(3_600_000_000),
}


def parse_duration(text: str) -> dt.timedelta:
    """Go duration syntax: ``1h30m``, ``-1.5s``, ``100ms``."""
    body = text
    negative = body.startswith("-")
    if body[:1] in "+-":
        body = body[1:]
    if body == "0":
        return dt.timedelta(0)
    micros = Decimal(0)
    pos, end = 0, len(body)
    while pos < end:  # parts like "1.5h": digits, an optional dot and digits, a unit
        start = pos
        while pos < end and body[pos] in _DIGITS:
            pos += 1
        if pos < end and body[pos] == ".":
            pos += 1
            while pos < end and body[pos] in _DIGITS:
                pos += 1
        number = body[start:pos]
        unit = next((u for u in _UNITS if body.startswith(u, pos)), None)
        if unit is None or number in ("", "."):
            raise RowError(f"duration: cannot parse {short(text)} (e.g. 1h30m, 90s, 1.5h)")
        micros += Decimal(number) * _UNIT_MICROS[unit]
        pos += len(unit)
    if not body:
        raise RowError(f"duration: cannot parse {short(text)}")
    try:
        result = dt.timedelta(microseconds=int(-micros if negative else micros))
    except OverflowError:
        raise RowError("duration overflow") from None
    return result


def to_duration(value: Any) -> dt.timedelta:
    if type(value) is dt.timedelta:
        return value
    if type(value) is str:
        return parse_duration(value)
    raise no_overload("duration", value)


def dyn(value: Any) -> Any:
    return value


def type_of(value: Any) -> Any:
    return type_value(value)


# -- size and strings ------------------------------------------------------------------------------


def size(value: Any) -> int:
    t = type(value)
    if t is str or t is bytes or t is list or t is dict or t is tuple:
        return len(value)
    raise no_overload("size", value)


def _strs(name: str, *args: Any) -> None:
    for a in args:
        if type(a) is not str:
            raise no_overload(name, *args)


def contains(s: Any, sub: Any) -> bool:
    _strs("contains", s, sub)
    return sub in s


def starts_with(s: Any, prefix: Any) -> bool:
    _strs("startsWith", s, prefix)
    return s.startswith(prefix)


def ends_with(s: Any, suffix: Any) -> bool:
    _strs("endsWith", s, suffix)
    return s.endswith(suffix)


def pattern_error(pattern: str, reason: str) -> str:
    return f"matches: invalid regular expression {short(pattern)}: {reason}"


def matches(s: Any, pattern: Any) -> bool:
    """``matches`` with a pattern read from data: compiled through a bounded cache."""
    _strs("matches", s, pattern)
    if len(pattern) > MAX_REGEX_CHARS:
        raise RowError(
            f"matches: the regular expression is {len(pattern):,} characters, over the limit of {MAX_REGEX_CHARS:,}"
        )
    regex = cached(pattern)
    if type(regex) is str:
        raise RowError(pattern_error(pattern, regex))
    return regex.search(s)


def matches_regex(s: Any, regex: Regex) -> bool:
    """``matches`` with a literal pattern, compiled with the formula."""
    if type(s) is not str:
        raise no_overload("matches", s, regex.pattern)
    return regex.search(s)


def _int_arg(name: str, value: Any) -> int:
    if type(value) is not int:
        raise RowError(f"no such overload: {name} expects an int, got {type_value(value).name}")
    return value


def char_at(s: Any, i: Any) -> str:
    _strs("charAt", s)
    i = _int_arg("charAt", i)
    if 0 <= i <= len(s):
        return s[i : i + 1]
    raise RowError(f"charAt: index out of range: {i}")


def index_of(s: Any, sub: Any, offset: Any = 0) -> int:
    _strs("indexOf", s, sub)
    offset = _int_arg("indexOf", offset)
    if not 0 <= offset <= len(s):
        raise RowError(f"indexOf: index out of range: {offset}")
    return s.find(sub, offset)


def last_index_of(s: Any, sub: Any, offset: Any = None) -> int:
    _strs("lastIndexOf", s, sub)
    if offset is None:
        return s.rfind(sub)
    offset = _int_arg("lastIndexOf", offset)
    if not 0 <= offset <= len(s):
        raise RowError(f"lastIndexOf: index out of range: {offset}")
    return s.rfind(sub, 0, offset + len(sub))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def lower_ascii(s: Any) -> str:
    _strs("lowerAscii", s)
    return s.translate(_ASCII_LOWER)


def upper_ascii(s: Any) -> str:
    _strs("upperAscii", s)
    return s.translate(_ASCII_UPPER)


def replace(s: Any, old: Any, new: Any, n: Any = -1) -> str:
    _strs("replace", s, old, new)
    n = _int_arg("replace", n)
    if len(new) > len(old):
        count = s.count(old) if n < 0 else min(n, s.count(old))
        size = len(s) + count * (len(new) - len(old))
        if size > MAX_REPLACE_CHARS:
            raise RowError(f"replace: the result would be {size:,} characters, over the limit of {MAX_REPLACE_CHARS:,}")
    return s.replace(old, new, n if n >= 0 else -1)


def split(s: Any, sep: Any, n: Any = -1) -> list[str]:
    _strs("split", s, sep)
    n = _int_arg("split", n)
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        if 0 < n < len(chars):
            chars = chars[: n - 1] + ["".join(chars[n - 1 :])]
        return chars
    return s.split(sep, n - 1 if n > 0 else -1)


def substring(s: Any, start: Any, end: Any = None) -> str:
    _strs("substring", s)
    start = _int_arg("substring", start)
    end = len(s) if end is None else _int_arg("substring", end)
    if not 0 <= start <= len(s) or not 0 <= end <= len(s):
        raise RowError(f"substring: index out of range: {start if not 0 <= start <= len(s) else end}")
    if start > end:
        raise RowError(f"substring: invalid range: {start} > {end}")
    return s[start:end]


def join(items: Any, sep: Any = "") -> str:
    if type(items) not in (list, tuple) or type(sep) is not str:
        raise no_overload("join", items, sep)
    for item in items:
        if type(item) is not str:
            raise RowError(f"join: list items must be strings, got {type_value(item).name}")
    return sep.join(items)


# -- timestamps ------------------------------------------------------------------------------------

_OFFSET = Regex(r"([+-])(\d{2}):?(\d{2})", capture=True)


@lru_cache(maxsize=128)
def _zone(name: str) -> dt.tzinfo:
    offset = _OFFSET.fullmatch(name)
    if offset is not None:
        sign, hours, minutes = offset
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
        return dt.timezone(-delta if sign == "-" else delta)
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except Exception:
        raise RowError(f"unknown time zone: {short(name)}") from None


def _local(name: str, value: Any, tz: Any) -> Any:
    if isinstance(value, dt.datetime):
        if tz is None:
            return value.astimezone(UTC) if value.tzinfo else value
        if type(tz) is not str:
            raise no_overload(name, value, tz)
        return value.astimezone(_zone(tz))
    if isinstance(value, dt.date) and tz is None:
        return value
    raise no_overload(name, value) if tz is None else no_overload(name, value, tz)


def _duration_part(value: Any, unit: dt.timedelta) -> int | None:
    if type(value) is dt.timedelta:
        q = abs(value) // unit
        return -q if value < dt.timedelta(0) else q
    return None


def get_full_year(value: Any, tz: Any = None) -> int:
    return _local("getFullYear", value, tz).year


def get_month(value: Any, tz: Any = None) -> int:
    return _local("getMonth", value, tz).month - 1


def get_date(value: Any, tz: Any = None) -> int:
    return _local("getDate", value, tz).day


def get_day_of_month(value: Any, tz: Any = None) -> int:
    return _local("getDayOfMonth", value, tz).day - 1


def get_day_of_week(value: Any, tz: Any = None) -> int:
    return _local("getDayOfWeek", value, tz).isoweekday() % 7


def get_day_of_year(value: Any, tz: Any = None) -> int:
    return _local("getDayOfYear", value, tz).timetuple().tm_yday - 1


def _clock_part(name: str, unit: dt.timedelta, read: Callable[[dt.datetime], int]) -> Callable[..., int]:
    """A CEL clock accessor: the whole units of a duration, or a timestamp's field in ``tz``."""

    def accessor(value: Any, tz: Any = None) -> int:
        part = _duration_part(value, unit)
        if part is not None and tz is None:
            return part
        local = _local(name, value, tz)
        if not isinstance(local, dt.datetime):
            raise no_overload(name, value)
        return read(local)

    return accessor


get_hours = _clock_part("getHours", dt.timedelta(hours=1), lambda t: t.hour)
get_minutes = _clock_part("getMinutes", dt.timedelta(minutes=1), lambda t: t.minute)
get_seconds = _clock_part("getSeconds", dt.timedelta(seconds=1), lambda t: t.second)
get_milliseconds = _clock_part("getMilliseconds", dt.timedelta(milliseconds=1), lambda t: t.microsecond // 1000)

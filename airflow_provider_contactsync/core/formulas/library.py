"""The function registry: every function a formula may call, with its overloads and docs.

One table drives the checker (arity, argument types, result type), the compiler (which Python
callable or inline template to emit) and the generated reference in ``docs/formulas.md``.
Arity counts the receiver: ``email.normalizeEmail()`` and ``normalizeEmail(email)`` both have 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import contactsync as cs
from . import stdlib as std

Overload = tuple[tuple[str, ...], str]


@dataclass(frozen=True)
class FunctionDef:
    """One function: its Python implementation, typed overloads and user documentation.

    :param safe: never raises, whatever the arguments (lets the compiler skip error plumbing).
    :param total: cannot raise when the argument types statically match an overload.
    :param inline: Python expression template over ``{0}``, ``{1}``... used instead of a call.
    :param result: computes the result type from the argument types, when overloads can't say.
    """

    name: str
    impl: Callable[..., Any]
    overloads: tuple[Overload, ...]
    description: str
    example: str
    group: str
    safe: bool = False
    total: bool = False
    inline: str | None = None
    result: Callable[[Sequence[str]], str] | None = None
    arities: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arities", frozenset(len(params) for params, _ in self.overloads))


class FunctionInfo(NamedTuple):
    """Public registry entry: accepted argument counts (receiver included) and a description."""

    arities: frozenset[int]
    description: str


def _ov(result: str, *param_lists: str) -> tuple[Overload, ...]:
    """Overloads sharing one result type; each param list is a comma-separated string."""
    return tuple((tuple(p.split(",")) if p else (), result) for p in param_lists)


def _nullable(result: str, *param_lists: str) -> tuple[Overload, ...]:
    """Overloads of a null-in/null-out function: the same plus a null first argument."""
    extra = {",".join(["null", *p.split(",")[1:]]) for p in param_lists}
    return _ov(result, *param_lists) + _ov("null", *sorted(extra))


def _if_null_result(types: Sequence[str]) -> str:
    value, default = types
    if value == "null":
        return default
    if value == default or default == "null":
        return value
    return "dyn"


_TS = ("timestamp", "timestamp,string", "date")
_TS_D = ("timestamp", "timestamp,string", "duration")

_DEFS: list[FunctionDef] = [
    # -- contactsync -------------------------------------------------------------------------------
    FunctionDef(
        "normalizeEmail",
        cs.normalize_email,
        _nullable("string", "string"),
        "Trim and lower-case an e-mail address.",
        'email.normalizeEmail()  // " Ann@X.org " -> "ann@x.org"',
        "contactsync",
        total=True,
    ),
    FunctionDef(
        "normalizePhoneNumber",
        cs.normalize_phone,
        _nullable("string", "string", "string,string", "string,list"),
        "Phone number in E.164 form. Without regions the number must be international (+33...); "
        "with a region or a list of regions, each is tried in order and the first valid number wins. "
        "Invalid numbers are row errors.",
        'phone.normalizePhoneNumber(["FR", "BE"])  // "06 12 34 56 78" -> "+33612345678"',
        "contactsync",
    ),
    FunctionDef(
        "trim",
        cs.trim,
        _nullable("string", "string"),
        "Remove leading and trailing whitespace.",
        "(first_name + ' ' + last_name).trim()",
        "contactsync",
        total=True,
    ),
    FunctionDef(
        "lower",
        cs.lower,
        _nullable("string", "string"),
        "Lower-case (Unicode).",
        "city.lower()",
        "contactsync",
        total=True,
    ),
    FunctionDef(
        "upper",
        cs.upper,
        _nullable("string", "string"),
        "Upper-case (Unicode).",
        "country.upper()",
        "contactsync",
        total=True,
    ),
    FunctionDef(
        "isNull",
        cs.is_null,
        _ov("bool", "dyn"),
        "True when the value is null. Empty or blank strings are not null.",
        "email.isNull() || phone.isNull()",
        "contactsync",
        safe=True,
        inline="({0} is None)",
    ),
    FunctionDef(
        "ifNull",
        cs.if_null,
        _ov("dyn", "dyn,dyn"),
        "The value, or the default when the value is null.",
        'city.ifNull("unknown")',
        "contactsync",
        safe=True,
        inline="({t} if ({t} := {0}) is not None else {1})",
        result=_if_null_result,
    ),
    FunctionDef(
        "asInt",
        cs.as_int,
        _nullable("int", "string", "int", "uint", "double"),
        'Integer from a number or text ("42", " 42 ", 42.0 -> 42); "4.5" or "abc" are row errors.',
        "age.asInt()",
        "contactsync",
    ),
    FunctionDef(
        "asFloat",
        cs.as_float,
        _nullable("double", "string", "int", "uint", "double"),
        'Double from a number or text ("4.5", "4,5" -> 4.5).',
        "score.asFloat()",
        "contactsync",
    ),
    FunctionDef(
        "asBool",
        cs.as_bool,
        _nullable("bool", "string", "bool", "int", "uint"),
        "Boolean from true/false, yes/no, 1/0, oui/non, t/f, y/n (any case).",
        "optin.asBool()",
        "contactsync",
    ),
    FunctionDef(
        "asString",
        cs.as_string,
        _ov("string", "dyn"),
        "Text form of a scalar value (dates as YYYY-MM-DD, timestamps as RFC 3339); null stays null.",
        "customer_id.asString()",
        "contactsync",
    ),
    FunctionDef(
        "asDate",
        cs.as_date,
        _nullable("date", "string", "date", "timestamp", "string,string"),
        "Date from ISO 8601 text (or DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY, YYYY/MM/DD, YYYYMMDD), "
        "a timestamp or a date; with a format argument, parse with that strptime format.",
        'birthday.asDate("%d/%m/%Y")',
        "contactsync",
    ),
    FunctionDef(
        "formatDate",
        cs.format_date,
        _nullable("string", "date", "timestamp", "string", "date,string", "timestamp,string", "string,string"),
        "Format a date or timestamp as YYYY-MM-DD, or with a strftime format.",
        'signup.formatDate("%d.%m.%Y")',
        "contactsync",
    ),
    FunctionDef(
        "asTimestamp",
        cs.as_timestamp,
        _nullable("timestamp", "string", "int", "double", "date", "timestamp"),
        "Timestamp from ISO 8601 text, Unix seconds or a date; naive values are taken as UTC.",
        "last_order_at.asTimestamp()",
        "contactsync",
    ),
    # -- standard CEL conversions ------------------------------------------------------------------
    FunctionDef(
        "int",
        std.to_int,
        _ov("int", "int", "uint", "double", "string", "timestamp"),
        "Convert to int (doubles truncate; out of range is an error).",
        'int("42")',
        "standard",
    ),
    FunctionDef(
        "uint",
        std.to_uint,
        _ov("uint", "uint", "int", "double", "string"),
        "Convert to uint.",
        "uint(42)",
        "standard",
    ),
    FunctionDef(
        "double",
        std.to_double,
        _ov("double", "double", "int", "uint", "string"),
        "Convert to double.",
        'double("4.5")',
        "standard",
    ),
    FunctionDef(
        "string",
        std.to_string,
        _ov("string", "string", "int", "uint", "double", "bool", "bytes", "timestamp", "duration", "date"),
        "Convert to string.",
        "string(42)",
        "standard",
    ),
    FunctionDef(
        "bool",
        std.to_bool,
        _ov("bool", "bool", "string"),
        'Convert to bool ("true", "false", "1", "0").',
        'bool("true")',
        "standard",
    ),
    FunctionDef(
        "bytes",
        std.to_bytes,
        _ov("bytes", "bytes", "string"),
        "Convert to bytes (UTF-8).",
        'bytes("abc")',
        "standard",
    ),
    FunctionDef(
        "timestamp",
        std.to_timestamp,
        _ov("timestamp", "timestamp", "string", "int"),
        "Timestamp from RFC 3339 text or Unix seconds.",
        'timestamp("2024-01-31T10:00:00Z")',
        "standard",
    ),
    FunctionDef(
        "duration",
        std.to_duration,
        _ov("duration", "duration", "string"),
        'Duration from text like "1h30m", "90s", "1.5h".',
        'duration("1h30m")',
        "standard",
    ),
    FunctionDef(
        "type",
        std.type_of,
        _ov("type", "dyn"),
        "The type of a value.",
        "type(age) == int",
        "standard",
        safe=True,
    ),
    FunctionDef(
        "dyn",
        std.dyn,
        _ov("dyn", "dyn"),
        "The value itself, typed dyn (turns off static checks).",
        "dyn(x)",
        "standard",
        safe=True,
        inline="{0}",
    ),
    FunctionDef(
        "size",
        std.size,
        _ov("int", "string", "bytes", "list", "map"),
        "Length of a string (code points), bytes, list or map.",
        "size(tags) > 0",
        "standard",
        total=True,
    ),
    FunctionDef(
        "contains",
        std.contains,
        _ov("bool", "string,string"),
        "Substring test.",
        'email.contains("@")',
        "standard",
        total=True,
    ),
    FunctionDef(
        "startsWith",
        std.starts_with,
        _ov("bool", "string,string"),
        "Prefix test.",
        'phone.startsWith("+33")',
        "standard",
        total=True,
    ),
    FunctionDef(
        "endsWith",
        std.ends_with,
        _ov("bool", "string,string"),
        "Suffix test.",
        'email.endsWith(".fr")',
        "standard",
        total=True,
    ),
    FunctionDef(
        "matches",
        std.matches,
        _ov("bool", "string,string"),
        "Regular expression search in RE2 syntax (linear time; no backreferences or lookaround); unanchored.",
        'zip.matches("^[0-9]{5}$")',
        "standard",
    ),
    FunctionDef(
        "getFullYear",
        std.get_full_year,
        _ov("int", *_TS),
        "Year (timestamps in UTC or the given zone).",
        'created.getFullYear("Europe/Paris")',
        "timestamp",
    ),
    FunctionDef(
        "getMonth",
        std.get_month,
        _ov("int", *_TS),
        "Month, 0-11 (January is 0).",
        "created.getMonth()",
        "timestamp",
    ),
    FunctionDef("getDate", std.get_date, _ov("int", *_TS), "Day of month, 1-31.", "created.getDate()", "timestamp"),
    FunctionDef(
        "getDayOfMonth",
        std.get_day_of_month,
        _ov("int", *_TS),
        "Day of month, 0-30.",
        "created.getDayOfMonth()",
        "timestamp",
    ),
    FunctionDef(
        "getDayOfWeek",
        std.get_day_of_week,
        _ov("int", *_TS),
        "Day of week, 0-6 (Sunday is 0).",
        "created.getDayOfWeek()",
        "timestamp",
    ),
    FunctionDef(
        "getDayOfYear",
        std.get_day_of_year,
        _ov("int", *_TS),
        "Day of year, 0-365.",
        "created.getDayOfYear()",
        "timestamp",
    ),
    FunctionDef(
        "getHours",
        std.get_hours,
        _ov("int", *_TS_D),
        "Hour of day, or whole hours of a duration.",
        'created.getHours("+02:00")',
        "timestamp",
    ),
    FunctionDef(
        "getMinutes",
        std.get_minutes,
        _ov("int", *_TS_D),
        "Minutes, or whole minutes of a duration.",
        "created.getMinutes()",
        "timestamp",
    ),
    FunctionDef(
        "getSeconds",
        std.get_seconds,
        _ov("int", *_TS_D),
        "Seconds, or whole seconds of a duration.",
        "created.getSeconds()",
        "timestamp",
    ),
    FunctionDef(
        "getMilliseconds",
        std.get_milliseconds,
        _ov("int", *_TS_D),
        "Milliseconds of the second, or whole milliseconds of a duration.",
        "created.getMilliseconds()",
        "timestamp",
    ),
    # -- cel-go strings extension ------------------------------------------------------------------
    FunctionDef(
        "charAt",
        std.char_at,
        _ov("string", "string,int"),
        "Character at a code point index.",
        "name.charAt(0)",
        "strings",
    ),
    FunctionDef(
        "indexOf",
        std.index_of,
        _ov("int", "string,string", "string,string,int"),
        "First index of a substring (code points), or -1; optional start offset.",
        'email.indexOf("@")',
        "strings",
    ),
    FunctionDef(
        "lastIndexOf",
        std.last_index_of,
        _ov("int", "string,string", "string,string,int"),
        "Last index of a substring, or -1; optional offset to search back from.",
        'email.lastIndexOf(".")',
        "strings",
    ),
    FunctionDef(
        "lowerAscii",
        std.lower_ascii,
        _ov("string", "string"),
        "Lower-case ASCII letters only.",
        "code.lowerAscii()",
        "strings",
        total=True,
    ),
    FunctionDef(
        "upperAscii",
        std.upper_ascii,
        _ov("string", "string"),
        "Upper-case ASCII letters only.",
        "code.upperAscii()",
        "strings",
        total=True,
    ),
    FunctionDef(
        "replace",
        std.replace,
        _ov("string", "string,string,string", "string,string,string,int"),
        "Replace occurrences (all, or the first n).",
        'phone.replace(" ", "")',
        "strings",
    ),
    FunctionDef(
        "split",
        std.split,
        _ov("list", "string,string", "string,string,int"),
        "Split on a separator (at most n parts).",
        'tags.split(",")',
        "strings",
    ),
    FunctionDef(
        "substring",
        std.substring,
        _ov("string", "string,int", "string,int,int"),
        "Code points from start (inclusive) to end (exclusive).",
        "zip.substring(0, 2)",
        "strings",
    ),
    FunctionDef(
        "join",
        std.join,
        _ov("string", "list", "list,string"),
        "Join a list of strings.",
        '[first_name, last_name].join(" ")',
        "strings",
    ),
]

LIBRARY: dict[str, FunctionDef] = {d.name: d for d in _DEFS}

#: Public registry: name -> (arities, description); arities count the receiver.
FUNCTIONS: dict[str, FunctionInfo] = {d.name: FunctionInfo(d.arities, d.description) for d in _DEFS}

#: Macros (expanded by the compiler, not functions): name -> (argument counts, description).
MACRO_DOCS: dict[str, tuple[str, str]] = {
    "has": ("has(m.f)", "True when map m has key f (never an error for a missing key)."),
    "all": ("list.all(x, p)", "True when p holds for every element (map: every key)."),
    "exists": ("list.exists(x, p)", "True when p holds for at least one element."),
    "exists_one": ("list.exists_one(x, p)", "True when p holds for exactly one element."),
    "map": ("list.map(x, f) / list.map(x, p, f)", "f applied to each element (those where p holds)."),
    "filter": ("list.filter(x, p)", "Elements where p holds."),
}

"""CEL value model on top of Python natives: type names, uint, type values, range checks.

Rows carry plain Python values, so the engine keeps them as they are (no wrapping per value) and
only adds what Python lacks: a distinct ``uint``, first-class type values, int64 bounds, and the
mapping from a Python type to its CEL type name used in error messages and dispatch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import RowError

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
UINT_MAX = 2**64 - 1

#: Static type names a formula can have (``Formula.result_type``).
TYPE_NAMES = (
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "bytes",
    "null",
    "list",
    "map",
    "timestamp",
    "duration",
    "date",
    "dyn",
)


class UInt(int):
    """CEL ``uint``: an int that keeps its own type so ``1u + 1`` is refused like in CEL."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


class CelType:
    """A CEL type as a value (``type(1) == int``); compared by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("CelType", self.name))

    def __repr__(self) -> str:
        return self.name


#: Type identifiers usable in formulas (``type(x) == string``).
TYPE_VALUES: dict[str, CelType] = {
    name: CelType(name)
    for name in (
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "null_type",
        "type",
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
    )
}
TYPE_VALUES["date"] = CelType("date")

_TYPE_OF: dict[type, str] = {
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    bytes: "bytes",
    type(None): "null",
    list: "list",
    tuple: "list",
    dict: "map",
    dt.datetime: "timestamp",
    dt.timedelta: "duration",
    dt.date: "date",
    CelType: "type",
}


def type_name(value: Any) -> str:
    """CEL type name of a runtime value (subclasses of datetime/date count as their base)."""
    name = _TYPE_OF.get(type(value))
    if name is not None:
        return name
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def type_value(value: Any) -> CelType:
    """``type(x)``: the CEL type of a value as a value."""
    name = type_name(value)
    if name == "null":
        name = "null_type"
    elif name == "timestamp":
        name = "google.protobuf.Timestamp"
    elif name == "duration":
        name = "google.protobuf.Duration"
    return TYPE_VALUES.get(name) or CelType(name)


def no_overload(op: str, *args: Any) -> RowError:
    """The CEL "no such overload" error, naming the operand types the user passed."""
    types = [type_name(a) for a in args]
    if len(args) == 2 and not op[0].isalpha():
        return RowError(f"no such overload: {types[0]} {op} {types[1]}")
    if len(args) == 1 and op in ("-", "!"):
        return RowError(f"no such overload: {op}{types[0]}")
    return RowError(f"no such overload: {op}({', '.join(types)})")


def check_int(value: int) -> int:
    """Refuse results outside int64, as CEL does."""
    if INT_MIN <= value <= INT_MAX:
        return value
    raise RowError("int overflow")


def check_uint(value: int) -> UInt:
    """Refuse results outside uint64."""
    if 0 <= value <= UINT_MAX:
        return UInt(value)
    raise RowError("uint overflow")


def short(value: Any, limit: int = 60) -> str:
    """A value as shown in row-error messages: strings quoted, long values cut."""
    text = (
        f'"{value}"'
        if isinstance(value, str)
        else repr(value)
        if not isinstance(value, bool)
        else ("true" if value else "false")
    )
    if value is None:
        text = "null"
    return text if len(text) <= limit else text[: limit - 3] + "..."

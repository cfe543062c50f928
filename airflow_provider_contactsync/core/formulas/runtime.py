"""CEL operators at run time: arithmetic, equality, ordering, membership, access, logic, macros.

Each operator is a plain function over Python natives that dispatches on exact types (``type(x) is
int`` so that ``bool`` never passes for ``int``) and raises :class:`RowError` for CEL errors. The
compiler inlines fast paths for common types and falls back to these for everything else.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from ..errors import RowError
from .limits import MAX_NESTED_STEPS
from .values import INT_MIN, UInt, check_int, check_uint, no_overload, short, type_name

_NUMERIC = (int, UInt, float)
_ORDERED = frozenset({int, UInt, float, str, bytes, bool, dt.datetime, dt.timedelta, dt.date})
_CONCAT = frozenset({str, bytes, list})
_MAX_DURATION = dt.timedelta(seconds=315_576_000_000)


def _is_num(value: Any) -> bool:
    t = type(value)
    return t is int or t is float or t is UInt


def _check_duration(value: dt.timedelta) -> dt.timedelta:
    if -_MAX_DURATION <= value <= _MAX_DURATION:
        return value
    raise RowError("duration overflow")


def _datetime_math(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OverflowError:
        raise RowError("timestamp overflow") from None


def add(a: Any, b: Any) -> Any:
    """contactsync's ``+``: CEL's, except that null next to a string counts as "" (its one deviation)."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int:
            return check_int(a + b)
        if ta is float or ta in _CONCAT:
            return a + b
        if ta is UInt:
            return check_uint(a + b)
        if ta is tuple:
            return list(a) + list(b)
        if ta is dt.timedelta:
            return _check_duration(a + b)
    elif tb is dt.timedelta and isinstance(a, dt.datetime):
        return _datetime_math(lambda: a + b)
    elif ta is dt.timedelta and isinstance(b, dt.datetime):
        return _datetime_math(lambda: b + a)
    elif {ta, tb} <= {list, tuple}:
        return list(a) + list(b)
    elif tb is str and a is None:
        return b
    elif ta is str and b is None:
        return a
    raise no_overload("+", a, b)


def cel_add(a: Any, b: Any) -> Any:
    """CEL's own ``+``, where null + string is an error: formulas of identifiers use it."""
    if (a is None and type(b) is str) or (b is None and type(a) is str):
        raise no_overload("+", a, b)
    return add(a, b)


def sub(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int:
            return check_int(a - b)
        if ta is float:
            return a - b
        if ta is UInt:
            return check_uint(a - b)
        if ta is dt.timedelta:
            return _check_duration(a - b)
        if ta is dt.datetime:
            return _check_duration(a - b)
    elif tb is dt.timedelta and isinstance(a, dt.datetime):
        return _datetime_math(lambda: a - b)
    raise no_overload("-", a, b)


def mul(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is type(b):
        if ta is int:
            return check_int(a * b)
        if ta is float:
            return a * b
        if ta is UInt:
            return check_uint(a * b)
    raise no_overload("*", a, b)


def div(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is type(b):
        if ta is float:
            if b == 0.0:
                if a == 0.0 or math.isnan(a):
                    return math.nan
                return math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
        if ta is int or ta is UInt:
            if b == 0:
                raise RowError("division by zero")
            q = abs(a) // abs(b)
            q = -q if (a < 0) != (b < 0) else q
            return check_int(q) if ta is int else check_uint(q)
    raise no_overload("/", a, b)


def mod(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is UInt):
        if b == 0:
            raise RowError("modulus by zero")
        r = abs(a) % abs(b)
        r = -r if a < 0 else r
        return r if ta is int else UInt(r)
    raise no_overload("%", a, b)


def neg(a: Any) -> Any:
    ta = type(a)
    if ta is int:
        if a == INT_MIN:
            raise RowError("int overflow")
        return -a
    if ta is float:
        return -a
    if ta is dt.timedelta:
        return -a
    raise no_overload("-", a)


def not_(a: Any) -> bool:
    if a is True:
        return False
    if a is False:
        return True
    raise no_overload("!", a)


def eq(a: Any, b: Any) -> bool:
    """CEL heterogeneous equality: numbers compare by value across int/uint/double, else by type."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is list or ta is tuple:
            return len(a) == len(b) and all(eq(x, y) for x, y in zip(a, b, strict=True))
        if ta is dict:
            return _map_eq(a, b)
        return a == b
    if _is_num(a) and _is_num(b):
        return a == b
    na, nb = type_name(a), type_name(b)
    if na != nb:
        return False
    if na == "list":
        return len(a) == len(b) and all(eq(x, y) for x, y in zip(a, b, strict=True))
    if na == "map":
        return _map_eq(a, b)
    return bool(a == b)


def _map_eq(a: dict, b: dict) -> bool:
    if len(a) != len(b):
        return False
    for key, value in a.items():
        found, other = _map_get(b, key)
        if not found or not eq(value, other):
            return False
    return True


def ne(a: Any, b: Any) -> bool:
    return not eq(a, b)


def _ordered(op: str, a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if ta is tb and ta in _ORDERED:
        return
    if _is_num(a) and _is_num(b):
        return
    na = type_name(a)
    if na == type_name(b) and na in ("timestamp", "date", "string", "bool"):
        return
    raise no_overload(op, a, b)


def lt(a: Any, b: Any) -> bool:
    _ordered("<", a, b)
    return a < b


def le(a: Any, b: Any) -> bool:
    _ordered("<=", a, b)
    return a <= b


def gt(a: Any, b: Any) -> bool:
    _ordered(">", a, b)
    return a > b


def ge(a: Any, b: Any) -> bool:
    _ordered(">=", a, b)
    return a >= b


def _map_get(m: dict, key: Any) -> tuple[bool, Any]:
    """Look a key up with CEL equality (1 finds 1u and 1.0, true does not find 1)."""
    tk = type(key)
    if tk is str or tk is bytes:
        if key in m:
            return True, m[key]
        return False, None
    if tk is bool:
        for k, v in m.items():
            if type(k) is bool and k == key:
                return True, v
        return False, None
    if _is_num(key):
        for k, v in m.items():
            if _is_num(k) and k == key:
                return True, v
        return False, None
    if tk is dict or tk is list or tk is tuple:
        raise RowError(f"unsupported key type: {type_name(key)}")
    for k, v in m.items():
        if type(k) is tk and k == key:
            return True, v
    return False, None


def in_(item: Any, container: Any) -> bool:
    tc = type(container)
    if tc is list or tc is tuple:
        ti = type(item)
        if ti is str:
            return any(type(x) is str and x == item for x in container)
        return any(eq(item, x) for x in container)
    if tc is dict:
        return _map_get(container, item)[0]
    raise no_overload("in", item, container)


def in_counted(item: Any, container: Any, steps: list[int]) -> bool:
    """``in`` inside a comprehension: scanning a list costs its length (a map lookup by string is free)."""
    tc = type(container)
    if tc is list or tc is tuple:
        _count(steps, len(container))
        if type(item) is str:
            return any(type(x) is str and x == item for x in container)
        return any(eq(item, x) for x in container)
    if tc is dict and type(item) is not str:
        _count(steps, len(container))
    return in_(item, container)


def select(operand: Any, attr: str) -> Any:
    """``m.f``: only maps have fields in contactsync rows."""
    if type(operand) is dict:
        try:
            return operand[attr]
        except KeyError:
            raise RowError(f"no such key: {attr}") from None
    raise RowError(f"no such field: {attr} (on {type_name(operand)})")


def has(operand: Any, attr: str) -> bool:
    if type(operand) is dict:
        return attr in operand
    raise RowError(f"has() needs a map, got {type_name(operand)}")


def index(operand: Any, key: Any) -> Any:
    t = type(operand)
    if t is list or t is tuple:
        tk = type(key)
        if tk is int or tk is UInt or (tk is float and key.is_integer()):
            i = int(key)
            if 0 <= i < len(operand):
                return operand[i]
            raise RowError(f"index out of range: {short(key)}")
        raise no_overload("_[_]", operand, key)
    if t is dict:
        found, value = _map_get(operand, key)
        if found:
            return value
        raise RowError(f"no such key: {key if isinstance(key, str) else short(key)}")
    raise no_overload("_[_]", operand, key)


def truth(value: Any) -> bool:
    """A bool operand of ``?:``, ``&&``, ``||``; anything else is an error."""
    if value is True or value is False:
        return value
    raise RowError(f"no such overload: expected bool, got {type_name(value)}")


def or_(left: Callable[[], Any], right: Callable[[], Any]) -> bool:
    """``||`` with CEL's commutative error absorption: ``error || true`` is true."""
    try:
        a = left()
    except RowError as exc:
        a = exc
    if a is True:
        return True
    try:
        b = right()
    except RowError:
        if a is False:
            raise
        b = None
    if b is True:
        return True
    if a is False and b is False:
        return False
    if isinstance(a, RowError):
        raise a
    if a is not False:
        raise RowError(f"no such overload: {type_name(a)} || ...")
    return truth(b)


def and_(left: Callable[[], Any], right: Callable[[], Any]) -> bool:
    """``&&`` with CEL's commutative error absorption: ``error && false`` is false."""
    try:
        a = left()
    except RowError as exc:
        a = exc
    if a is False:
        return False
    try:
        b = right()
    except RowError:
        if a is True:
            raise
        b = None
    if b is False:
        return False
    if a is True and b is True:
        return True
    if isinstance(a, RowError):
        raise a
    if a is not True:
        raise RowError(f"no such overload: {type_name(a)} && ...")
    return truth(b)


def _count(steps: list[int], n: int) -> None:
    """Spend ``n`` of a formula's steps on this row (see :data:`~.limits.MAX_NESTED_STEPS`)."""
    steps[0] -= n
    if steps[0] < 0:
        raise RowError(
            f"too much work for one row: over {MAX_NESTED_STEPS:,} steps inside comprehensions (the limit per"
            " formula and row; inner comprehensions and row fields read again for every element count)"
        )


def counted(steps: list[int], value: Any) -> Any:
    """A row field read inside a comprehension: it is scanned again for each element, so it costs its size."""
    t = type(value)
    if t is str or t is bytes:
        _count(steps, len(value) >> 6)
    elif t is list or t is tuple or t is dict:
        _count(steps, len(value))
    return value


def _range(target: Any, steps: list[int] | None = None) -> Any:
    """What a comprehension iterates over; ``steps`` is given when it runs inside another one."""
    t = type(target)
    if t is list or t is tuple or t is dict:
        if steps is not None:
            _count(steps, len(target))
        return target
    raise RowError(f"no such overload: cannot iterate over {type_name(target)}")


def m_all(target: Any, pred: Callable[[Any], Any], steps: list[int] | None = None) -> bool:
    error: RowError | None = None
    for item in _range(target, steps):
        try:
            if not truth(pred(item)):
                return False
        except RowError as exc:
            error = error or exc
    if error is not None:
        raise error
    return True


def m_exists(target: Any, pred: Callable[[Any], Any], steps: list[int] | None = None) -> bool:
    error: RowError | None = None
    for item in _range(target, steps):
        try:
            if truth(pred(item)):
                return True
        except RowError as exc:
            error = error or exc
    if error is not None:
        raise error
    return False


def m_exists_one(target: Any, pred: Callable[[Any], Any], steps: list[int] | None = None) -> bool:
    return sum(1 for item in _range(target, steps) if truth(pred(item))) == 1


def m_map(
    target: Any,
    step: Callable[[Any], Any],
    pred: Callable[[Any], Any] | None = None,
    steps: list[int] | None = None,
) -> list:
    items = _range(target, steps)
    if pred is None:
        return [step(item) for item in items]
    return [step(item) for item in items if truth(pred(item))]


def m_filter(target: Any, pred: Callable[[Any], Any], steps: list[int] | None = None) -> list:
    return [item for item in _range(target, steps) if truth(pred(item))]


def make_map(*pairs: Any) -> dict:
    """Map literal; CEL refuses repeated keys and keys that are not int/uint/bool/string."""
    out: dict = {}
    for key, value in zip(pairs[0::2], pairs[1::2], strict=True):
        if type(key) not in (int, UInt, bool, str):
            raise RowError(f"unsupported key type: {type_name(key)}")
        if _map_get(out, key)[0]:
            raise RowError(f"repeated key in map literal: {short(key)}")
        out[key] = value
    return out

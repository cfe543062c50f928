"""Checked AST -> Python source, compiled once with ``compile()``.

A whole transform becomes one Python function: fields are read into locals once per row, each
formula is one expression inside its own ``try`` (so one failing formula never hides another),
and common cases are inlined with exact-type guards (``type(a) is type(b) is str``) that fall
back to the generic CEL operators in ``runtime.py``. Lambdas appear only where CEL needs lazy
evaluation: ``&&``/``||`` with two fallible sides, and macros.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import FormulaError, RowError
from . import runtime as rt
from .checker import constant
from .contactsync import phone_regions
from .library import LIBRARY
from .limits import MAX_NESTED_STEPS
from .regex import cached
from .stdlib import matches_regex
from .syntax import (
    Binary,
    Call,
    Comprehension,
    Cond,
    Has,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    Node,
    Select,
    Unary,
)
from .values import TYPE_VALUES, UInt

_FAST_ORDERED = (int, float, str, bytes, bool, UInt, dt.date, dt.timedelta, dt.datetime)

#: Names the generated code can use; library implementations are added as ``_fn_<name>``.
BASE_NAMESPACE: dict[str, Any] = {
    "_RowError": RowError,
    "_add": rt.add,
    "_cel_add": rt.cel_add,
    "_sub": rt.sub,
    "_mul": rt.mul,
    "_div": rt.div,
    "_mod": rt.mod,
    "_neg": rt.neg,
    "_not": rt.not_,
    "_eq": rt.eq,
    "_ne": rt.ne,
    "_lt": rt.lt,
    "_le": rt.le,
    "_gt": rt.gt,
    "_ge": rt.ge,
    "_in": rt.in_,
    "_select": rt.select,
    "_has": rt.has,
    "_index": rt.index,
    "_truth": rt.truth,
    "_or": rt.or_,
    "_and": rt.and_,
    "_make_map": rt.make_map,
    "_m_all": rt.m_all,
    "_m_exists": rt.m_exists,
    "_m_exists_one": rt.m_exists_one,
    "_m_map": rt.m_map,
    "_m_filter": rt.m_filter,
    "_c": rt.counted,
    "_in_counted": rt.in_counted,
    "_match_re": matches_regex,
    "_NESTED_STEPS": MAX_NESTED_STEPS,
    "_str": str,
    "_FAST_ORDERED": frozenset(_FAST_ORDERED),
}
BASE_NAMESPACE.update({f"_fn_{name}": d.impl for name, d in LIBRARY.items()})

#: Types whose values can be large (a field of another type is never counted when read).
_SIZED = frozenset({"dyn", "string", "bytes", "list", "map"})
#: Functions that take constant time whatever the size of their arguments.
_CONSTANT_TIME = frozenset({"size", "isNull", "ifNull", "type", "dyn"})

_ARITH_FN = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_ORDER_FN = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}


def field_var(name: str) -> str:
    """Local variable holding a field's value (CEL identifiers are valid after the prefix).

    A dotted field (``address.city``) gets a length-prefixed name, so no two fields share a variable.
    """
    if "." not in name:
        return f"v_{name}"
    return "d_" + "".join(f"{len(part)}_{part}" for part in name.split("."))


class CodeGen:
    """Emits Python expressions for checked nodes; shares constants and temp names across formulas.

    :ivar strict_concat: emit CEL's own ``+`` (null + string is an error) instead of contactsync's;
        set per formula, for those that feed identifiers.
    :ivar counts_steps: the code emitted since it was last reset counts its work inside comprehensions
        in ``_steps``, which the caller must set to ``[_NESTED_STEPS]`` before each evaluation
        (:data:`STEPS_INIT`). Inside a comprehension's predicate or step, what is repeated for every
        element counts: the elements of an inner comprehension, and each read of a row field (it is
        scanned again), except where it is used in constant time (``size()``, ``m.f``, ``m[k]``...).
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = dict(BASE_NAMESPACE)
        self._temps = 0
        self._consts: dict[tuple[type, Any], str] = {}
        self.scopes: list[str] = []
        self.strict_concat = False
        self.counts_steps = False
        self._uncounted: Node | None = None  # a field read in constant time by its parent

    def temp(self) -> str:
        self._temps += 1
        return f"_t{self._temps}"

    def const(self, value: Any) -> str:
        key = (type(value), repr(value))
        name = self._consts.get(key)
        if name is None:
            name = f"_k{len(self._consts)}"
            self._consts[key] = name
            self.namespace[name] = value
        return name

    def expr(self, node: Node) -> str:
        return getattr(self, "gen_" + type(node).__name__)(node)

    def gen_Literal(self, node: Literal) -> str:
        value = node.value
        if value is None or type(value) in (bool, int, str):
            return repr(value)
        if type(value) is float and math.isfinite(value):
            return repr(value)
        return self.const(value)

    def gen_Ident(self, node: Ident) -> str:
        if node.name in self.scopes:
            return f"m_{node.name}"
        if node.type == "type" and node.name in TYPE_VALUES:
            return self.const(TYPE_VALUES[node.name])
        return self._field(node, node.name)

    def _field(self, node: Node, name: str) -> str:
        """A row field's variable; inside a comprehension, counted by its size (see ``counts_steps``)."""
        if self.scopes and self._uncounted is not node and node.type in _SIZED:
            self.counts_steps = True
            return f"_c(_steps, {field_var(name)})"
        return field_var(name)

    def _plain(self, node: Node) -> str:
        """Code for ``node`` where its parent uses it in constant time: a field read there is not counted."""
        saved, self._uncounted = self._uncounted, node
        try:
            return self.expr(node)
        finally:
            self._uncounted = saved

    def _qualified(self, node: Node) -> str:
        if isinstance(node, Ident):
            return node.name
        assert isinstance(node, Select) and node.operand is not None
        return f"{self._qualified(node.operand)}.{node.attr}"

    def gen_Select(self, node: Select) -> str:
        assert node.operand is not None
        if node.field is not None:
            return self._field(node, node.field)
        if node.type == "type":
            return self.const(TYPE_VALUES[self._qualified(node)])
        return f"_select({self._plain(node.operand)}, {node.attr!r})"

    def gen_Index(self, node: Index) -> str:
        assert node.operand is not None and node.index is not None
        return f"_index({self._plain(node.operand)}, {self.expr(node.index)})"

    def gen_Has(self, node: Has) -> str:
        assert node.operand is not None
        return f"_has({self._plain(node.operand)}, {node.attr!r})"

    def gen_ListLit(self, node: ListLit) -> str:
        return "[" + ", ".join(self.expr(item) for item in node.items) + "]"

    def gen_MapLit(self, node: MapLit) -> str:
        parts = [self.expr(part) for pair in node.entries for part in pair]
        return f"_make_map({', '.join(parts)})"

    def gen_Unary(self, node: Unary) -> str:
        assert node.operand is not None
        inner = self.expr(node.operand)
        if node.op == "!":
            if node.operand.safe and node.operand.type == "bool":
                return f"(not {inner})"
            return f"_not({inner})"
        return f"_neg({inner})"

    def _bool(self, node: Node) -> str:
        """A bool operand: raw when statically a safe bool, else checked with ``_truth``."""
        code = self.expr(node)
        return code if node.safe and node.type == "bool" else f"_truth({code})"

    def gen_Cond(self, node: Cond) -> str:
        assert node.test is not None and node.then is not None and node.orelse is not None
        return f"({self.expr(node.then)} if {self._bool(node.test)} else {self.expr(node.orelse)})"

    def gen_Binary(self, node: Binary) -> str:
        assert node.left is not None and node.right is not None
        op = node.op
        left, right = node.left, node.right
        if op in ("||", "&&"):
            return self._logic(op, left, right)
        if op in ("==", "!="):
            for lit, other in ((right, left), (left, right)):
                if isinstance(lit, Literal) and lit.value is None:
                    return f"({self._plain(other)} {'is' if op == '==' else 'is not'} None)"
        if op == "in":
            return self._in(left, right)
        a, b = self.expr(left), self.expr(right)
        if op in ("==", "!="):
            py = "==" if op == "==" else "!="
            for lit, other in ((right, a), (left, b)):
                if isinstance(lit, Literal) and type(lit.value) is str:
                    return f"({other} {py} {self.expr(lit)})"  # exact for any type vs a string
            ta, tb = self.temp(), self.temp()
            generic = "_eq" if op == "==" else "_ne"
            guard = f"type({ta} := {a}) is type({tb} := {b}) is _str"
            return f"({ta} {py} {tb} if {guard} else {generic}({ta}, {tb}))"
        if op in _ORDER_FN:
            ta, tb = self.temp(), self.temp()
            return (
                f"({ta} {op} {tb} if type({ta} := {a}) is type({tb} := {b}) and type({ta}) in _FAST_ORDERED "
                f"else {_ORDER_FN[op]}({ta}, {tb}))"
            )
        fn = "_cel_add" if op == "+" and self.strict_concat else _ARITH_FN[op]
        if op == "+" and left.type in ("string", "dyn") and right.type in ("string", "dyn"):
            for lit, other in ((right, a), (left, None)):
                if isinstance(lit, Literal) and type(lit.value) is str:
                    t = self.temp()
                    if other is not None:  # x + 'lit'
                        return f"({t} + {b} if type({t} := {a}) is _str else {fn}({t}, {b}))"
                    return f"({a} + {t} if type({t} := {b}) is _str else {fn}({a}, {t}))"
            ta, tb = self.temp(), self.temp()
            return f"({ta} + {tb} if type({ta} := {a}) is type({tb} := {b}) is _str else {fn}({ta}, {tb}))"
        return f"{fn}({a}, {b})"

    def _in(self, item: Node, container: Node) -> str:
        ok, value = constant(container)
        if ok and isinstance(value, list):
            return f"_in({self.expr(item)}, {self.const(tuple(value))})"
        if self.scopes:  # a list is scanned for each element; a map lookup by string is not
            self.counts_steps = True
            return f"_in_counted({self.expr(item)}, {self._plain(container)}, _steps)"
        return f"_in({self.expr(item)}, {self.expr(container)})"

    def _logic(self, op: str, left: Node, right: Node) -> str:
        safe_left = left.safe and left.type == "bool"
        safe_right = right.safe and right.type == "bool"
        a, b = self.expr(left), self.expr(right)
        if op == "||":
            if safe_left and safe_right:
                return f"({a} or {b})"
            if safe_left:
                return f"({a} or _truth({b}))"
            if safe_right:
                return f"(True if {b} else _truth({a}))"
            return f"_or(lambda: {a}, lambda: {b})"
        if safe_left and safe_right:
            return f"({a} and {b})"
        if safe_left:
            return f"({a} and _truth({b}))"
        if safe_right:
            return f"(_truth({a}) if {b} else False)"
        return f"_and(lambda: {a}, lambda: {b})"

    def gen_Comprehension(self, node: Comprehension) -> str:
        assert node.target is not None
        target = self._plain(node.target)  # counted by its length when this runs inside another
        steps = ""
        if self.scopes:  # inside another comprehension's predicate or step: runs once per element
            self.counts_steps = True
            steps = ", steps=_steps"
        self.scopes.append(node.var)
        try:
            var = f"m_{node.var}"
            pred = f"lambda {var}: {self.expr(node.pred)}" if node.pred is not None else None
            step = f"lambda {var}: {self.expr(node.step)}" if node.step is not None else None
        finally:
            self.scopes.pop()
        if node.kind == "map":
            return f"_m_map({target}, {step}{', ' + pred if pred else ''}{steps})"
        return f"_m_{node.kind}({target}, {pred}{steps})"

    def gen_Call(self, node: Call) -> str:
        fn = LIBRARY[node.name]
        args_nodes = ([node.target] if node.target is not None else []) + node.args
        if fn.name == "normalizePhoneNumber" and len(args_nodes) == 2:
            ok, value = constant(args_nodes[1])
            if ok:
                regions = self.const(phone_regions(value))
                return f"_fn_normalizePhoneNumber({self.expr(args_nodes[0])}, {regions})"
        if fn.name in _CONSTANT_TIME:
            args = [self._plain(a) for a in args_nodes]
            return fn.inline.format(*args, t=self.temp()) if fn.inline else f"_fn_{fn.name}({', '.join(args)})"
        if fn.name == "matches":
            pattern = args_nodes[1]
            if isinstance(pattern, Literal) and type(pattern.value) is str:
                regex = cached(pattern.value)  # the checker refused it if it does not compile
                assert not isinstance(regex, str), regex
                return f"_match_re({self.expr(args_nodes[0])}, {self.const(regex)})"
        args = [self.expr(a) for a in args_nodes]
        if fn.inline is not None:
            return fn.inline.format(*args, t=self.temp())
        return f"_fn_{fn.name}({', '.join(args)})"


#: The statement that starts a formula's count of :data:`~.limits.MAX_NESTED_STEPS`.
STEPS_INIT = "_steps = [_NESTED_STEPS]"


def build(source: str, namespace: dict[str, Any], name: str) -> Callable[..., Any]:
    """Compile generated source and return the function called ``name``."""
    try:
        code = compile(source, f"<contactsync formula {name}>", "exec")
    except (SyntaxError, RecursionError, MemoryError):
        # Python caps nesting at 200 brackets; only absurdly long chains get here.
        raise FormulaError("formula is too complex (too deeply nested); split it up", line=1, column=1) from None
    exec(code, namespace)  # noqa: S102 - our own generated code, from a checked AST
    return namespace[name]


def field_prologue(fields: Iterable[str], indent: str = "    ") -> list[str]:
    """Read every used field once; a field missing from the row is null."""
    return [f"{indent}{field_var(f)} = _get({f!r})" for f in sorted(fields)]

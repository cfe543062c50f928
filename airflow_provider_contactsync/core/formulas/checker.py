"""Static checks and type inference over the formula AST, before any row is seen.

Fills ``node.type`` (a CEL type name, ``dyn`` when unknown) and ``node.safe`` (cannot raise) on
every node, and raises :class:`FormulaError` at the offending line/column for unknown fields,
unknown functions, wrong arity and type errors that hold whatever the row contains. Types are
"nullable": a ``string`` field or an ``asInt()`` result may still be null at run time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

from ..errors import FormulaError
from .library import LIBRARY, FunctionDef
from .limits import MAX_COMPREHENSION_NESTING
from .regex import cached
from .stdlib import pattern_error
from .syntax import (
    MACROS,
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
from .values import TYPE_VALUES, type_name

_NUM = ("int", "uint", "double")
_ARITH: dict[str, dict[tuple[str, str], str]] = {
    "+": {
        ("int", "int"): "int",
        ("uint", "uint"): "uint",
        ("double", "double"): "double",
        ("string", "string"): "string",
        ("string", "null"): "string",  # null next to a string counts as "": contactsync's one deviation
        ("null", "string"): "string",
        ("bytes", "bytes"): "bytes",
        ("list", "list"): "list",
        ("timestamp", "duration"): "timestamp",
        ("duration", "timestamp"): "timestamp",
        ("duration", "duration"): "duration",
    },
    "-": {
        ("int", "int"): "int",
        ("uint", "uint"): "uint",
        ("double", "double"): "double",
        ("timestamp", "timestamp"): "duration",
        ("timestamp", "duration"): "timestamp",
        ("duration", "duration"): "duration",
    },
    "*": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double"},
    "/": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double"},
    "%": {("int", "int"): "int", ("uint", "uint"): "uint"},
}
_ORDERED_SAME = ("string", "bytes", "bool", "timestamp", "duration", "date")


def literal_type(value: Any) -> str:
    name = type_name(value)
    return name if name != "type" else "type"


def constant(node: Node) -> tuple[bool, Any]:
    """(True, value) when the node is a literal or a list of literals, known at compile time."""
    if isinstance(node, Literal):
        return True, node.value
    if isinstance(node, ListLit):
        values = []
        for item in node.items:
            ok, value = constant(item)
            if not ok:
                return False, None
            values.append(value)
        return True, values
    return False, None


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fail(node: Node, message: str) -> FormulaError:
    return FormulaError(message, line=node.line, column=node.column)


class Checker:
    """Type-checks one formula against the source's fields."""

    def __init__(self, fields: Iterable[str], field_types: Mapping[str, str] | None = None) -> None:
        self.fields = list(dict.fromkeys(fields))
        self.field_set = frozenset(self.fields)
        self.field_types = dict(field_types or {})
        self.scopes: list[str] = []
        self.used: set[str] = set()
        self.comprehensions = 0  # comprehensions whose predicate or step is being checked

    def check(self, node: Node) -> str:
        try:
            return self.visit(node)
        except RecursionError:
            raise FormulaError("formula is too deeply nested", line=1, column=1) from None

    def visit(self, node: Node) -> str:
        method = getattr(self, "visit_" + type(node).__name__)
        node.type = method(node)
        return node.type

    def visit_Literal(self, node: Literal) -> str:
        node.safe = True
        return literal_type(node.value)

    def visit_Ident(self, node: Ident) -> str:
        node.safe = True
        if node.name in self.scopes:
            return "dyn"
        if node.name in self.field_set:
            self.used.add(node.name)
            return self.field_types.get(node.name, "dyn")
        if node.name in TYPE_VALUES:
            return "type"
        if node.name in LIBRARY or node.name in MACROS:
            raise _fail(node, f"'{node.name}' is a function: call it, e.g. x.{node.name}()")
        raise _fail(node, f"unknown field '{node.name}'{_suggest(node.name, self.fields)}")

    def _qualified(self, node: Node) -> str | None:
        if isinstance(node, Ident) and node.name not in self.scopes and node.name not in self.field_set:
            return node.name
        if isinstance(node, Select) and node.operand is not None:
            head = self._qualified(node.operand)
            return f"{head}.{node.attr}" if head else None
        return None

    def _dotted_field(self, node: Node) -> str | None:
        """``address.city`` written in a formula names the source field ``address.city`` when there is one."""
        parts: list[str] = []
        while isinstance(node, Select) and node.operand is not None:
            parts.append(node.attr)
            node = node.operand
        if not isinstance(node, Ident) or node.name in self.scopes:
            return None
        name = ".".join([node.name, *reversed(parts)])
        return name if name in self.field_set else None

    def visit_Select(self, node: Select) -> str:
        assert node.operand is not None
        field = self._dotted_field(node)
        if field is not None:
            node.field, node.safe = field, True
            self.used.add(field)
            return self.field_types.get(field, "dyn")
        name = self._qualified(node)
        if name in TYPE_VALUES:
            node.safe = True
            return "type"
        if name is not None and any(f.startswith(name.split(".", 1)[0] + ".") for f in self.fields):
            raise _fail(node, f"unknown field '{name}'{_suggest(name, self.fields)}")
        operand = self.visit(node.operand)
        if operand not in ("dyn", "map"):
            raise _fail(node, f"no field '{node.attr}' on a {operand} value")
        return "dyn"

    def visit_Index(self, node: Index) -> str:
        assert node.operand is not None and node.index is not None
        operand = self.visit(node.operand)
        index = self.visit(node.index)
        if operand not in ("dyn", "list", "map"):
            raise _fail(node, f"cannot index a {operand} value")
        if operand == "list" and index not in ("dyn", "int", "uint"):
            raise _fail(node, f"list index must be an int, not {index}")
        return "dyn"

    def visit_ListLit(self, node: ListLit) -> str:
        for item in node.items:
            self.visit(item)
        node.safe = all(item.safe for item in node.items)
        return "list"

    def visit_MapLit(self, node: MapLit) -> str:
        for key, value in node.entries:
            key_type = self.visit(key)
            self.visit(value)
            if key_type not in ("dyn", "int", "uint", "bool", "string"):
                raise _fail(key, f"map keys must be int, uint, bool or string, not {key_type}")
        node.safe = not node.entries
        return "map"

    def visit_Unary(self, node: Unary) -> str:
        assert node.operand is not None
        operand = self.visit(node.operand)
        if node.op == "!":
            if operand not in ("dyn", "bool"):
                raise _fail(node, f"no such overload: !{operand}")
            node.safe = node.operand.safe and operand == "bool"
            return "bool"
        if operand not in ("dyn", "int", "double", "duration"):
            raise _fail(node, f"no such overload: -{operand}")
        return operand

    def visit_Binary(self, node: Binary) -> str:
        assert node.left is not None and node.right is not None
        left, right = self.visit(node.left), self.visit(node.right)
        op = node.op
        if op in ("&&", "||"):
            for side, kind in ((node.left, left), (node.right, right)):
                if kind not in ("dyn", "bool"):
                    raise _fail(side, f"no such overload: {op} needs bool operands, not {kind}")
            node.safe = all(s.safe and k == "bool" for s, k in ((node.left, left), (node.right, right)))
            return "bool"
        if op in ("==", "!="):
            node.safe = node.left.safe and node.right.safe
            return "bool"
        if op == "in":
            if right not in ("dyn", "list", "map"):
                raise _fail(node, f"no such overload: {left} in {right}")
            return "bool"
        if left == "dyn" or right == "dyn":
            if op in _ARITH:
                known = left if right == "dyn" else right
                if known != "dyn" and not any(known in pair for pair in _ARITH[op]):
                    raise _fail(node, f"no such overload: {left} {op} {right}")
                results = {r for pair, r in _ARITH[op].items() if known in pair} if known != "dyn" else set()
                return results.pop() if len(results) == 1 else "dyn"
            return "bool"
        if op in _ARITH:
            result = _ARITH[op].get((left, right))
            if result is None:
                raise _fail(node, f"no such overload: {left} {op} {right}")
            node.safe = (
                op in ("+", "-", "*")
                and left in ("double", "string", "list", "bytes")
                and (node.left.safe and node.right.safe)
            )
            return result
        # ordering
        if not ((left in _NUM and right in _NUM) or (left == right and left in _ORDERED_SAME)):
            raise _fail(node, f"no such overload: {left} {op} {right}")
        return "bool"

    def visit_Cond(self, node: Cond) -> str:
        assert node.test is not None and node.then is not None and node.orelse is not None
        test = self.visit(node.test)
        if test not in ("dyn", "bool"):
            raise _fail(node.test, f"the condition of ?: must be bool, not {test}")
        then, orelse = self.visit(node.then), self.visit(node.orelse)
        node.safe = node.test.safe and test == "bool" and node.then.safe and node.orelse.safe
        if then == orelse or orelse == "null":
            return then
        return orelse if then == "null" else "dyn"

    def visit_Has(self, node: Has) -> str:
        assert node.operand is not None
        operand = self.visit(node.operand)
        if operand not in ("dyn", "map"):
            raise _fail(node, f"has() needs a map, not {operand}")
        node.safe = operand == "map" and node.operand.safe
        return "bool"

    def visit_Comprehension(self, node: Comprehension) -> str:
        assert node.target is not None
        target = self.visit(node.target)
        if target not in ("dyn", "list", "map"):
            raise _fail(node, f"{node.kind}() needs a list or a map, not {target}")
        if self.comprehensions >= MAX_COMPREHENSION_NESTING:
            raise _fail(
                node,
                f"comprehensions are nested too deeply: {node.kind}() inside {self.comprehensions} others,"
                f" over the limit of {MAX_COMPREHENSION_NESTING} levels (each level can multiply the work per row"
                " by the length of a list)",
            )
        self.scopes.append(node.var)
        self.comprehensions += 1
        try:
            if node.pred is not None:
                pred = self.visit(node.pred)
                if pred not in ("dyn", "bool"):
                    raise _fail(node.pred, f"the predicate of {node.kind}() must be bool, not {pred}")
            if node.step is not None:
                self.visit(node.step)
        finally:
            self.scopes.pop()
            self.comprehensions -= 1
        return "list" if node.kind in ("map", "filter") else "bool"

    def visit_Call(self, node: Call) -> str:
        fn = LIBRARY.get(node.name)
        if fn is None:
            if node.name in MACROS:
                raise _fail(node, f"{node.name}() is a macro: write list.{node.name}(x, ...)")
            if node.name == "has":
                raise _fail(node, "has() is a macro: write has(map.field)")
            raise _fail(node, f"unknown function '{node.name}'{_suggest(node.name, LIBRARY)}")
        args = ([node.target] if node.target is not None else []) + node.args
        if len(args) not in fn.arities:
            raise _fail(node, _arity_message(fn, node.target is not None, len(node.args)))
        types = [self.visit(a) for a in args]
        matching = [
            ov
            for ov in fn.overloads
            if all(_fits(t, p) for t, p in zip(types, ov[0], strict=False)) and len(ov[0]) == len(types)
        ]
        if not matching:
            shown = ", ".join(types)
            raise _fail(node, f"no such overload: {node.name}({shown})")
        if fn.name == "normalizePhoneNumber" and len(args) == 2:
            self._check_regions(args[1])
        if fn.name == "matches":
            self._check_pattern(args[1])
        exact = all(t != "dyn" for t in types)
        node.safe = all(a.safe for a in args) and (fn.safe or (fn.total and exact))
        if fn.result is not None:
            return fn.result(types)
        results = {r for _, r in matching}
        if len(results) > 1:
            results.discard("null")
        return results.pop() if len(results) == 1 else "dyn"

    def _check_pattern(self, node: Node) -> None:
        """A literal pattern is compiled now: one RE2 refuses is a compile-time error."""
        if isinstance(node, Literal) and type(node.value) is str:
            regex = cached(node.value)
            if type(regex) is str:
                raise _fail(node, pattern_error(node.value, regex))

    def _check_regions(self, node: Node) -> None:
        ok, value = constant(node)
        if not ok:
            return
        regions = [value] if isinstance(value, str) else value
        for region in regions:
            if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
                raise _fail(node, f'normalizePhoneNumber: unknown region {region!r} (use ISO codes like "FR")')


def _fits(actual: str, param: str) -> bool:
    return actual == param or actual == "dyn" or param == "dyn"


def _arity_message(fn: FunctionDef, receiver: bool, given: int) -> str:
    counts = sorted(a - 1 for a in fn.arities if a >= 1) if receiver else sorted(fn.arities)
    if receiver and not counts:
        return f"{fn.name}() cannot be called as a method; write {fn.name}(...)"
    wanted = " or ".join(map(str, counts))
    noun = "argument" if counts == [1] else "arguments"
    call = f"x.{fn.name}()" if receiver else f"{fn.name}()"
    return f"wrong number of arguments: {call} takes {wanted} {noun}, got {given}"

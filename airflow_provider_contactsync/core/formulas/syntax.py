"""Formula text -> a small typed AST, using cel-python's lark parser for the grammar.

cel-python's parse tree mirrors the grammar (one node per precedence level), which is awkward to
compile. This adapter flattens it into a handful of node classes that carry 1-based line/column
positions for error messages, decodes literals, and recognises macros (``has``, ``all``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from celpy.celparser import CELParser
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import FormulaError
from .limits import MAX_DEPTH, MAX_FORMULA_CHARS
from .values import INT_MAX, INT_MIN, UINT_MAX, UInt

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


@dataclass(eq=False)
class Node:
    """Base node; ``type`` and ``safe`` are filled in by the checker."""

    line: int
    column: int
    type: str = field(default="dyn", init=False)
    #: True when evaluating the node can never raise (lets the compiler drop error plumbing).
    safe: bool = field(default=False, init=False)


@dataclass(eq=False)
class Literal(Node):
    value: Any = None


@dataclass(eq=False)
class Ident(Node):
    name: str = ""


@dataclass(eq=False)
class Select(Node):
    operand: Node | None = None
    attr: str = ""
    field: str | None = None  # set by the checker when the whole chain names a dotted source field


@dataclass(eq=False)
class Index(Node):
    operand: Node | None = None
    index: Node | None = None


@dataclass(eq=False)
class Call(Node):
    name: str = ""
    target: Node | None = None
    args: list[Node] = field(default_factory=list)


@dataclass(eq=False)
class ListLit(Node):
    items: list[Node] = field(default_factory=list)


@dataclass(eq=False)
class MapLit(Node):
    entries: list[tuple[Node, Node]] = field(default_factory=list)


@dataclass(eq=False)
class Unary(Node):
    op: str = ""
    operand: Node | None = None


@dataclass(eq=False)
class Binary(Node):
    op: str = ""
    left: Node | None = None
    right: Node | None = None


@dataclass(eq=False)
class Cond(Node):
    test: Node | None = None
    then: Node | None = None
    orelse: Node | None = None


@dataclass(eq=False)
class Has(Node):
    operand: Node | None = None
    attr: str = ""


@dataclass(eq=False)
class Comprehension(Node):
    """``target.all(var, pred)`` and friends; ``step`` is the map transform (None otherwise)."""

    kind: str = ""
    target: Node | None = None
    var: str = ""
    pred: Node | None = None
    step: Node | None = None


_BINARY_RULES = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


# cel-python's string terminals let `.` match a backslash next to the escape alternatives, so an
# unterminated string of backslashes (a == "\\\\\\...) makes Python's regex engine backtrack
# exponentially: twenty characters took seconds, forty would take days. These are the CEL spec's
# definitions (an escape is a backslash and one character, checked when the literal is decoded; raw
# strings hold no quote), where each character has one reading, so lexing is linear.
_STRING_TERMINALS = r"""STRING_LIT     : /[rR]"[^"\n\r]*"/ | /"(?:[^"\\\n\r]|\\.)*"/
               | /[rR]'[^'\n\r]*'/ | /'(?:[^'\\\n\r]|\\.)*'/

MLSTRING_LIT   : /[rR]\"\"\"(?:[^"]|"(?!""))*\"\"\"/ | /\"\"\"(?:[^"\\]|\\[\s\S]|"(?!""))*\"\"\"/
               | /[rR]'''(?:[^']|'(?!''))*'''/ | /'''(?:[^'\\]|\\[\s\S]|'(?!''))*'''/

"""


def _grammar(original: str) -> str:
    """cel-python's grammar with :data:`_STRING_TERMINALS` in place of its own."""
    start, end = original.find("\nSTRING_LIT "), original.find("\nBYTES_LIT ")
    if start < 0 or end < start or "\nMLSTRING_LIT " not in original[start:end]:
        raise RuntimeError("cel-python's CEL grammar changed: update _STRING_TERMINALS in formulas/syntax.py")
    return original[: start + 1] + _STRING_TERMINALS + original[end + 1 :]


def _load_grammar() -> None:
    """Build cel-python's LALR parser once per process, from lark's on-disk cache when possible.

    Building the tables costs ~0.45 s, paid by every process that parses a DAG file; lark's
    cache (keyed by grammar and options, in the temp folder) brings it to ~0.01 s. The parser
    is the one cel-python builds (with linear-time string terminals), installed where cel-python
    looks for it.
    """
    if CELParser.CEL_PARSER is not None:
        return
    import re
    from pathlib import Path

    import celpy.celparser
    import lark

    grammar = _grammar((Path(celpy.celparser.__file__).parent / "cel.lark").read_text())
    options = dict(
        parser="lalr",
        start="expr",
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": CELParser.ambiguous_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
        tree_class=lark.Tree,
    )
    try:
        CELParser.CEL_PARSER = lark.Lark(grammar, cache=True, **options)
    except OSError:  # read-only temp folder: build without the cache
        CELParser.CEL_PARSER = lark.Lark(grammar, **options)


def parse(text: str) -> Node:
    """Parse formula text; syntax errors and formulas over the limits become :class:`FormulaError`."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula is too long: {len(text):,} characters, over the limit of {MAX_FORMULA_CHARS:,}")
    _load_grammar()
    parser = CELParser()
    try:
        tree = parser.parse(text)
    except Exception as exc:  # CELParseError wraps the lark exception
        raise _syntax_error(text, exc) from None
    return _Adapter().node(tree)


def _syntax_error(text: str, exc: BaseException) -> FormulaError:
    cause = exc.__context__ if isinstance(exc.__context__, UnexpectedInput) else exc
    line = getattr(cause, "line", None)
    column = getattr(cause, "column", None)
    if isinstance(cause, UnexpectedEOF) or (isinstance(cause, UnexpectedToken) and cause.token.type == "$END"):
        lines = text.splitlines() or [""]
        return FormulaError("syntax error: unexpected end of formula", line=len(lines), column=len(lines[-1]) + 1)
    if isinstance(cause, UnexpectedToken):
        message = f"syntax error: unexpected {cause.token.value!r}"
    elif isinstance(cause, UnexpectedCharacters):
        message = f"syntax error: unexpected character {text_at(text, line, column)!r}"
    else:
        message = "syntax error"
    if not isinstance(line, int) or line < 1:
        line, column = None, None
    return FormulaError(message, line=line, column=column)


def text_at(text: str, line: int | None, column: int | None) -> str:
    """The character at a 1-based position (for messages)."""
    try:
        return text.splitlines()[(line or 1) - 1][(column or 1) - 1]
    except IndexError:
        return ""


def _literal_token(tree: Tree) -> Token | None:
    """The literal token of a unary -> member -> primary -> literal chain, if that is all it is."""
    path = ("unary", "member", "primary", "literal")
    node: Any = tree
    for rule in path:
        if not isinstance(node, Tree) or node.data != rule or len(node.children) != 1:
            return None
        node = node.children[0]
    return node if isinstance(node, Token) else None


def _pos(item: Tree | Token) -> tuple[int, int]:
    if isinstance(item, Token):
        return item.line or 1, item.column or 1
    meta = item.meta
    return getattr(meta, "line", 1) or 1, getattr(meta, "column", 1) or 1


#: Rules that are one node of the formula only when they have several children; a rule with a single
#: child (one per precedence level, and parentheses) is skipped without recursion.
_PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)


def _too_deep(tree: Tree) -> FormulaError:
    line, col = _pos(tree)
    return FormulaError(
        f"formula is too deeply nested: more than {MAX_DEPTH} levels of operators, calls, lists and ?:"
        " (the limit per formula); a long chain of ?: or || can usually be a lookup,"
        ' e.g. {"FR": "France", "BE": "Belgium"}[country] or country in ["FR", "BE"]',
        line=line,
        column=col,
    )


class _Adapter:
    """Walks cel-python's lark tree and builds :class:`Node` objects.

    Recursion is two frames per node of the formula and stops at :data:`~.limits.MAX_DEPTH`, so
    no formula reaches Python's recursion limit, here or in the checker and compiler after it.
    """

    def __init__(self) -> None:
        self.depth = 0

    def node(self, tree: Tree) -> Node:
        """The formula node under ``tree`` (one nesting level)."""
        while tree.data in _PASS_THROUGH and len(tree.children) == 1 and isinstance(tree.children[0], Tree):
            tree = tree.children[0]
        if self.depth >= MAX_DEPTH:
            raise _too_deep(tree)
        self.depth += 1
        try:
            handler = getattr(self, "rule_" + tree.data, None)
            if handler is None:  # pragma: no cover - every rule of the grammar has a handler
                line, col = _pos(tree)
                raise FormulaError(f"unsupported syntax: {tree.data}", line=line, column=col)
            return handler(tree)
        finally:
            self.depth -= 1

    def rule_expr(self, tree: Tree) -> Node:
        test, then, orelse = tree.children
        return Cond(*_pos(tree), test=self.node(test), then=self.node(then), orelse=self.node(orelse))

    def rule_conditionalor(self, tree: Tree) -> Node:
        return self._binary(tree, "||", *tree.children)

    def rule_conditionaland(self, tree: Tree) -> Node:
        return self._binary(tree, "&&", *tree.children)

    def rule_relation(self, tree: Tree) -> Node:
        op_tree, right = tree.children
        return self._binary(op_tree, _BINARY_RULES[op_tree.data], op_tree.children[0], right)

    rule_addition = rule_relation
    rule_multiplication = rule_relation

    def _binary(self, tree: Tree, op: str, left: Tree, right: Tree) -> Node:
        line, col = _pos(tree)
        return Binary(line, col, op=op, left=self.node(left), right=self.node(right))

    def rule_unary(self, tree: Tree) -> Node:
        op_tree, operand = tree.children
        line, col = _pos(tree)
        op = "!" if op_tree.data == "unary_not" else "-"
        if op == "-":
            tok = _literal_token(operand)
            if tok is not None and tok.type in ("INT_LIT", "FLOAT_LIT") and not tok.startswith("-"):
                # Fold so that "- 9223372036854775808" is the int64 minimum, not an overflow.
                return _literal(Token(tok.type, "-" + tok, line=line, column=col))
        return Unary(line, col, op=op, operand=self.node(operand))

    def rule_member_dot(self, tree: Tree) -> Node:
        operand, name_tok = tree.children
        return Select(*_pos(name_tok), operand=self.node(operand), attr=str(name_tok))

    def rule_member_dot_arg(self, tree: Tree) -> Node:
        kids = tree.children
        target = self.node(kids[0])
        return self._call(kids[1], target, self._exprlist(kids[2]) if len(kids) > 2 else [])

    def rule_member_index(self, tree: Tree) -> Node:
        operand, index = tree.children
        return Index(*_pos(tree), operand=self.node(operand), index=self.node(index))

    def rule_member_object(self, tree: Tree) -> Node:
        line, col = _pos(tree)
        raise FormulaError("message construction (Type{field: value}) is not supported", line=line, column=col)

    def rule_literal(self, tree: Tree) -> Node:
        return _literal(tree.children[0])

    def rule_ident(self, tree: Tree) -> Node:
        tok = tree.children[0]
        return Ident(*_pos(tok), name=str(tok))

    rule_dot_ident = rule_ident

    def rule_ident_arg(self, tree: Tree) -> Node:
        kids = tree.children
        return self._call(kids[0], None, self._exprlist(kids[1]) if len(kids) > 1 else [])

    rule_dot_ident_arg = rule_ident_arg

    def rule_list_lit(self, tree: Tree) -> Node:
        kids = tree.children
        return ListLit(*_pos(tree), items=self._exprlist(kids[0]) if kids else [])

    def rule_map_lit(self, tree: Tree) -> Node:
        entries: list[tuple[Node, Node]] = []
        if tree.children:
            flat = [self.node(k) for k in tree.children[0].children]
            entries = list(zip(flat[0::2], flat[1::2], strict=True))
        return MapLit(*_pos(tree), entries=entries)

    def _exprlist(self, tree: Tree) -> list[Node]:
        return [self.node(k) for k in tree.children]

    def _call(self, name_tok: Token, target: Node | None, args: list[Node]) -> Node:
        name = str(name_tok)
        line, col = _pos(name_tok)
        if name == "has" and target is None:
            if len(args) != 1 or not isinstance(args[0], Select):
                raise FormulaError("has() expects a field selection, e.g. has(address.city)", line=line, column=col)
            return Has(line, col, operand=args[0].operand, attr=args[0].attr)
        if name in MACROS and target is not None:
            wanted = (2, 3) if name == "map" else (2,)
            if len(args) not in wanted:
                raise FormulaError(
                    f"wrong number of arguments: {name}() takes {' or '.join(map(str, wanted))}, got {len(args)}",
                    line=line,
                    column=col,
                )
            var = args[0]
            if not isinstance(var, Ident):
                raise FormulaError(
                    f"{name}(): the first argument must be a variable name", line=var.line, column=var.column
                )
            pred, step = args[1], None
            if name == "map":
                pred, step = (None, args[1]) if len(args) == 2 else (args[1], args[2])
            return Comprehension(line, col, kind=name, target=target, var=var.name, pred=pred, step=step)
        return Call(line, col, name=name, target=target, args=args)


_ESCAPE = re.compile(
    r"""\\(?:([abfnrtv"'\\?`])|[xX]([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-3][0-7]{2}))"""
)
_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "?": "?",
    "`": "`",
}


def _decode(body: str, as_bytes: bool) -> str | bytes:
    """Decode CEL escapes; in bytes literals \\x and octal escapes are raw bytes."""
    parts: list[bytes] = []
    pos = 0
    for m in _ESCAPE.finditer(body):
        parts.append(body[pos : m.start()].encode("utf-8", "surrogatepass"))
        simple, hx, u4, u8, octal = m.groups()
        if simple:
            parts.append(_SIMPLE[simple].encode())
        elif hx or octal:
            code = int(hx, 16) if hx else int(octal, 8)
            parts.append(bytes([code]) if as_bytes else chr(code).encode())
        else:
            code = int(u4 or u8, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid escape {m.group()}: not a Unicode character")
            parts.append(chr(code).encode())
        pos = m.end()
    parts.append(body[pos:].encode("utf-8", "surrogatepass"))
    raw = b"".join(parts)
    return raw if as_bytes else raw.decode("utf-8", "surrogatepass")


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _literal(tok: Token) -> Literal:
    line, col = _pos(tok)
    text = str(tok)
    kind = tok.type
    value: Any
    if kind == "BOOL_LIT":
        value = text == "true"
    elif kind == "NULL_LIT":
        value = None
    elif kind in ("INT_LIT", "UINT_LIT"):
        digits = text.rstrip("uU")
        neg = digits.startswith("-")
        digits = digits.lstrip("-")
        try:
            number = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
        except ValueError:  # over Python's 4,300 digits: out of range anyway
            number = UINT_MAX + 1
        number = -number if neg else number
        if kind == "UINT_LIT":
            if not 0 <= number <= UINT_MAX:
                raise FormulaError(f"uint literal out of range: {_cut(text)}", line=line, column=col)
            value = UInt(number)
        else:
            if not INT_MIN <= number <= INT_MAX:
                raise FormulaError(f"int literal out of range: {_cut(text)}", line=line, column=col)
            value = number
    elif kind == "FLOAT_LIT":
        value = float(text)
    else:  # STRING_LIT, MLSTRING_LIT, BYTES_LIT
        prefix_len = 0
        while text[prefix_len] not in "'\"":
            prefix_len += 1
        prefix = text[:prefix_len].lower()
        body = text[prefix_len:]
        quote = 3 if body[:3] in ('"""', "'''") else 1
        body = body[quote:-quote]
        as_bytes = "b" in prefix
        try:
            if "r" in prefix:
                value = body.encode("utf-8", "surrogatepass") if as_bytes else body
            else:
                value = _decode(body, as_bytes)
            if isinstance(value, str):
                value.encode("utf-8")
        except UnicodeEncodeError:
            raise FormulaError(
                "a string cannot hold a lone surrogate (\\ud800-\\udfff is not a character)", line=line, column=col
            ) from None
        except ValueError as exc:
            raise FormulaError(str(exc), line=line, column=col) from None
    return Literal(line, col, value=value)

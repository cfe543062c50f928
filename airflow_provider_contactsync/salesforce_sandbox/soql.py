"""The SOQL subset the sandbox answers, parsed into a typed :class:`Query` and compiled to SQLite.

Supported::

    SELECT f1, f2, ... | COUNT()
    FROM Contact | Lead | Account
    [WHERE <condition>]
    [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

A condition is comparisons (``= != < <= > >=``, ``[NOT] IN (...)``, ``LIKE``) joined by ``AND`` or
``OR`` (mixing them needs parentheses, as in Salesforce), ``NOT`` and parentheses. Literals: strings
in single quotes (with SOQL's backslash escapes), numbers, ``true``/``false``, ``null``, dates
(``2024-01-31``) and date-times (``2024-01-31T00:00:00Z``, ``...+01:00``), each checked against the
field's type as Salesforce does. Field and object names are case-insensitive; text comparisons are
case-insensitive; ``!=`` and ``NOT IN`` match nulls; nulls sort first unless ``NULLS LAST``.

Anything else valid in Salesforce (relationship fields, subqueries, aggregate functions, ``GROUP BY``,
date literals like ``TODAY``, ``FIELDS()``, ``WITH``, ``FOR``, ``TYPEOF``, bind variables) is answered
with ``MALFORMED_QUERY`` (or ``INVALID_FIELD`` for a relationship path) naming the sandbox, so a test
never mistakes an unsupported query for a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError
from .schema import ID_TYPES, OBJECTS, Field, SObject, normalize_id
from .values import parse_date, parse_datetime

MAX_OFFSET = 2000
"""Salesforce refuses an OFFSET over 2,000 (``NUMBER_OUTSIDE_VALID_RANGE``)."""
MAX_LENGTH = 100_000
"""Salesforce's longest SOQL statement, in characters."""
MAX_DEPTH = 100
"""Most nested parentheses and NOTs in a condition (the parser recurses once per level)."""
MAX_INTEGER = 2_147_483_647

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<sign>[-+])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
  | (?P<bind>:\w*)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_UNSUPPORTED = {
    "group",
    "having",
    "with",
    "for",
    "using",
    "typeof",
    "includes",
    "excludes",
    "fields",
    "tolabel",
    "format",
    "convertcurrency",
    "avg",
    "sum",
    "min",
    "max",
    "count_distinct",
}
_RESERVED = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "order",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "limit",
    "offset",
    "in",
    "like",
    "true",
    "false",
    "null",
} | _UNSUPPORTED
SANDBOX_NOTE = "(not supported by the contactsync Salesforce sandbox)"


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Any, ...]
    negate: bool


@dataclass(frozen=True)
class Like:
    field: Field
    pattern: str


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" | "OR"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | InList | Like | BoolOp | Not


@dataclass(frozen=True)
class Order:
    field: Field
    desc: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    """A parsed query: ``fields`` is None for ``SELECT COUNT()``."""

    text: str
    sobject: SObject
    fields: tuple[Field, ...] | None
    where: Node | None
    order: tuple[Order, ...]
    limit: int | None
    offset: int | None

    @property
    def is_count(self) -> bool:
        return self.fields is None

    def select_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        """SQL selecting the matching rows' ``rid`` in the query's order, with its parameters."""
        where, params = self._where_sql(include_deleted)
        order = [
            f'"{o.field.name}" {"DESC" if o.desc else "ASC"} NULLS {"LAST" if o.nulls_last else "FIRST"}'
            for o in self.order
        ]
        sql = f'SELECT rid FROM "{self.sobject.table}" WHERE {where} ORDER BY {", ".join([*order, "rid"])}'
        if self.limit is not None or self.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if self.limit is None else self.limit, self.offset or 0]
        return sql, params

    def count_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        inner, params = self.select_sql(include_deleted)
        return f"SELECT COUNT(*) FROM ({inner})", params

    def _where_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        params: list[Any] = []
        clauses = [] if include_deleted else ['"IsDeleted" = 0']
        if self.where is not None:
            clauses.append(_compile(self.where, params))
        return " AND ".join(clauses) or "1", params


def _compile(node: Node, params: list[Any]) -> str:
    """SQL for a condition; every leaf is two-valued (never NULL), so NOT and OR behave as in SOQL."""
    if isinstance(node, BoolOp):
        return "(" + f" {node.op} ".join(_compile(item, params) for item in node.items) + ")"
    if isinstance(node, Not):
        return f"NOT {_compile(node.item, params)}"
    col = f'"{node.field.name}"'
    if isinstance(node, Like):
        params.append(node.pattern)
        return f"COALESCE({col} LIKE ? ESCAPE '\\', 0)"
    if isinstance(node, InList):
        values = [v for v in node.values if v is not None]
        has_null = len(values) != len(node.values)
        params.extend(values)
        within = f"{col} IN ({', '.join('?' * len(values))})" if values else "0"
        if node.negate:
            return f"({col} IS NOT NULL AND NOT {within})" if has_null else f"({col} IS NULL OR NOT {within})"
        return f"({col} IS NULL OR COALESCE({within}, 0))" if has_null else f"COALESCE({within}, 0)"
    if node.value is None:
        return {"=": f"{col} IS NULL", "!=": f"{col} IS NOT NULL"}.get(node.op, "0")
    params.append(node.value)
    if node.op == "!=":
        return f"({col} IS NULL OR {col} <> ?)"
    return f"COALESCE({col} {node.op} ?, 0)"


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise _located(text, pos, f"line 1:{pos} no viable alternative at character '{text[pos]}'")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _located(text: str, pos: int, message: str, code: str = "MALFORMED_QUERY") -> ApiError:
    """Salesforce's located query error: the query line, a caret, ``ERROR at Row:r:Column:c``, the reason."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    col = pos - line_start + 1
    return errors.fail(400, code, f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}")


def _unquote(token: str, text: str, pos: int) -> tuple[str, str]:
    """A string literal's value and its LIKE pattern (``\\%`` and ``\\_`` stay escaped there)."""
    body = token[1:-1]
    value: list[str] = []
    pattern: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            value.append(ch)
            pattern.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in ("%", "_"):
            value.append(nxt)
            pattern.append("\\" + nxt)
        elif nxt.lower() in _ESCAPES or nxt in _ESCAPES:
            decoded = _ESCAPES.get(nxt.lower(), _ESCAPES.get(nxt, nxt))
            value.append(decoded)
            pattern.append("\\\\" if decoded == "\\" else decoded)
        else:
            raise _located(
                text,
                pos,
                f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}' in string literal.",
            )
        i += 2
    return "".join(value), "".join(pattern)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    # --- tokens ------------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def at_kw(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.text.lower() in words

    def expect_kw(self, word: str) -> Token:
        if not self.at_kw(word):
            raise self.unexpected(self.peek())
        return self.take()

    def expect_punct(self, char: str) -> Token:
        token = self.peek()
        if token.kind != "punct" or token.text != char:
            raise self.unexpected(token)
        return self.take()

    def unexpected(self, token: Token) -> ApiError:
        if token.kind == "eof":
            return _located(self.text, token.pos, "unexpected token: <EOF>")
        if token.kind == "ident" and token.text.lower() in _UNSUPPORTED:
            return _located(self.text, token.pos, f"unexpected token: {token.text} {SANDBOX_NOTE}")
        if token.kind == "bind":
            return _located(self.text, token.pos, f"bind variables are not allowed here {SANDBOX_NOTE}")
        return _located(self.text, token.pos, f"unexpected token: {token.text}")

    # --- query -------------------------------------------------------------------------------------

    def query(self) -> Query:
        self.expect_kw("select")
        names: list[Token] | None = []
        if self.at_kw("count") and self.peek(1).text == "(":
            count = self.take()
            self.take()
            if self.peek().text != ")":
                raise _located(self.text, count.pos, f"COUNT(field) is an aggregate function {SANDBOX_NOTE}")
            self.take()
            names = None
        else:
            names.append(self.select_item())
            while self.peek().text == ",":
                self.take()
                names.append(self.select_item())
        self.expect_kw("from")
        obj_token = self.take()
        if obj_token.kind != "ident" or obj_token.text.lower() in _RESERVED:
            raise self.unexpected(obj_token)
        sobject = OBJECTS.get(obj_token.text.lower())
        if sobject is None:
            raise _located(
                self.text,
                obj_token.pos,
                f"sObject type '{obj_token.text}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
                "INVALID_TYPE",
            )
        fields: tuple[Field, ...] | None = None
        if names is not None:
            resolved: list[Field] = []
            for token in names:
                f = self.resolve(sobject, token)
                if f in resolved:
                    raise _located(self.text, token.pos, f"duplicate field selected: {f.name}")
                resolved.append(f)
            fields = tuple(resolved)
        where = None
        if self.at_kw("where"):
            self.take()
            where = self.condition(sobject)
        order: list[Order] = []
        if self.at_kw("order"):
            self.take()
            self.expect_kw("by")
            order.append(self.order_item(sobject))
            while self.peek().text == ",":
                self.take()
                order.append(self.order_item(sobject))
        limit = offset = None
        if self.at_kw("limit"):
            self.take()
            limit = self.integer()
        if self.at_kw("offset"):
            self.take()
            token = self.peek()
            offset = self.integer()
            if offset > MAX_OFFSET:
                raise _located(
                    self.text,
                    token.pos,
                    f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                    "NUMBER_OUTSIDE_VALID_RANGE",
                )
        if self.peek().kind != "eof":
            raise self.unexpected(self.peek())
        return Query(self.text, sobject, fields, where, tuple(order), limit, offset)

    def select_item(self) -> Token:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            raise _located(self.text, token.pos, f"subqueries are not supported {SANDBOX_NOTE}")
        if token.kind != "ident" or token.text.lower() in _RESERVED:
            raise self.unexpected(token)
        if self.peek().text == "(":
            raise _located(self.text, token.pos, f"function {token.text}() is not supported {SANDBOX_NOTE}")
        return token

    def resolve(self, sobject: SObject, token: Token) -> Field:
        if "." in token.text:
            head = token.text.split(".", 1)[0]
            raise _located(
                self.text,
                token.pos,
                f"Didn't understand relationship '{head}' in field path. Relationship queries are not supported "
                f"{SANDBOX_NOTE}",
                "INVALID_FIELD",
            )
        f = sobject.field(token.text)
        if f is None:
            raise _located(
                self.text,
                token.pos,
                f"No such column '{token.text}' on entity '{sobject.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
                "INVALID_FIELD",
            )
        return f

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or "." in token.text:
            raise self.unexpected(token)
        if len(token.text) > 10 or int(token.text) > MAX_INTEGER:
            raise _located(self.text, token.pos, f"{token.text} is not a valid integer", "NUMBER_OUTSIDE_VALID_RANGE")
        return int(token.text)

    def order_item(self, sobject: SObject) -> Order:
        token = self.take()
        if token.kind != "ident" or token.text.lower() in _RESERVED:
            raise self.unexpected(token)
        f = self.resolve(sobject, token)
        if f.type == "textarea":
            raise _located(
                self.text,
                token.pos,
                f"field '{f.name}' can not be sorted in a query call",
                "INVALID_FIELD",
            )
        desc = False
        if self.at_kw("asc", "desc"):
            desc = self.take().text.lower() == "desc"
        nulls_last = False
        if self.at_kw("nulls"):
            self.take()
            if not self.at_kw("first", "last"):
                raise self.unexpected(self.peek())
            nulls_last = self.take().text.lower() == "last"
        return Order(f, desc, nulls_last)

    # --- conditions --------------------------------------------------------------------------------

    def condition(self, sobject: SObject) -> Node:
        items = [self.term(sobject)]
        joiner: str | None = None
        while self.at_kw("and", "or"):
            token = self.take()
            word = token.text.upper()
            if joiner is not None and word != joiner:
                # SOQL does not rank AND over OR: a mix needs parentheses.
                raise _located(self.text, token.pos, f"unexpected token: {token.text}")
            joiner = word
            items.append(self.term(sobject))
        return items[0] if joiner is None else BoolOp(joiner, tuple(items))

    def term(self, sobject: SObject) -> Node:
        if self.at_kw("not") or self.peek().text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _located(self.text, self.peek().pos, f"more than {MAX_DEPTH} nested conditions {SANDBOX_NOTE}")
            try:
                if self.take().text == "(":
                    inner = self.condition(sobject)
                    self.expect_punct(")")
                    return inner
                return Not(self.term(sobject))
            finally:
                self.depth -= 1
        token = self.take()
        if token.kind != "ident" or token.text.lower() in _RESERVED:
            raise self.unexpected(token)
        if self.peek().text == "(":
            raise _located(self.text, token.pos, f"function {token.text}() is not supported {SANDBOX_NOTE}")
        f = self.resolve(sobject, token)
        if f.type == "textarea":
            raise _located(
                self.text,
                token.pos,
                f"field '{f.name}' can not be filtered in a query call",
                "INVALID_FIELD",
            )
        op_token = self.peek()
        if op_token.kind == "op":
            self.take()
            op = op_token.text
            if op not in ("=", "!=") and f.type == "boolean":
                raise _located(
                    self.text,
                    op_token.pos,
                    f"invalid operator on boolean field: {f.name}",
                    "INVALID_QUERY_FILTER_OPERATOR",
                )
            return Compare(f, op, self.literal(f))
        negate = False
        if self.at_kw("not") and self.peek(1).kind == "ident" and self.peek(1).text.lower() == "in":
            self.take()
            negate = True
        if self.at_kw("in"):
            self.take()
            if self.peek().text != "(":
                raise self.unexpected(self.peek())
            self.take()
            if self.at_kw("select"):
                raise _located(self.text, self.peek().pos, f"semi-join subqueries are not supported {SANDBOX_NOTE}")
            values = [self.literal(f)]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal(f))
            self.expect_punct(")")
            return InList(f, tuple(values), negate)
        if self.at_kw("like"):
            like = self.take()
            if not f.text:
                raise _located(
                    self.text,
                    like.pos,
                    f"invalid operator on {'id' if f.type in ID_TYPES else f.type} field: {f.name}",
                    "INVALID_QUERY_FILTER_OPERATOR",
                )
            token = self.take()
            if token.kind != "string":
                raise self.unexpected(token)
            return Like(f, _unquote(token.text, self.text, token.pos)[1])
        raise self.unexpected(op_token)

    def literal(self, f: Field) -> Any:
        """The next literal, converted to the stored form of ``f`` (checked against its type)."""
        token = self.take()
        if token.kind == "sign" and self.peek().kind == "number":
            number = self.take()
            token = Token("number", token.text + number.text, token.pos)
        kind = token.kind
        lowered = token.text.lower()
        if kind == "ident" and lowered == "null":
            return None
        if kind == "ident" and lowered in ("true", "false"):
            if f.type != "boolean":
                raise self._type_error(token, f)
            return int(lowered == "true")
        if kind == "ident" or kind == "bind":
            if kind == "ident" and lowered not in _RESERVED:
                raise _located(self.text, token.pos, f"date literals and identifiers as values {SANDBOX_NOTE}")
            raise self.unexpected(token)
        if f.type == "boolean":
            raise self._type_error(token, f)
        if kind == "string":
            if f.type in ("date", "datetime", "double"):
                raise self._type_error(token, f)
            value = _unquote(token.text, self.text, token.pos)[0]
            if f.type in ID_TYPES:
                normalized = normalize_id(value)
                if normalized is None:
                    raise _located(self.text, token.pos, f"invalid ID field: {value}", "INVALID_QUERY_FILTER_OPERATOR")
                return normalized
            return value
        if kind == "number":
            if f.type != "double":
                raise self._type_error(token, f)
            return float(token.text)
        if kind == "date":
            if f.type != "date" or parse_date(token.text) is None:
                raise self._type_error(token, f)
            return token.text
        if kind == "datetime":
            seconds = parse_datetime(token.text)
            if f.type != "datetime" or seconds is None:
                raise self._type_error(token, f)
            fraction = re.search(r"\.(\d+)", token.text)
            return seconds + (int(fraction[1]) / 10 ** len(fraction[1]) if fraction else 0)
        raise self.unexpected(token)

    def _type_error(self, token: Token, f: Field) -> ApiError:
        kind = {"datetime": "dateTime", "double": "double", "date": "date", "boolean": "boolean"}.get(f.type, "string")
        quoted = "should be enclosed in quotes" if kind == "string" else "should not be enclosed in quotes"
        return _located(
            self.text,
            token.pos,
            f"value of filter criterion for field '{f.name}' must be of type {kind} and {quoted}",
            "INVALID_QUERY_FILTER_OPERATOR",
        )


def parse(text: str) -> Query:
    """Parse one query; :class:`~.errors.ApiError` (400, Salesforce's code and located message) if refused."""
    if not isinstance(text, str) or not text.strip():
        raise errors.fail(400, "MALFORMED_QUERY", "A query string has to be specified")
    if len(text) > MAX_LENGTH:
        raise errors.fail(400, "MALFORMED_QUERY", f"SOQL statements cannot be longer than {MAX_LENGTH:,} characters")
    return _Parser(text).query()

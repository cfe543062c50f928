"""A definition's ``query`` must be one SELECT: parsed in its database's dialect, refused otherwise.

Sources wrap the query as ``(<query>) AS src`` and add the incremental predicate around it. A
query that closes that parenthesis can append a statement (``... ) s; DELETE FROM t; --``); one
that is an INSERT, a data-modifying WITH or a ``SELECT ... INTO`` writes. PostgreSQL reads in a
read-only transaction, but BigQuery runs a multi-statement script as it comes, so the query is
checked here, when the definition is read, in the dialect of its source (sqlglot's tokenizer knows
each dialect's strings, comments and quoting: a ``)`` or ``;`` inside a string or a comment is not
taken for one outside, and the other way round).

The query that is kept ends at its last token: trailing semicolons and comments are dropped, so a
trailing ``-- comment`` cannot swallow the wrapper's closing parenthesis.

A query written only with words, numbers, commas, dots, parentheses and arithmetic or comparison
operators (no string, quoted name, comment or ``;``) reads the same in every dialect, so the checks
that matter (one statement that starts with SELECT or WITH, no word that writes or locks, balanced
parentheses) are made on its words without sqlglot, whose import costs about 0.3 s of the
dag-processor's parse; the database reports such a query's syntax errors. Every other query is
parsed.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_contactsync.core.spec.limits import QUERY_DEPTH, QUERY_LENGTH

DIALECTS = {
    "postgres": ("postgres", "PostgreSQL"),
    "bigquery": ("bigquery", "BigQuery"),
    "snowflake": ("snowflake", "Snowflake"),
}
"""Source type -> (sqlglot dialect, name in messages)."""

_WRITES = (
    "Insert",
    "Update",
    "Delete",
    "Merge",
    "Copy",
    "Create",
    "Drop",
    "Alter",
    "TruncateTable",
    "Command",
    "Set",
    "Use",
    "Transaction",
    "Commit",
    "Rollback",
    "Grant",
    "Revoke",
    "LoadData",
    "Cache",
    "Uncache",
    "Refresh",
    "Analyze",
    "Kill",
    "Pragma",
    "Describe",
    "Execute",
)
"""sqlglot expression classes that write, change the schema or the session, or are not a query."""

_VIEW_HINT = "if your database accepts it, create a view holding it and read the view with table:"


def check_select(query: str, source_type: str) -> str:
    """The query without trailing semicolons and comments, if it is one read-only SELECT.

    :param query: the definition's ``query``.
    :param source_type: ``postgres``, ``bigquery`` or ``snowflake`` (the dialect).
    :raises ValueError: why it is not, in the user's terms.
    """
    if len(query) > QUERY_LENGTH.value:
        raise ValueError(
            f"the query is {len(query):,} characters, over the limit of {QUERY_LENGTH.value:,}: "
            f"{QUERY_LENGTH.raise_hint()}"
        )
    plain = _plainly_one_select(query)
    return plain if plain is not None else parse_select(query, source_type)


def parse_select(query: str, source_type: str) -> str:
    """:func:`check_select` by parsing the query with sqlglot, in its dialect."""
    dialect, name = DIALECTS[source_type]
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError
    from sqlglot.tokens import TokenType

    reader = sqlglot.Dialect.get_or_raise(dialect)
    try:
        tokens = reader.tokenize(query)
    except TokenError as exc:
        raise ValueError(f"not valid {name} SQL: {_first_line(exc)}") from None
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise ValueError("the query is empty")
    depth = 0
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            if depth > QUERY_DEPTH.value:
                raise ValueError(_too_deep(token.line))
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth < 0:
                raise ValueError(
                    f"line {token.line}: ')' closes a parenthesis the query did not open: a query cannot leave "
                    "the subquery contactsync reads it as"
                )
        elif token.token_type == TokenType.SEMICOLON and depth == 0:
            statements = 1 + sum(t.token_type == TokenType.SEMICOLON for t in tokens)
            raise ValueError(
                f"line {token.line}: the query holds {statements} statements (';'): give one SELECT, without ';' "
                "between statements"
            )
    if tokens[0].token_type not in (TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN):
        raise ValueError(
            f"the query starts with {tokens[0].text.upper()!s}: it must be one SELECT (or WITH ... SELECT)"
        )
    try:
        parsed = [e for e in reader.parser().parse(tokens, query) if e is not None]
    except ParseError as exc:
        raise ValueError(f"not valid {name} SQL as contactsync reads it: {_first_line(exc)}; {_VIEW_HINT}") from None
    except RecursionError:
        raise ValueError(_too_deep(None)) from None
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Query):
        what = parsed[0].key.upper() if len(parsed) == 1 else f"{len(parsed)} statements"
        raise ValueError(f"the query is {what}: it must be one SELECT (or WITH ... SELECT)")
    _refuse_writes(parsed[0], exp)
    return query[: tokens[-1].end + 1]


_PLAIN = re.compile(r"[A-Za-z0-9_ \t\r\n,.*()=<>!+%/-]*")
"""Characters that cannot start a string, a quoted name or a comment in any of the dialects (``--``,
``/*`` and ``//`` are looked for apart)."""

_PLAIN_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_NOT_PLAIN = frozenset(
    """insert update delete merge upsert replace copy create drop alter truncate rename comment grant revoke
    call exec execute do into for lock set reset use begin start commit rollback savepoint vacuum analyze
    refresh cluster reindex listen notify unload export import load put get remove list explain describe
    show prepare deallocate declare fetch move close discard checkpoint attach detach pragma""".split()
)
"""Words that can make a statement write, lock or do something else than read (or that are not a
SELECT); a plain query holding one of them, even as a column name, is parsed instead."""


def _plainly_one_select(query: str) -> str | None:
    """The query without trailing ``;``, when it is plain (see the module) and plainly one read-only SELECT."""
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text or not _PLAIN.fullmatch(text) or "--" in text or "/*" in text or "//" in text:
        return None
    words = _PLAIN_WORDS.findall(text)
    first = text[0] if text[0] == "(" else (words[0].lower() if words else "")
    if first not in ("select", "with", "(") or any(word.lower() in _NOT_PLAIN for word in words):
        return None
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
            if depth > QUERY_DEPTH.value:
                return None
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
    return text if depth == 0 else None


def _refuse_writes(tree: Any, exp: Any) -> None:
    writes = tuple(getattr(exp, cls) for cls in _WRITES if hasattr(exp, cls))
    for node in tree.walk():
        if isinstance(node, writes):
            what = node.key.upper() if node.key else type(node).__name__.upper()
            raise ValueError(f"the query contains {what}: a query may only read (one SELECT)")
        if isinstance(node, exp.Select):
            if node.args.get("into") is not None:
                raise ValueError("SELECT ... INTO creates a table: a query may only read")
            if node.args.get("locks"):
                raise ValueError("FOR UPDATE/SHARE locks rows: a query may only read")


def _too_deep(line: int | None) -> str:
    if line is None:  # the parser ran out of stack: long chains of NOT, unary minus, nested CASE
        return f"the query nests too deeply to be parsed: {QUERY_DEPTH.raise_hint()}"
    return (
        f"line {line}: the query nests deeper than {QUERY_DEPTH.value} levels of parentheses, the limit for a "
        f"query: {QUERY_DEPTH.raise_hint()}"
    )


def _first_line(exc: Exception) -> str:
    """sqlglot's message without its highlighted excerpt (terminal escapes, long lines)."""
    errors = getattr(exc, "errors", None)
    if errors:
        first = errors[0]
        return f"{first.get('description')} at line {first.get('line')}, column {first.get('col')}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

"""PostgreSQL through the provider's PostgresHook: a server-side cursor, rows in (updated, key) order.

Why it looks like this:

- **Constant memory**: rows come through a named (server-side) cursor, ``chunk_size`` rows per
  ``FETCH``; the client never holds more than one chunk, whatever the table size.
- **No SQL built from values**: identifiers (schema, table, fields) are checked by the model's
  pattern and quoted by the driver; cursor values and the safety-lag bound are bound parameters.
- **One snapshot**: the skipped-row counts and the read run in one REPEATABLE READ, READ ONLY
  transaction, so the counts describe exactly the data that was read.
- **Time zones**: the session runs in UTC. ``timestamptz`` values come back tz-aware;
  ``timestamp`` (without time zone) values are taken as UTC, as ``core/cursor.py`` takes naive
  values, and returned tz-aware UTC; the predicate compares them in UTC too.
- **The cursor's boundary is read again**: the window is ``u >= cursor value AND u <= until``,
  ``ORDER BY u, k``, so a row committed late with the cursor's own timestamp (and a key below the
  cursor's) is read by the next run; rows sharing that value are read again, and the load's
  digests skip those that did not change (docs/adr/0004-cursor-boundary.md).
- **Tie order matches the cursor**: a text key is sorted with ``COLLATE "C"`` (code point order,
  like Python's), so the last row of a chunk is the largest (updated, key) pair, as the cursor
  compares them.

The hook gives psycopg 3 (SQLAlchemy 2 present) or psycopg2; both are supported, chosen by the
connection the hook returns.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.rows import dig, top_level_columns
from airflow_provider_contactsync.core.spec.models import SqlSource
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    SqlTableSource,
    check_chunk_size,
    refuse_nested_cursor,
)

UTC = dt.timezone.utc

# PostgreSQL type OIDs (pg_type.oid): stable across versions.
_TIMESTAMP, _TIMESTAMPTZ, _DATE = 1114, 1184, 1082
_TEXT_TYPES = {25: "text", 1043: "varchar", 1042: "char", 19: "name"}
_TIME_TYPES = {_TIMESTAMP: "timestamp", _TIMESTAMPTZ: "timestamptz", _DATE: "date"}
_NUMBER_TYPES = {21: "smallint", 23: "integer", 20: "bigint", 1700: "numeric", 700: "real", 701: "double"}
_CURSOR_TYPES = {**_TIME_TYPES, **_NUMBER_TYPES}
"""Types an ``updated_field`` may have: they order rows the way the cursor compares its values."""
_NATIVE_TYPES = {16, 18, 26, 114, 3802, _TIMESTAMPTZ, _DATE, *_TEXT_TYPES, *_NUMBER_TYPES}
"""Both drivers already return these as row-model natives (bool, int, str, Decimal, dict, ...)."""
_NUMERIC = 1700
_STAGED_AS_IS = (_NATIVE_TYPES - {_NUMERIC, _DATE}) | {_TIMESTAMP}
"""Types whose values (as read: naive timestamps made UTC) msgpack keeps exactly: not numeric (a
Decimal) nor date, which staging must wrap."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int


class _Driver:
    """The little that differs between psycopg 3 and psycopg2 (their ``sql`` modules agree)."""

    def __init__(self, connection: Any) -> None:
        self.is_psycopg2 = type(connection).__module__.startswith("psycopg2")
        if self.is_psycopg2:
            import psycopg2
            import psycopg2.extensions
            import psycopg2.sql

            self.sql: ModuleType = psycopg2.sql
            self.ProgrammingError: type[Exception] = psycopg2.ProgrammingError
            self._plain: dict[str, Any] = {"cursor_factory": psycopg2.extensions.cursor}
        else:
            import psycopg
            import psycopg.sql
            from psycopg.rows import tuple_row

            self.sql = psycopg.sql
            self.ProgrammingError = psycopg.ProgrammingError
            # Tuples whatever row factory the connection's extras ask for ("cursor": "dictcursor").
            self._plain = {"row_factory": tuple_row}

    def cursor(self, connection: Any) -> Any:
        return connection.cursor(**self._plain)

    def server_cursor(self, connection: Any, name: str) -> Any:
        """A named cursor: ``DECLARE`` on the server, then ``FETCH FORWARD n`` per ``fetchmany(n)``."""
        return connection.cursor(name=name, **self._plain)


class PostgresSource(SqlTableSource):
    """A PostgreSQL table or query, read through ``PostgresHook(spec.conn_id)``.

    :param spec: a ``type: postgres`` SQL source.
    :param hook: a ready hook (tests, callers that already hold one); built from ``conn_id`` if omitted.
    """

    source_type, database_name = "postgres", "PostgreSQL"

    def __init__(self, spec: SqlSource, *, hook: Any = None) -> None:
        super().__init__(spec, hook=hook)
        if spec.table is not None and spec.table.count(".") > 1:
            raise ConfigurationError(
                f"source {spec.name!r}: table {spec.table!r}: PostgreSQL reads one database per "
                "connection; write schema.table and set the database in the connection",
                key_path="source.table",
            )
        refuse_nested_cursor(spec, "select it as a column in a query ((address->>'updated')::timestamptz AS updated)")

    def make_hook(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.spec.conn_id)

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        connection = self._open()
        try:
            driver = _Driver(connection)
            columns = self._probe(connection, driver)
            by_name = {c.name: c for c in columns}
            plan = _Plan(self.spec, driver, by_name, window)
            if plan.count_query is not None:
                with driver.cursor(connection) as cur:
                    cur.execute(plan.count_query, plan.count_params)
                    counts = cur.fetchone()
                for reason, count in zip(plan.count_reasons, counts, strict=True):
                    self._skip(reason, int(count))
            selected = [by_name[c] for c in top_level_columns(self.spec.fields)]
            make_row = _row_maker(self.spec.fields, selected)
            self.native_rows = all(c.type_oid in _STAGED_AS_IS for c in selected)
            cursor = driver.server_cursor(connection, f"contactsync_{uuid.uuid4().hex}")
            try:
                cursor.execute(plan.select, plan.params)
                while True:
                    rows = cursor.fetchmany(chunk_size)
                    if not rows:
                        break
                    yield [make_row(row) for row in rows]
            finally:
                cursor.close()
        finally:
            _close(connection)

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """Columns of the table or query, in their order."""
        connection = self._open()
        try:
            return [c.name for c in self._probe(connection, _Driver(connection), check_fields=False)]
        finally:
            _close(connection)

    def list_tables(self) -> list[str]:
        """``schema.table`` names of the tables and views the connection can read (system schemas left out)."""
        connection = self._open()
        try:
            driver = _Driver(connection)
            with driver.cursor(connection) as cur:
                cur.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    " AND table_schema NOT LIKE 'pg\\_toast%%' ORDER BY 1, 2",
                    (),
                )
                return [f"{schema}.{name}" for schema, name in cur.fetchall()]
        finally:
            _close(connection)

    def test_connection(self) -> tuple[bool, str]:
        try:
            connection = self._open()
        except Exception as exc:  # an unreachable server is an answer here, not a crash
            return False, f"cannot connect with {self.spec.conn_id!r}: {exc}"
        try:
            driver = _Driver(connection)
            version = _server_version(connection)
            self._probe(connection, driver)
            return True, f"PostgreSQL {version}: {self.relation_name} has the {len(self.spec.fields)} fields"
        except Exception as exc:
            return False, str(exc)
        finally:
            _close(connection)

    # -- helpers -------------------------------------------------------------------------------

    def _open(self) -> Any:
        connection = self.hook.get_conn()
        # A named cursor lives in a transaction; one snapshot for counts and rows, and never a write.
        connection.autocommit = False
        with _Driver(connection).cursor(connection) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", ())
            cur.execute("SET TIME ZONE 'UTC'", ())
        return connection

    def _probe(self, connection: Any, driver: _Driver, *, check_fields: bool = True) -> list[Column]:
        """Columns of the relation (a ``LIMIT 0`` query); refuse missing fields before reading anything."""
        query = driver.sql.SQL("SELECT * FROM {} LIMIT 0").format(_relation(self.spec, driver))
        try:
            with driver.cursor(connection) as cur:
                cur.execute(query, ())
                columns = [Column(d.name, int(d.type_code)) for d in cur.description]
        except driver.ProgrammingError as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigurationError(
                f"source {self.spec.name!r}: cannot read {self.relation_name}: {message}",
                key_path="source.table" if self.spec.table else "source.query",
            ) from None
        if check_fields:
            self.check_fields([c.name for c in columns])
        return columns


class _Plan:
    """The statements of one read: the windowed SELECT and the skipped-rows COUNT, with their parameters."""

    def __init__(self, spec: SqlSource, driver: _Driver, columns: dict[str, Column], window: ReadWindow) -> None:
        sql = driver.sql
        relation = _relation(spec, driver)
        select_list = sql.SQL(", ").join(sql.Identifier(c) for c in top_level_columns(spec.fields))
        self.params: list[Any] = []
        self.count_query: Any = None
        self.count_params: list[Any] = []
        self.count_reasons: list[str] = []
        if spec.updated_field is None:
            # Everything, every run; no ORDER BY: sorting a whole table buys nothing here.
            self.select = sql.SQL("SELECT {} FROM {}").format(select_list, relation)
            return
        assert spec.key is not None  # the model requires key with updated_field
        updated_column, key_column = columns[spec.updated_field], columns[spec.key]
        if updated_column.type_oid not in _CURSOR_TYPES:
            raise ConfigurationError(
                f"source {spec.name!r}: updated_field {spec.updated_field!r} must be a timestamp, date or "
                f"number column (type oid {updated_column.type_oid}); cast it in a query if it holds "
                "timestamps as text",
                key_path="source.updated_field",
            )
        updated = sql.Identifier(spec.updated_field)
        key = sql.Identifier(spec.key)
        if key_column.type_oid in _TEXT_TYPES:
            key = sql.SQL('{} COLLATE "C"').format(key)
        conditions = [sql.SQL("{} IS NOT NULL").format(updated)]
        # The cursor's own value is read again (inclusive): a row committed late with that value and
        # a lower key is not lost; the load's digests skip what did not change (docs/adr/0004).
        since = sql.SQL("{} >= %s").format(updated)
        if window.since is not None:
            conditions.append(since)
            self.params.append(window.since.value)
        # A safety-lag bound is a time: it cannot apply to a version-number cursor.
        bounded = window.until is not None and updated_column.type_oid in _TIME_TYPES
        after_until = sql.SQL("{} > %s").format(updated)
        if bounded:
            conditions.append(sql.SQL("{} <= %s").format(updated))
            self.params.append(window.until)
        self.select = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}, {}").format(
            select_list, relation, sql.SQL(" AND ").join(conditions), updated, key
        )
        # Rows a run deliberately leaves out, counted in the same snapshot (one scan, two counts).
        counts = [sql.SQL("count(*) FILTER (WHERE {} IS NULL)").format(updated)]
        self.count_reasons.append(SKIP_NULL.format(field=spec.updated_field))
        if bounded:
            later = [after_until]
            self.count_params.append(window.until)
            if window.since is not None:
                later.append(since)
                self.count_params.append(window.since.value)
            counts.append(sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(" AND ").join(later)))
            self.count_reasons.append(SKIP_AFTER_UNTIL)
        self.count_query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(counts), relation)


def _relation(spec: SqlSource, driver: _Driver) -> Any:
    """``"schema"."table" AS src`` or ``(<query>) AS src``; the query's ``%`` are escaped for the driver."""
    sql = driver.sql
    if spec.table is not None:
        return sql.SQL("{} AS src").format(sql.Identifier(*spec.table.split(".")))
    assert spec.query is not None
    text = spec.query.strip().rstrip(";").strip().replace("%", "%%")
    return sql.SQL("({}) AS src").format(sql.SQL(text))


def _row_maker(fields: Sequence[str], columns: Sequence[Column]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """Build rows as dicts of natives; only columns of non-native types pay for a conversion.

    ``columns`` are the selected (top-level) columns; a dotted field (``address.city``) reaches into
    its jsonb/json column's value, null when a part is missing.
    """
    converters = [
        (i, _TIMESTAMP_AS_UTC if c.type_oid == _TIMESTAMP else _to_native)
        for i, c in enumerate(columns)
        if c.type_oid not in _NATIVE_TYPES
    ]
    names = tuple(c.name for c in columns)
    nested = names != tuple(fields)
    if not converters and not nested:
        return lambda row: dict(zip(names, row, strict=True))

    def make(row: Sequence[Any]) -> dict[str, Any]:
        values = list(row)
        for i, convert in converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        document = dict(zip(names, values, strict=True))
        return {f: dig(document, f) for f in fields} if nested else document

    return make


def _TIMESTAMP_AS_UTC(value: dt.datetime) -> dt.datetime:  # noqa: N802 - a constant-like converter
    return value.replace(tzinfo=UTC)


def _to_native(value: Any) -> Any:
    """Row-model natives for what drivers return for other types (uuid, bytea, arrays, inet, ...)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, Decimal)):
        return value
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, (list, tuple)):
        return [_to_native(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_native(v) for k, v in value.items()}
    if isinstance(value, (dt.time, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value.isoformat() if isinstance(value, dt.time) else str(value)
    return str(value)


def _server_version(connection: Any) -> str:
    version = getattr(getattr(connection, "info", None), "server_version", None)
    if version is None:
        version = getattr(connection, "server_version", 0)
    major, minor = divmod(int(version), 10_000)
    return f"{major}.{minor}"


def _close(connection: Any) -> None:
    try:
        connection.rollback()  # read only: nothing to keep
    finally:
        connection.close()

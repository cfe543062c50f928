"""Snowflake through the provider's SnowflakeHook: Arrow result batches, (updated, key) predicate.

Why it looks like this:

- **Names as Snowflake spells them**: unquoted identifiers fold to upper case in Snowflake, so a
  definition's ``customers``/``email`` usually names ``CUSTOMERS``/``EMAIL``. Every name of the
  definition (database, schema and table parts, fields) is resolved against the real names:
  exact match first, then a case-insensitive match that must be unique (two columns differing only
  by case are ambiguous: a ConfigurationError asks for the exact spelling). The real names are then
  double-quoted in the SQL; rows keep the definition's field names as keys.
- **No SQL built from values**: identifiers are resolved and quoted, the cursor's value and the
  safety-lag bound go through the connector's own binding (``%(since)s``, pyformat); a query
  source is wrapped as a subquery (``(<query>) AS src``).
- **The cursor's boundary is read again**: ``u >= since AND u <= until``, ``ORDER BY u, k``, so
  a row committed late with the cursor's own timestamp and a key below the cursor's is read by
  the next run; rows sharing that value are read again and the load's digests skip those that
  did not change (docs/adr/0004-cursor-boundary.md).
- **Constant memory**: rows come from ``cursor.fetch_arrow_batches()`` (one Arrow table per result
  chunk the connector downloads), re-chunked to ``chunk_size`` rows; memory holds the few result
  chunks the connector prefetches and one chunk of rows, never the whole result. A result the
  server sends as JSON (Arrow is the Python connector's default) falls back to
  ``fetchmany(chunk_size)``; there the connector converts values itself, so a value it cannot
  convert fails the read instead of rejecting its row.
- **Time zones**: the session runs with ``TIMEZONE = 'UTC'`` and AUTO input formats.
  ``TIMESTAMP_LTZ``/``TIMESTAMP_TZ`` compare as instants (their bound is cast ``AS TIMESTAMP_TZ``
  from an aware UTC value). ``TIMESTAMP_NTZ`` has no zone: **its values are taken as UTC**, like
  ``core/cursor.py`` takes naive values, compared against a naive UTC bound cast
  ``AS TIMESTAMP_NTZ`` and returned tz-aware UTC.
- **Tie order matches the cursor**: a text key is sorted ``COLLATE 'utf8'`` (UTF-8 bytes, i.e.
  code point order, like Python's ``str``), whatever collation the column carries.
- **Skipped rows**: rows with a null cursor and rows after the bound are counted by one
  ``COUNT_IF`` query on the same relation. Snowflake isolates statements, not transactions
  (READ COMMITTED), so the counts describe the relation as of their own statement.
- **Precision**: Snowflake keeps nanoseconds, Python microseconds. Rows in the stored cursor's
  microsecond (sub-microsecond digits included) are at or after the bound, so they are read again
  by the next run like the rest of the boundary (never missed; the load skips unchanged contacts).

Type table (Snowflake column type -> the value formulas see):

================================  =====================================================
Snowflake type                    value
================================  =====================================================
NUMBER(p, 0) (INT, BIGINT...)     ``int``
NUMBER(p, s > 0)                  ``Decimal`` (exact; the connector's float is not used)
FLOAT / DOUBLE / REAL             ``float``
VARCHAR / TEXT / STRING / CHAR    ``str``
BOOLEAN                           ``bool``
BINARY / VARBINARY                ``bytes``
DATE                              ``datetime.date``
TIMESTAMP_NTZ (no zone)           ``datetime`` tz-aware UTC (the wall clock taken as UTC)
TIMESTAMP_LTZ / TIMESTAMP_TZ      ``datetime`` tz-aware UTC (the same instant)
TIME                              ``str`` (ISO, ``13:14:15``)
VARIANT / OBJECT / ARRAY / MAP    parsed JSON: ``dict`` / ``list`` / scalar
GEOGRAPHY / GEOMETRY / others     ``str``
================================  =====================================================

A value that cannot become a native (a date outside Python's years 1-9999, VARIANT text that is
not JSON) turns its row into a :class:`RowError`; the other rows go on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_provider_contactsync.core.cursor import as_instant
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import dig, top_level_columns
from airflow_provider_contactsync.core.spec.models import SqlSource
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    SqlTableSource,
    check_chunk_size,
    chunked,
    refuse_nested_cursor,
)

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)

# Type names as the connector reports them (snowflake.connector.constants.FIELD_ID_TO_NAME).
_NUMBERS = frozenset({"FIXED", "REAL"})
_INSTANTS = frozenset({"TIMESTAMP_LTZ", "TIMESTAMP_TZ"})
_WALL_CLOCKS = frozenset({"TIMESTAMP", "TIMESTAMP_NTZ"})
_TIMES = frozenset({"DATE", *_INSTANTS, *_WALL_CLOCKS})
_CURSOR_TYPES = _NUMBERS | _TIMES
"""Types an ``updated_field`` may have: they order rows the way the cursor compares its values."""
_KEY_TYPES = _CURSOR_TYPES | {"TEXT"}
"""Types a ``key`` may have: they break ties the way ``core/cursor.py`` does."""
_JSON_TYPES = frozenset({"VARIANT", "OBJECT", "ARRAY", "MAP"})
_SESSION = "ALTER SESSION SET TIMEZONE = 'UTC', TIMESTAMP_INPUT_FORMAT = 'AUTO', DATE_INPUT_FORMAT = 'AUTO'"
_SAMPLE_ROWS = 100
"""Rows looked at by :meth:`SnowflakeSource.discover` for the keys inside VARIANT/OBJECT columns."""


@dataclass(frozen=True)
class Column:
    """One column of the relation, as Snowflake names and types it."""

    name: str
    type: str
    scale: int | None = None


class SnowflakeSource(SqlTableSource):
    """A Snowflake table or query, read through ``SnowflakeHook(snowflake_conn_id=spec.conn_id)``.

    :param spec: a ``type: snowflake`` SQL source.
    :param hook: a ready hook (tests, callers that already hold one); built from ``conn_id`` if omitted.
    """

    source_type, database_name = "snowflake", "Snowflake"

    def __init__(self, spec: SqlSource, *, hook: Any = None) -> None:
        super().__init__(spec, hook=hook)
        refuse_nested_cursor(spec, "select it as a typed column in a query (profile:updated::timestamp_tz AS updated)")

    def make_hook(self) -> Any:
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        return SnowflakeHook(snowflake_conn_id=self.spec.conn_id)

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        connection = self._open()
        try:
            relation, columns = self._probe(connection)
            plan = _Plan(self.spec, relation, self._resolve_fields(columns), window)
            if plan.count_sql is not None:
                counts = _execute(connection.cursor(), plan.count_sql, plan.params).fetchone()
                for reason, count in zip(plan.count_reasons, counts, strict=True):
                    self._skip(reason, int(count or 0))
            cursor = connection.cursor()
            try:
                _execute(cursor, plan.select, plan.params)
                make_rows = _RowMaker(self.spec.fields, plan.columns, key=self.spec.key)
                yield from chunked(make_rows.from_cursor(cursor, chunk_size), chunk_size)
            finally:
                cursor.close()
        finally:
            connection.close()

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """Columns as Snowflake spells them, plus ``column.key`` paths found in sampled VARIANT/OBJECT values."""
        connection = self._open()
        try:
            relation, columns = self._probe(connection)
            names = [c.name for c in columns]
            nested = [c for c in columns if c.type in {"VARIANT", "OBJECT"}]
            if not nested:
                return names
            select = ", ".join(_quote(c.name) for c in nested)
            cursor = _execute(connection.cursor(), f"SELECT {select} FROM {relation} LIMIT {_SAMPLE_ROWS}", {})
            paths: dict[str, list[str]] = {c.name: [] for c in nested}
            for row in cursor.fetchall():
                for column, value in zip(nested, row, strict=True):
                    _collect_paths(_parse_json(value), column.name, paths[column.name])
            return [p for name in names for p in [name, *paths.get(name, [])]]
        finally:
            connection.close()

    def list_tables(self) -> list[str]:
        """``SCHEMA.TABLE`` names of the tables and views of the connection's current database."""
        connection = self._open()
        try:
            cursor = _execute(
                connection.cursor(),
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema <> 'INFORMATION_SCHEMA' ORDER BY 1, 2",
                {},
            )
            return [f"{schema}.{name}" for schema, name in cursor.fetchall()]
        finally:
            connection.close()

    def test_connection(self) -> tuple[bool, str]:
        try:
            connection = self._open()
        except Exception as exc:  # an unreachable account is an answer here, not a crash
            return False, f"cannot connect with {self.spec.conn_id!r}: {_first_line(exc)}"
        try:
            (version,) = _execute(connection.cursor(), "SELECT CURRENT_VERSION()", {}).fetchone()
            self._resolve_fields(self._probe(connection)[1])
            return True, f"Snowflake {version}: {self.relation_name} has the {len(self.spec.fields)} fields"
        except Exception as exc:
            return False, _first_line(exc)
        finally:
            connection.close()

    # -- helpers -------------------------------------------------------------------------------

    def _open(self) -> Any:
        connection = self.hook.get_conn()
        try:
            # Exact NUMBER(p, s) values in Arrow batches (the connector's default is float64).
            connection.arrow_number_to_decimal_setter = True
            connection.cursor().execute(_SESSION)
        except BaseException:
            connection.close()
            raise
        return connection

    def _probe(self, connection: Any) -> tuple[str, list[Column]]:
        """The relation's SQL and its columns (``LIMIT 0``), before anything is read."""
        relation = self._table_relation(connection) if self.spec.table else _query_relation(self.spec)
        try:
            cursor = _execute(connection.cursor(), f"SELECT * FROM {relation} LIMIT 0", {})
        except _programming_error() as exc:
            raise ConfigurationError(
                f"source {self.spec.name!r}: cannot read {self.relation_name}: {_first_line(exc)}",
                key_path="source.table" if self.spec.table else "source.query",
            ) from None
        return relation, [_column(d) for d in cursor.description]

    def _table_relation(self, connection: Any) -> str:
        """``"DB"."SCHEMA"."TABLE"`` with each part of ``spec.table`` resolved to its real spelling."""
        assert self.spec.table is not None
        *prefix, table = self.spec.table.split(".")
        cursor = connection.cursor()
        current_database, current_schema = _execute(
            cursor, "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()", {}
        ).fetchone()
        if len(prefix) == 2:
            database = self._resolve(prefix[0], _databases(cursor), what="database", key_path="source.table")
            if database is None:
                raise self._no_table(f"there is no database {prefix[0]!r}")
        elif current_database is None:
            raise self._no_table("the connection has no current database: write DATABASE.SCHEMA.TABLE")
        else:
            database = current_database
        rows = _execute(
            cursor,
            f"SELECT table_schema, table_name FROM {_quote(database)}.information_schema.tables"
            " WHERE UPPER(table_name) = UPPER(%(table)s)",
            {"table": table},
        ).fetchall()
        if prefix:
            schemas = sorted({schema for schema, _ in rows})
            schema = self._resolve(prefix[-1], schemas, what="schema", key_path="source.table")
        elif current_schema is None:
            raise self._no_table("the connection has no current schema: write SCHEMA.TABLE")
        else:
            schema = current_schema
        name = self._resolve(table, [n for s, n in rows if s == schema], what="table", key_path="source.table")
        if name is None:
            raise self._no_table(f"it does not exist in database {database} or the connection's role cannot see it")
        return ".".join(_quote(part) for part in (database, schema, name))

    def _no_table(self, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"source {self.spec.name!r}: cannot read table {self.spec.table!r}: {why}", key_path="source.table"
        )

    def _resolve(self, name: str, candidates: Iterable[str], *, what: str, key_path: str) -> str | None:
        """The real spelling of ``name``: exact match, else the one case-insensitive match; None if absent."""
        candidates = list(candidates)
        if name in candidates:
            return name
        matches = sorted({c for c in candidates if c.casefold() == name.casefold()})
        if len(matches) > 1:
            raise ConfigurationError(
                f"source {self.spec.name!r}: {what} {name!r} matches {matches}, which differ only by case; "
                "write the exact name",
                key_path=key_path,
            )
        return matches[0] if matches else None

    def _resolve_fields(self, columns: list[Column]) -> dict[str, Column]:
        """Top-level field name (as the definition writes it) -> column; refuse missing ones."""
        by_name = {c.name: c for c in columns}
        names = list(by_name)
        for attr in ("key", "updated_field"):
            field = getattr(self.spec, attr)
            if field is not None and self._resolve(field, names, what="column", key_path=f"source.{attr}") is None:
                raise ConfigurationError(
                    f"source {self.spec.name!r}: {self.relation_name} returns no column {field!r} ({attr}); "
                    f"its columns are {names}",
                    key_path=f"source.{attr}",
                )
        resolved: dict[str, Column] = {}
        missing: list[str] = []
        for top in top_level_columns(self.spec.fields):
            name = self._resolve(top, names, what="column", key_path="source.fields")
            if name is None:
                missing += [f for f in self.spec.fields if f.split(".", 1)[0] == top]
            else:
                resolved[top] = by_name[name]
        if missing:
            raise ConfigurationError(
                f"source {self.spec.name!r}: {self.relation_name} has no column for "
                + ", ".join(repr(f) for f in missing)
                + f" (listed in fields); its columns are {names}",
                key_path="source.fields",
            )
        return resolved


class _Plan:
    """The statements of one read: the windowed SELECT and the skipped-rows COUNT_IF, and their parameters."""

    def __init__(self, spec: SqlSource, relation: str, columns: dict[str, Column], window: ReadWindow) -> None:
        self.columns = columns
        select_list = ", ".join(_quote(c.name) for c in columns.values())
        self.params: dict[str, Any] = {}
        self.count_sql: str | None = None
        self.count_reasons: list[str] = []
        if spec.updated_field is None:
            # Everything, every run; no ORDER BY: sorting a whole table buys nothing here.
            self.select = f"SELECT {select_list} FROM {relation}"
            return
        assert spec.key is not None  # the model requires key with updated_field
        updated_column, key_column = columns[spec.updated_field], columns[spec.key]
        _check_types(spec, updated_column, key_column)
        updated = _quote(updated_column.name)
        key = _quote(key_column.name)
        if key_column.type == "TEXT":
            key = f"({key} COLLATE 'utf8')"
        after_cursor = None
        if window.since is not None:
            # Inclusive: the cursor's own value is read again, so a late commit at it is not lost.
            after_cursor = f"{updated} >= {self._bind('since', window.since.value, updated_column)}"
        # A safety-lag bound is a time: it cannot apply to a version-number cursor.
        bounded = window.until is not None and updated_column.type in _TIMES
        conditions = [f"{updated} IS NOT NULL", *([after_cursor] if after_cursor else [])]
        counts = [f"COUNT_IF({updated} IS NULL)"]
        self.count_reasons.append(SKIP_NULL.format(field=spec.updated_field))
        if bounded:
            until = self._bind("until", window.until, updated_column)
            conditions.append(f"{updated} <= {until}")
            later = " AND ".join([f"{updated} > {until}", *([after_cursor] if after_cursor else [])])
            counts.append(f"COUNT_IF({later})")
            self.count_reasons.append(SKIP_AFTER_UNTIL)
        where = " AND ".join(conditions)
        self.select = f"SELECT {select_list} FROM {relation} WHERE {where} ORDER BY {updated}, {key}"
        self.count_sql = f"SELECT {', '.join(counts)} FROM {relation}"

    def _bind(self, name: str, value: Any, column: Column) -> str:
        """A placeholder for ``value``, typed so it compares in UTC with ``column``."""
        if isinstance(value, dt.datetime):
            if column.type in _INSTANTS:
                self.params[name] = as_instant(value)
                return f"CAST(%({name})s AS TIMESTAMP_TZ)"
            self.params[name] = as_instant(value).replace(tzinfo=None)  # NTZ (and DATE) values are UTC
            return f"CAST(%({name})s AS TIMESTAMP_NTZ)"
        self.params[name] = value
        return f"CAST(%({name})s AS DATE)" if isinstance(value, dt.date) else f"%({name})s"


def _check_types(spec: SqlSource, updated: Column, key: Column) -> None:
    if updated.type not in _CURSOR_TYPES:
        raise ConfigurationError(
            f"source {spec.name!r}: updated_field {spec.updated_field!r} must be a timestamp, date or number "
            f"column, not {updated.type}; cast it in a query if it holds timestamps as text",
            key_path="source.updated_field",
        )
    if key.type not in _KEY_TYPES:
        raise ConfigurationError(
            f"source {spec.name!r}: key {spec.key!r} must be a number, text, date or timestamp column to break "
            f"ties, not {key.type}",
            key_path="source.key",
        )


# -- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Invalid:
    """A cell that could not become a native: its row becomes a RowError with this reason."""

    reason: str
    value: Any = None


class _RowMaker:
    """Turns result batches (Arrow tables, or tuples from ``fetchmany``) into row dicts of natives."""

    def __init__(self, fields: Sequence[str], columns: dict[str, Column], *, key: str | None = None) -> None:
        self.fields = list(fields)
        self.tops = list(columns)
        self.key_index = self.tops.index(key) if key in columns else None
        self.converters = [_converter(top, c) for top, c in columns.items()]
        self.flat = all(f in columns for f in fields)

    def from_cursor(self, cursor: Any, chunk_size: int) -> Iterator[dict[str, Any] | RowError]:
        from snowflake.connector.errors import NotSupportedError

        try:
            batches = cursor.fetch_arrow_batches(force_microsecond_precision=True)
        except NotSupportedError:  # the result came as JSON: the connector's Python values
            batches = None
        if batches is None:
            while rows := cursor.fetchmany(chunk_size):
                yield from self._rows([list(column) for column in zip(*rows, strict=True)])
            return
        for table in batches:
            for offset in range(0, table.num_rows, chunk_size):
                part = table.slice(offset, chunk_size)
                yield from self._rows([_arrow_values(part.column(i)) for i in range(part.num_columns)])

    def _rows(self, cells: list[list[Any]]) -> Iterator[dict[str, Any] | RowError]:
        """Rows from column-wise cells (one list per selected column)."""
        values = [
            [_convert(convert, v) for v in column] for convert, column in zip(self.converters, cells, strict=True)
        ]
        for row in zip(*values, strict=True):
            bad = next((i for i, v in enumerate(row) if isinstance(v, _Invalid)), None)
            if bad is not None:
                top, invalid = self.tops[bad], row[bad]
                key = None if self.key_index is None else row[self.key_index]
                key = None if isinstance(key, _Invalid) else key
                yield RowError(f"{top}: {invalid.reason}", field=top, value=invalid.value, row=key)
                continue
            document = dict(zip(self.tops, row, strict=True))
            yield {f: document[f] for f in self.fields} if self.flat else {f: dig(document, f) for f in self.fields}


def _convert(convert: Callable[[Any], Any], value: Any) -> Any:
    if value is None or isinstance(value, _Invalid):
        return value
    try:
        return convert(value)
    except RowError as exc:
        return _Invalid(exc.reason, exc.value)


def _converter(field: str, column: Column) -> Callable[[Any], Any]:
    """Value -> row-model native for one column's type (values from Arrow or from the connector)."""
    kind = column.type
    if kind == "FIXED":
        return int if not column.scale else _to_decimal
    if kind in _WALL_CLOCKS or kind in _INSTANTS:
        return _to_instant
    if kind == "DATE":
        return _to_date
    if kind in _JSON_TYPES:
        return lambda value: _json_value(value, field)
    if kind == "TIME":
        return lambda value: value.isoformat() if isinstance(value, dt.time) else str(value)
    if kind in {"TEXT", "BOOLEAN", "REAL", "BINARY"}:
        return _plain
    return _to_native


def _to_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _to_instant(value: dt.datetime) -> dt.datetime:
    return as_instant(value)


def _to_date(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, (bytearray, memoryview)) else value


def _json_value(value: Any, field: str) -> Any:
    if not isinstance(value, str):  # structured OBJECT/ARRAY/MAP columns arrive as dicts and lists
        return _to_native(value)
    try:
        return json.loads(value)
    except ValueError:
        raise RowError("not valid JSON", field=field, value=value[:200]) from None
    except RecursionError:
        raise RowError("JSON nested too deeply", field=field, value=value[:200]) from None


def _to_native(value: Any) -> Any:
    """Row-model natives for anything else (structured types, GEOGRAPHY, VECTOR...)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, Decimal, dt.date)):
        return as_instant(value) if isinstance(value, dt.datetime) else value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        return {str(k): _to_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):  # an Arrow map
            return {str(k): _to_native(v) for k, v in value}
        return [_to_native(v) for v in value]
    if isinstance(value, dt.time):
        return value.isoformat()
    return str(value)


def _arrow_values(array: Any) -> list[Any]:
    """Python values of one Arrow column; dates and timestamps are computed per value, so one value
    outside Python's years 1-9999 rejects its row instead of failing the whole batch."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_timestamp(kind):
        per_unit = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}[kind.unit]
        return [None if v is None else _epoch_offset(v * per_unit) for v in array.cast(pa.int64()).to_pylist()]
    if pa.types.is_date32(kind):
        return [None if v is None else _day_offset(v) for v in array.cast(pa.int32()).to_pylist()]
    return array.to_pylist()


def _epoch_offset(microseconds: float) -> dt.datetime | _Invalid:
    """An Arrow timestamp's value: UTC epoch for LTZ/TZ, the wall clock taken as UTC for NTZ."""
    try:
        return _EPOCH + dt.timedelta(microseconds=int(microseconds))
    except OverflowError:
        return _Invalid(f"timestamp {int(microseconds)} µs from 1970 is outside years 1-9999")


def _day_offset(days: int) -> dt.date | _Invalid:
    try:
        return _EPOCH_DAY + dt.timedelta(days=days)
    except OverflowError:
        return _Invalid(f"date {days} days from 1970-01-01 is outside years 1-9999")


# -- SQL helpers ---------------------------------------------------------------------------------


def _quote(name: str) -> str:
    """A quoted identifier: the exact spelling, ``"`` doubled."""
    return '"' + name.replace('"', '""') + '"'


def _query_relation(spec: SqlSource) -> str:
    """``(<query>) AS src``; ``%`` doubled, as the connector's pyformat binding expects."""
    assert spec.query is not None
    text = spec.query.strip().rstrip(";").strip()
    return f"({text.replace('%', '%%')}\n) AS src"


def _execute(cursor: Any, sql: str, params: dict[str, Any]) -> Any:
    """Run ``sql`` with the connector's binding; without parameters the connector does not
    interpolate, so the ``%%`` escapes are undone."""
    if params:
        cursor.execute(sql, params)
    else:
        cursor.execute(sql.replace("%%", "%"))
    return cursor


def _databases(cursor: Any) -> list[str]:
    _execute(cursor, "SHOW TERSE DATABASES", {})
    index = [d.name.lower() for d in cursor.description].index("name")
    return [row[index] for row in cursor.fetchall()]


def _column(description: Any) -> Column:
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    return Column(description.name, FIELD_ID_TO_NAME.get(description.type_code, "UNKNOWN"), description.scale)


def _programming_error() -> type[Exception]:
    from snowflake.connector.errors import ProgrammingError

    return ProgrammingError


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _collect_paths(value: Any, prefix: str, paths: list[str]) -> None:
    """``prefix.key`` (recursively) for every key of a sampled object, in first-seen order."""
    if not isinstance(value, dict):
        return
    for key, inner in value.items():
        path = f"{prefix}.{key}"
        if path not in paths:
            paths.append(path)
        _collect_paths(inner, path, paths)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

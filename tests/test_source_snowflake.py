"""SnowflakeSource through SnowflakeHook and the real connector, against fakesnow's server mode.

fakesnow runs a real HTTP server (DuckDB behind it) that the real snowflake connector talks to;
each test gets its own database on it, reached through an Airflow connection
(``AIRFLOW_CONN_<ID>`` JSON, read by the provider's SnowflakeHook).

The same source cases run against a real account when ``CONTACTSYNC_TEST_SNOWFLAKE_CONN`` holds an
Airflow connection (JSON or URI); each test then works in a temporary schema dropped afterwards.
Otherwise those cases are skipped with that reason.

Emulator gaps worked around here (not in the source), each with its reason:

- the hook passes the ``host``/``port`` extras to the connector but not ``protocol``; fakesnow
  serves plain HTTP, so the connector's default protocol is set to ``http`` for the test;
- fakesnow does not implement ``ALTER SESSION SET TIMEZONE``: the connection asks fakesnow to
  ignore ``ALTER SESSION SET`` statements (its ``nop_regexes`` session parameter); its server
  always runs in UTC;
- sqlglot cannot translate ``COLLATE 'utf8'`` to DuckDB; DuckDB's default collation is the same
  binary (code point) order, so the translator is told to drop it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")  # fakesnow's own

pytest.importorskip("fakesnow")
pytest.importorskip("airflow.providers.snowflake")

from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook  # noqa: E402
from cursor_history import Step, check_history, histories, property_settings  # noqa: E402
from hypothesis import given  # noqa: E402

from airflow_provider_contactsync.core.cursor import Cursor, normalize_value  # noqa: E402
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError  # noqa: E402
from airflow_provider_contactsync.core.spec.models import SqlSource  # noqa: E402
from airflow_provider_contactsync.sources import ReadWindow, open_source  # noqa: E402
from airflow_provider_contactsync.sources.snowflake import SnowflakeSource  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NULL_REASON = "updated_at is null"
LAG_REASON = "updated after the safety lag bound"
REAL_ENV = "CONTACTSYNC_TEST_SNOWFLAKE_CONN"
EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


# -- the emulator and the real service -----------------------------------------------------------


@pytest.fixture(scope="module")
def fakesnow_server() -> Iterator[dict[str, Any]]:
    """One fakesnow HTTP server per module; tests keep apart by using their own database."""
    import importlib
    import sys

    import fakesnow

    start = fakesnow.server
    if not callable(start):
        # fakesnow.server() imports its submodule fakesnow.server, which takes the function's name in the
        # package: get the function back and leave the submodule where the function looks for it.
        start = importlib.reload(fakesnow).server
        fakesnow.server = sys.modules["fakesnow.server"]
    with start() as connect_kwargs:
        yield connect_kwargs


@pytest.fixture
def emulated(fakesnow_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Work around the emulator's gaps (see the module docstring); yields the server's address."""
    import snowflake.connector.connection
    import sqlglot.generators.duckdb as duckdb_generator

    monkeypatch.setitem(snowflake.connector.connection.DEFAULT_CONFIGURATION, "protocol", ("http", str))
    defaults = duckdb_generator._SNOWFLAKE_COLLATION_DEFAULTS  # noqa: SLF001
    monkeypatch.setattr(duckdb_generator, "_SNOWFLAKE_COLLATION_DEFAULTS", defaults | {"utf8"})
    return fakesnow_server


def fakesnow_connection(server: dict[str, Any], database: str) -> str:
    """An Airflow connection (JSON) to ``database`` on the fakesnow server, as SnowflakeHook reads it."""
    extra = {
        "account": "fakesnow",
        "database": database,
        "host": server["host"],
        "port": server["port"],
        "protocol": "http",  # not passed on by the hook: see ``emulated``
        "session_parameters": {
            "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
            "nop_regexes": ["^ALTER SESSION SET "],
        },
    }
    return json.dumps(
        {"conn_type": "snowflake", "login": "fake", "password": "snow", "schema": "PUBLIC", "extra": extra}
    )


class Warehouse:
    """The test's database: SQL to set it up, and sources reading it."""

    def __init__(self, conn_id: str, *, schema: str | None = None) -> None:
        self.conn_id = conn_id
        self.schema = schema  # the real service: a temporary schema, given to the hook

    def hook(self) -> SnowflakeHook:
        return SnowflakeHook(snowflake_conn_id=self.conn_id, schema=self.schema)

    def execute(self, *statements: str, params: Any = None) -> None:
        conn = self.hook().get_conn()
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement, params)
        finally:
            conn.close()

    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows through the connector's binding (one statement per row: fakesnow has no array insert)."""
        names = [c.strip() for c in columns.split(",")]
        placeholders = ", ".join(f"%({i})s" for i in range(len(names)))
        conn = self.hook().get_conn()
        try:
            cur = conn.cursor()
            for row in rows:
                cur.execute(
                    f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", {str(i): v for i, v in enumerate(row)}
                )
        finally:
            conn.close()

    def source(self, **overrides: Any) -> SnowflakeSource:
        spec: dict[str, Any] = {
            "type": "snowflake",
            "name": "shop",
            "conn_id": self.conn_id,
            "table": "customers",
            "fields": ["id", "email", "updated_at"],
        }
        spec.update(overrides)
        hook = self.hook() if self.schema else None  # fakesnow: the source builds the hook from conn_id
        return SnowflakeSource(SqlSource.model_validate(spec), hook=hook)

    def incremental(self, **overrides: Any) -> SnowflakeSource:
        return self.source(updated_field="updated_at", key="id", **overrides)


def _real_connection() -> str:
    value = os.environ.get(REAL_ENV, "").strip()
    if not value:
        pytest.skip(f"{REAL_ENV} is not set: give it an Airflow connection (JSON or URI) to a Snowflake account")
    return value


@pytest.fixture(params=["fakesnow", "snowflake"])
def wh(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    """The same case on the emulator and, when configured, on a real account."""
    suffix = uuid.uuid4().hex[:10].upper()
    conn_id = f"sf_{suffix.lower()}"
    if request.param == "fakesnow":
        server = request.getfixturevalue("emulated")
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", fakesnow_connection(server, f"DB_{suffix}"))
        yield Warehouse(conn_id)
        return
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", _real_connection())
    schema = f"CONTACTSYNC_TEST_{suffix}"
    Warehouse(conn_id).execute(f"CREATE SCHEMA {schema}")
    try:
        yield Warehouse(conn_id, schema=schema)
    finally:
        Warehouse(conn_id).execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def create_customers(wh: Warehouse, rows: int, *, updated: str = "TIMESTAMP_TZ", per_hour: int = 1) -> None:
    """``rows`` customers; ``per_hour`` consecutive ids share each updated_at value (ties).

    Bound as aware UTC values: TIMESTAMP_TZ/LTZ keep the instant, TIMESTAMP_NTZ keeps the UTC wall clock.
    """
    wh.execute(f"CREATE TABLE customers (id INT, email TEXT, updated_at {updated})")
    values = [(i, f"c{i}@example.com", T0 + dt.timedelta(hours=(i - 1) // per_hour)) for i in range(1, rows + 1)]
    wh.insert("customers", "id, email, updated_at", values)


def read_all(source: SnowflakeSource, window: ReadWindow | None = None, chunk_size: int = 1000) -> list[Any]:
    return [row for chunk in source.read(window or ReadWindow(), chunk_size=chunk_size) for row in chunk]


def ids(rows: list[dict]) -> list[int]:
    return [row["id"] for row in rows]


def cursor_after(row: dict) -> Cursor:
    """The cursor the extract task stores after ``row``."""
    return Cursor(normalize_value(row["updated_at"]), row["id"])


# -- full reads ----------------------------------------------------------------------------------


def test_open_source_builds_the_snowflake_source(wh: Warehouse) -> None:
    spec = SqlSource.model_validate(
        {"type": "snowflake", "name": "shop", "conn_id": wh.conn_id, "table": "customers", "fields": ["id"]}
    )
    assert isinstance(open_source(spec), SnowflakeSource)


def test_full_read_yields_chunks_of_exactly_chunk_size(wh: Warehouse) -> None:
    create_customers(wh, 25)
    source = wh.source()

    chunks = list(source.read(ReadWindow(), chunk_size=10))

    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    rows = [row for chunk in chunks for row in chunk]
    assert sorted(ids(rows)) == list(range(1, 26))
    assert all(list(row) == ["id", "email", "updated_at"] for row in rows)
    assert rows[0]["updated_at"].tzinfo is not None
    assert source.skipped == {}


def test_chunks_are_cut_across_arrow_batches_and_never_exceed_chunk_size(wh: Warehouse) -> None:
    create_customers(wh, 7)

    chunks = list(wh.incremental().read(ReadWindow(), chunk_size=3))

    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [ids(chunk) for chunk in chunks] == [[1, 2, 3], [4, 5, 6], [7]]


def test_non_incremental_source_ignores_the_window(wh: Warehouse) -> None:
    create_customers(wh, 5)
    window = ReadWindow(Cursor(T0 + dt.timedelta(hours=3), 4), T0)

    assert sorted(ids(read_all(wh.source(), window))) == [1, 2, 3, 4, 5]


def test_values_are_row_model_natives(wh: Warehouse) -> None:
    wh.execute(
        "CREATE TABLE things (id NUMBER(10, 0), amount NUMBER(10, 2), ratio FLOAT, label TEXT, flag BOOLEAN,"
        " raw BINARY, day DATE, naive TIMESTAMP_NTZ, local_ts TIMESTAMP_LTZ, zoned TIMESTAMP_TZ, clock TIME,"
        " doc VARIANT, obj OBJECT, arr ARRAY)",
        "INSERT INTO things SELECT 1, 12.50, 0.5, 'x', TRUE, TO_BINARY('00FF', 'HEX'), '2024-03-01'::DATE,"
        " '2024-03-01 12:00:00'::TIMESTAMP_NTZ, '2024-03-01T14:00:00+02:00'::TIMESTAMP_LTZ,"
        " '2024-03-01T07:00:00-05:00'::TIMESTAMP_TZ, '13:14:15'::TIME, PARSE_JSON('{\"a\": [1, 2]}'),"
        " OBJECT_CONSTRUCT('city', 'Paris'), ARRAY_CONSTRUCT('x', 'y')",
    )
    fields = ["id", "amount", "ratio", "label", "flag", "raw", "day", "naive", "local_ts", "zoned", "clock", "doc"]
    fields += ["obj", "arr"]
    [row] = read_all(wh.source(table="things", fields=fields))

    assert row == {
        "id": 1,
        "amount": Decimal("12.50"),
        "ratio": 0.5,
        "label": "x",
        "flag": True,
        "raw": b"\x00\xff",
        "day": dt.date(2024, 3, 1),
        "naive": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),  # TIMESTAMP_NTZ is taken as UTC
        "local_ts": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        "zoned": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        "clock": "13:14:15",
        "doc": {"a": [1, 2]},
        "obj": {"city": "Paris"},
        "arr": ["x", "y"],
    }
    assert [type(row[f]) for f in ("id", "amount", "raw")] == [int, Decimal, bytes]
    assert all(row[f].utcoffset() == dt.timedelta(0) for f in ("naive", "local_ts", "zoned"))


def test_json_results_fall_back_to_fetchmany_with_the_same_values(wh: Warehouse) -> None:
    """A result sent as JSON (no Arrow) is read with fetchmany: the same rows, the same natives."""
    create_customers(wh, 5)

    class JsonOnlyHook:
        def __init__(self, hook: SnowflakeHook) -> None:
            self.hook = hook

        def get_conn(self) -> Any:
            from snowflake.connector.errors import NotSupportedError

            conn = self.hook.get_conn()
            make_cursor = conn.cursor

            def cursor(*args: Any, **kwargs: Any) -> Any:
                cur = make_cursor(*args, **kwargs)
                cur.fetch_arrow_batches = lambda *a, **k: (_ for _ in ()).throw(NotSupportedError())
                return cur

            conn.cursor = cursor
            return conn

    arrow = wh.incremental()
    fallback = SnowflakeSource(arrow.spec, hook=JsonOnlyHook(wh.hook()))

    chunks = list(fallback.read(ReadWindow(Cursor(T0 + dt.timedelta(hours=1), 2)), chunk_size=2))

    assert [len(chunk) for chunk in chunks] == [2, 2]
    assert [row for chunk in chunks for row in chunk] == read_all(
        arrow, ReadWindow(Cursor(T0 + dt.timedelta(hours=1), 2))
    )


# -- incremental reads ---------------------------------------------------------------------------


def test_incremental_read_is_in_updated_key_order(wh: Warehouse) -> None:
    create_customers(wh, 12, per_hour=4)
    wh.execute("UPDATE customers SET updated_at = DATEADD(day, -1, updated_at) WHERE id = 12")

    rows = read_all(wh.incremental(), chunk_size=5)

    assert ids(rows) == [12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_the_cursor_s_own_timestamp_is_read_again_whatever_the_key(wh: Warehouse) -> None:
    create_customers(wh, 20, per_hour=10)  # ids 1-10 at T0, 11-20 at T0 + 1h

    rows = read_all(wh.incremental(), ReadWindow(Cursor(T0, 5)), chunk_size=3)

    assert ids(rows) == list(range(1, 21))  # the boundary T0 whole, keys below 5 included, in order
    assert [r["updated_at"] for r in rows[:10]] == [T0] * 10


def test_a_late_commit_at_the_cursor_s_timestamp_below_its_key_is_read_by_the_next_run(wh: Warehouse) -> None:
    create_customers(wh, 20, per_hour=10)
    source = wh.incremental()
    until = T0 + dt.timedelta(hours=2)
    cursor = cursor_after(read_all(source, ReadWindow(until=until), chunk_size=7)[-1])
    assert cursor == Cursor(T0 + dt.timedelta(hours=1), 20)
    # Committed after the run, stamped with the cursor's instant: a new row and an update, keys below 20.
    wh.insert("customers", "id, email, updated_at", [(0, "late@example.com", cursor.value)])
    wh.execute(
        "UPDATE customers SET email = 'changed@example.com', updated_at = %(t)s WHERE id = 3",
        params={"t": cursor.value},
    )

    second_run = read_all(source, ReadWindow(cursor, until), chunk_size=7)

    assert ids(second_run) == [0, 3, *range(11, 21)]  # the late rows, then the boundary read again
    assert [r["email"] for r in second_run[:2]] == ["late@example.com", "changed@example.com"]


def test_text_keys_break_ties_in_code_point_order_like_the_cursor(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE customers (id TEXT, email TEXT, updated_at TIMESTAMP_TZ)")
    keys = ["b", "B", "a", "é", "Z", "10", "9"]
    wh.insert("customers", "id, email, updated_at", [(k, f"{k}@example.com", T0) for k in keys])
    source = wh.incremental()

    rows = read_all(source)
    from_z = read_all(source, ReadWindow(Cursor(T0, "Z")), chunk_size=3)

    assert ids(rows) == sorted(keys)  # Python's order: "10" < "9" < "B" < "Z" < "a" < "b" < "é"
    assert ids(from_z) == sorted(keys)  # the boundary read again, in the same order
    pairs = [Cursor(normalize_value(r["updated_at"]), r["id"]) for r in from_z]
    assert all(a.is_before(b.value, b.key) for a, b in zip(pairs, pairs[1:], strict=False))  # core/cursor.py agrees


def test_until_bound_leaves_later_rows_for_the_next_run_and_counts_them(wh: Warehouse) -> None:
    create_customers(wh, 10)  # one row per hour from T0
    source = wh.incremental()

    rows = read_all(source, ReadWindow(Cursor(T0, 1), T0 + dt.timedelta(hours=5)))

    assert ids(rows) == [1, 2, 3, 4, 5, 6]  # both bounds are inclusive: T0 read again, T0 + 5h read
    assert source.skipped == {LAG_REASON: 4}


def test_skipped_counts_only_rows_inside_the_cursor_s_window(wh: Warehouse) -> None:
    create_customers(wh, 10)
    source = wh.incremental()

    read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=8), 9), T0 + dt.timedelta(hours=2)))

    assert source.skipped == {LAG_REASON: 2}  # ids 9 (the boundary) and 10 wait; ids 1-8 are behind the cursor


def test_null_updated_at_is_counted_as_skipped(wh: Warehouse) -> None:
    create_customers(wh, 6)
    wh.execute("UPDATE customers SET updated_at = NULL WHERE id IN (2, 5)")
    source = wh.incremental()

    rows = read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))

    assert ids(rows) == [1, 3, 4, 6]
    assert source.skipped == {NULL_REASON: 2}


def test_skipped_is_reset_on_each_read(wh: Warehouse) -> None:
    create_customers(wh, 3)
    wh.execute("UPDATE customers SET updated_at = NULL WHERE id = 2")
    source = wh.incremental()
    read_all(source)

    read_all(source)

    assert source.skipped == {NULL_REASON: 1}


def test_number_cursor_ignores_the_time_bound(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE versions (id INT, email TEXT, version NUMBER(10, 0))")
    wh.insert("versions", "id, email, version", [(1, "a@x.org", 3), (2, "b@x.org", 1), (3, "c@x.org", 3)])
    source = wh.source(table="versions", fields=["id", "email", "version"], updated_field="version", key="id")

    rows = read_all(source, ReadWindow(Cursor(3, 1), T0))

    assert ids(rows) == [1, 3]  # version 3 read again, both keys
    assert source.skipped == {}


# Rows whose wall clocks and instants disagree: ordered by instant, 1 < 2 < 3.
ZONED = [
    (1, "2024-03-01T12:30:00+02:00"),  # 10:30 UTC
    (2, "2024-03-01T11:00:00+00:00"),  # 11:00 UTC
    (3, "2024-03-01T06:30:00-05:00"),  # 11:30 UTC
]


@pytest.mark.parametrize("kind", ["TIMESTAMP_LTZ", "TIMESTAMP_TZ"])
def test_zoned_cursors_compare_instants_whatever_the_offsets(wh: Warehouse, kind: str) -> None:
    wh.execute(f"CREATE TABLE customers (id INT, email TEXT, updated_at {kind})")
    for key, text in ZONED:
        wh.execute(f"INSERT INTO customers SELECT {key}, 'c{key}@example.com', '{text}'::{kind}")
    source = wh.incremental()
    eleven_in_paris = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 11:00 UTC

    everything = read_all(source)
    after = read_all(source, ReadWindow(Cursor(normalize_value(eleven_in_paris), 2)))
    bounded = read_all(
        source, ReadWindow(until=dt.datetime(2024, 3, 1, 6, 15, tzinfo=dt.timezone(-dt.timedelta(hours=5))))
    )

    assert ids(everything) == [1, 2, 3]
    assert [r["updated_at"] for r in everything] == [
        dt.datetime(2024, 3, 1, h, m, tzinfo=UTC) for h, m in ((10, 30), (11, 0), (11, 30))
    ]
    assert ids(after) == [2, 3]  # 11:00 UTC, the cursor's own instant, read again
    assert ids(bounded) == [1, 2] and source.skipped == {LAG_REASON: 1}  # until = 11:15 UTC


def test_ntz_cursor_takes_wall_clocks_as_utc(wh: Warehouse) -> None:
    create_customers(wh, 4, updated="TIMESTAMP_NTZ")  # 12:00, 13:00, 14:00, 15:00 (no zone)
    source = wh.incremental()
    one_pm_in_new_york = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5)))  # 13:00 UTC

    rows = read_all(source, ReadWindow(Cursor(normalize_value(one_pm_in_new_york), 1), T0 + dt.timedelta(hours=2)))

    assert ids(rows) == [2, 3]  # 13:00 (the cursor's own value, read again) and 14:00 = the bound
    assert rows[0]["updated_at"] == dt.datetime(2024, 3, 1, 13, 0, tzinfo=UTC)
    assert source.skipped == {LAG_REASON: 1}


def test_date_cursor(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE customers (id INT, email TEXT, updated_at DATE)")
    days = [(1, dt.date(2024, 3, 1)), (2, dt.date(2024, 3, 1)), (3, dt.date(2024, 3, 2)), (4, dt.date(2024, 3, 5))]
    wh.insert("customers", "id, email, updated_at", [(k, f"c{k}@x.org", d) for k, d in days])
    source = wh.incremental()

    rows = read_all(source, ReadWindow(Cursor(dt.date(2024, 3, 1), 2), dt.datetime(2024, 3, 2, 8, tzinfo=UTC)))

    assert ids(rows) == [1, 2, 3]  # a DATE cursor reads its last day again
    assert rows[0]["updated_at"] == dt.date(2024, 3, 1)
    assert source.skipped == {LAG_REASON: 1}


class History:
    """The table the cursor property test (tests/cursor_history.py) commits to and reads."""

    key_field = "id"

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh

    def reset(self) -> None:
        self.wh.execute(
            "DROP TABLE IF EXISTS customers", "CREATE TABLE customers (id INT, email TEXT, updated_at TIMESTAMP_TZ)"
        )

    def commit(self, rows: dict[int, tuple[str, dt.datetime]]) -> None:
        params: dict[str, Any] = {}
        values = []
        for i, (key, (email, at)) in enumerate(rows.items()):
            params.update({f"k{i}": key, f"e{i}": email, f"t{i}": at})
            values.append(f"(%(k{i})s, %(e{i})s, %(t{i})s)")
        keys = ", ".join(f"%(k{i})s" for i in range(len(rows)))
        self.wh.execute(
            f"DELETE FROM customers WHERE id IN ({keys})",
            f"INSERT INTO customers (id, email, updated_at) VALUES {', '.join(values)}",
            params=params,
        )

    def source(self) -> SnowflakeSource:
        return self.wh.incremental()


@property_settings(max_examples=20)
@given(history=histories())
def test_property_no_commit_is_missed_at_the_cursor_boundary(wh: Warehouse, history: list[Step]) -> None:
    check_history(History(wh), history)


# -- query sources -------------------------------------------------------------------------------


def test_query_source_is_wrapped_with_the_incremental_predicate(wh: Warehouse) -> None:
    create_customers(wh, 12, per_hour=3)
    wh.execute("UPDATE customers SET email = 'someone@elsewhere.net' WHERE id = 8")
    query = "SELECT id, email, updated_at FROM customers WHERE email LIKE '%@example.com'"
    source = wh.incremental(table=None, query=query)

    rows = read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=1), 5), T0 + dt.timedelta(hours=2)))

    assert ids(rows) == [4, 5, 6, 7, 9]  # 8 left out by the query's own filter ('%' is not a placeholder)
    assert source.skipped == {LAG_REASON: 3}
    everything = read_all(wh.source(table=None, query=query))  # no parameters bound: '%' stays as written
    assert sorted(ids(everything)) == [i for i in range(1, 13) if i != 8]


def test_query_with_lower_case_aliases_keeps_the_definition_names(wh: Warehouse) -> None:
    create_customers(wh, 2)
    query = 'SELECT id AS "id", email AS "Email", updated_at FROM customers;'

    rows = read_all(wh.source(table=None, query=query, fields=["ID", "email", "updated_at"]))

    assert sorted(rows, key=lambda r: r["ID"])[0] == {"ID": 1, "email": "c1@example.com", "updated_at": T0}


# -- nested values -------------------------------------------------------------------------------


def create_profiles(wh: Warehouse) -> None:
    wh.execute(
        "CREATE TABLE customers (id INT, email TEXT, profile VARIANT, prefs OBJECT, tags ARRAY,"
        " updated_at TIMESTAMP_TZ)",
        'INSERT INTO customers SELECT 1, \'a@x.org\', PARSE_JSON(\'{"city": "Paris", "address": {"zip": "75001"}}\'),'
        " OBJECT_CONSTRUCT('lang', 'fr'), ARRAY_CONSTRUCT('vip', 'newsletter'), '2024-03-01T12:00:00+00:00'",
        "INSERT INTO customers SELECT 2, 'b@x.org', PARSE_JSON('{\"country\": \"BE\"}'), OBJECT_CONSTRUCT(),"
        " ARRAY_CONSTRUCT(), '2024-03-01T13:00:00+00:00'",
        "INSERT INTO customers SELECT 3, 'c@x.org', NULL, NULL, NULL, '2024-03-01T14:00:00+00:00'",
        "INSERT INTO customers SELECT 4, 'd@x.org', PARSE_JSON('\"just text\"'), NULL, ARRAY_CONSTRUCT(1, 2),"
        " '2024-03-01T15:00:00+00:00'",
    )


def test_nested_fields_reach_inside_variant_and_object_columns(wh: Warehouse) -> None:
    create_profiles(wh)
    fields = ["id", "profile.city", "profile.address.zip", "prefs.lang", "tags", "updated_at"]

    rows = read_all(wh.incremental(fields=fields))

    assert [{k: r[k] for k in fields[:5]} for r in rows] == [
        {
            "id": 1,
            "profile.city": "Paris",
            "profile.address.zip": "75001",
            "prefs.lang": "fr",
            "tags": ["vip", "newsletter"],
        },
        {"id": 2, "profile.city": None, "profile.address.zip": None, "prefs.lang": None, "tags": []},
        {"id": 3, "profile.city": None, "profile.address.zip": None, "prefs.lang": None, "tags": None},
        {"id": 4, "profile.city": None, "profile.address.zip": None, "prefs.lang": None, "tags": [1, 2]},
    ]


def test_a_whole_variant_column_is_parsed_json(wh: Warehouse) -> None:
    create_profiles(wh)

    rows = read_all(wh.incremental(fields=["id", "profile", "updated_at"]))

    assert [r["profile"] for r in rows] == [
        {"city": "Paris", "address": {"zip": "75001"}},
        {"country": "BE"},
        None,
        "just text",
    ]


# -- refusals and rejects ------------------------------------------------------------------------


def test_missing_table_is_a_configuration_error_naming_it(wh: Warehouse) -> None:
    with pytest.raises(ConfigurationError, match="no_such_table") as info:
        read_all(wh.source(table="no_such_table"))
    assert info.value.key_path == "source.table"


def test_missing_schema_or_database_is_a_configuration_error(wh: Warehouse) -> None:
    create_customers(wh, 1)
    with pytest.raises(ConfigurationError, match="nowhere.customers") as info:
        read_all(wh.source(table="nowhere.customers"))
    assert info.value.key_path == "source.table"
    with pytest.raises(ConfigurationError, match="no database 'NO_DB'"):
        read_all(wh.source(table="NO_DB.PUBLIC.customers"))


def test_missing_field_is_refused_before_reading(wh: Warehouse) -> None:
    create_customers(wh, 3)

    with pytest.raises(ConfigurationError, match="'phone'.*'address.city'") as info:
        read_all(wh.source(fields=["id", "email", "phone", "address.city", "updated_at"]))

    assert info.value.key_path == "source.fields"
    assert "UPDATED_AT" in str(info.value)  # the message lists the columns that exist


def test_text_cursor_is_refused(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE customers (id INT, email TEXT, updated_at TEXT)")

    with pytest.raises(ConfigurationError, match="TEXT") as info:
        read_all(wh.incremental())

    assert info.value.key_path == "source.updated_field"


@pytest.mark.parametrize("kind", ["BOOLEAN", "VARIANT", "ARRAY"])
def test_cursors_that_cannot_order_rows_are_refused(wh: Warehouse, kind: str) -> None:
    wh.execute(f"CREATE TABLE customers (id INT, email TEXT, updated_at {kind})")

    with pytest.raises(ConfigurationError) as info:
        read_all(wh.incremental())

    assert info.value.key_path == "source.updated_field"


def test_query_without_the_key_is_refused_on_the_key(wh: Warehouse) -> None:
    create_customers(wh, 2)
    source = wh.source(
        table=None, query="SELECT email, updated_at FROM customers", updated_field="updated_at", key="id"
    )

    with pytest.raises(ConfigurationError, match="'id'") as info:
        read_all(source)

    assert info.value.key_path == "source.key"


def test_a_dotted_cursor_is_refused() -> None:
    spec = SqlSource.model_validate(
        {
            "type": "snowflake",
            "name": "shop",
            "conn_id": "unused",
            "table": "customers",
            "fields": ["id", "profile.updated"],
            "updated_field": "profile.updated",
            "key": "id",
        }
    )
    with pytest.raises(ConfigurationError) as info:
        SnowflakeSource(spec)
    assert info.value.key_path == "source.updated_field"


def test_an_unconvertible_value_rejects_only_its_row(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE customers (id INT, email TEXT, birthday DATE, updated_at TIMESTAMP_TZ)")
    try:
        wh.execute(
            "INSERT INTO customers SELECT 1, 'a@x.org', '1990-09-25'::DATE, '2024-03-01T12:00:00+00:00'",
            "INSERT INTO customers SELECT 2, 'b@x.org', DATEADD(year, 9000, '2024-01-01'::DATE),"
            " '2024-03-01T13:00:00+00:00'",
            "INSERT INTO customers SELECT 3, 'c@x.org', NULL, '2024-03-01T14:00:00+00:00'",
        )
    except Exception as exc:  # the real service may refuse the year 11024 itself
        pytest.skip(f"this Snowflake refuses a date outside years 1-9999: {exc}")

    rows = read_all(wh.incremental(fields=["id", "email", "birthday", "updated_at"]), chunk_size=2)

    assert [r["id"] if isinstance(r, dict) else "rejected" for r in rows] == [1, "rejected", 3]
    assert isinstance(rows[1], RowError) and rows[1].field == "birthday"
    assert "outside years 1-9999" in rows[1].reason


def test_variant_text_that_is_not_json_is_a_row_error() -> None:
    from airflow_provider_contactsync.sources.snowflake import Column, _RowMaker

    columns = {"id": Column("ID", "FIXED", 0), "doc": Column("DOC", "VARIANT")}
    maker = _RowMaker(["id", "doc.a"], columns, key="id")

    rows = list(maker._rows([[1, 2], ['{"a": 1}', "{not json"]]))  # noqa: SLF001

    assert rows[0] == {"id": 1, "doc.a": 1}
    assert isinstance(rows[1], RowError) and rows[1].field == "doc" and "not valid JSON" in rows[1].reason
    assert rows[1].row == 2  # the error report names the row by its key


# -- identifiers ---------------------------------------------------------------------------------


def test_identifiers_are_resolved_case_insensitively_and_quoted(wh: Warehouse) -> None:
    wh.execute(
        'CREATE TABLE "MixedCase" (ID INT, "Email" TEXT, "updated_At" TIMESTAMP_TZ)',
        "INSERT INTO \"MixedCase\" SELECT 1, 'a@x.org', '2024-03-01T12:00:00+00:00'",
    )
    database, schema = wh.hook().get_first("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()")

    for table in ("mixedcase", f"{schema.lower()}.MIXEDCASE", f"{database.lower()}.{schema.title()}.mixedCase"):
        source = wh.source(table=table, fields=["id", "EMAIL", "updated_at"], updated_field="updated_at", key="id")
        assert read_all(source) == [{"id": 1, "EMAIL": "a@x.org", "updated_at": T0}], table


def test_names_differing_only_by_case_are_ambiguous() -> None:
    spec = SqlSource.model_validate(
        {"type": "snowflake", "name": "shop", "conn_id": "unused", "table": "t", "fields": ["email"]}
    )
    source = SnowflakeSource(spec)

    assert source._resolve("Email", ["EMAIL", "Email"], what="column", key_path="source.fields") == "Email"  # noqa: SLF001
    with pytest.raises(ConfigurationError, match="differ only by case") as info:
        source._resolve("email", ["EMAIL", "Email"], what="column", key_path="source.fields")  # noqa: SLF001
    assert info.value.key_path == "source.fields"


# -- discovery -----------------------------------------------------------------------------------


def test_discover_lists_columns_and_keys_inside_objects(wh: Warehouse) -> None:
    create_profiles(wh)

    found = wh.source(fields=["id"]).discover()

    columns = [name for name in found if "." not in name]
    paths = {"PROFILE.city", "PROFILE.address", "PROFILE.address.zip", "PROFILE.country", "PREFS.lang"}
    assert columns == ["ID", "EMAIL", "PROFILE", "PREFS", "TAGS", "UPDATED_AT"]
    assert set(found) - set(columns) == paths
    # Each column's paths follow it (in key order: Snowflake stores object keys sorted, fakesnow as written).
    after_profile = found[found.index("PROFILE") + 1 : found.index("PREFS")]
    assert set(after_profile) == {p for p in paths if p.startswith("PROFILE.")}


def test_list_tables(wh: Warehouse) -> None:
    create_customers(wh, 1)
    wh.execute("CREATE TABLE orders (id INT)")

    tables = wh.source().list_tables()

    schema = (wh.schema or "PUBLIC").upper()
    assert {f"{schema}.CUSTOMERS", f"{schema}.ORDERS"} <= set(tables)


def test_test_connection(wh: Warehouse) -> None:
    create_customers(wh, 1)

    ok, message = wh.source().test_connection()
    missing_ok, missing_message = wh.source(table="no_such_table").test_connection()

    assert ok and "Snowflake" in message and "3 fields" in message
    assert not missing_ok and "no_such_table" in missing_message


def test_test_connection_never_raises_for_an_unreachable_account(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"account": "nowhere", "host": "127.0.0.1", "port": 9, "protocol": "http", "database": "DB"}
    conn = {"conn_type": "snowflake", "login": "user", "password": "s3cret-pass", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_SF_NOWHERE", json.dumps(conn))
    import snowflake.connector.connection

    monkeypatch.setitem(snowflake.connector.connection.DEFAULT_CONFIGURATION, "protocol", ("http", str))
    monkeypatch.setitem(snowflake.connector.connection.DEFAULT_CONFIGURATION, "login_timeout", (1, int))
    spec = SqlSource.model_validate(
        {"type": "snowflake", "name": "shop", "conn_id": "sf_nowhere", "table": "t", "fields": ["id"]}
    )

    ok, message = SnowflakeSource(spec).test_connection()

    assert not ok and "sf_nowhere" in message
    assert "s3cret-pass" not in message


# -- a real DAG run ------------------------------------------------------------------------------


SHOP_ROWS = [
    # id, email, first, last, profile, tags, minutes after T0
    (1, " Ada.Lovelace@Example.com ", "Ada", "Lovelace", {"city": "London"}, ["vip", "newsletter"], 0),
    (2, "alan.turing@example.org", "Alan", "Turing", {"city": "Wilmslow", "zip": "SK9"}, ["newsletter"], 5),
    (3, "grace@example.com", "Grace", "Hopper", {}, [], 10),
    (4, "not-an-email", "Linus", "Torvalds", {"city": "Helsinki"}, None, 15),
    (5, "margaret@example.com", "Margaret", "Hamilton", None, ["vip"], 15),  # tie with 4
]
TRAITS = {  # the TRAITS payload of each row, by id
    1: {"loyalty_tier": "gold", "preferred_store": "London Soho"},
    2: {"loyalty_tier": "silver"},
    3: None,
    4: {"loyalty_tier": "bronze"},
    5: {"preferred_store": None},
}


def test_example_definition_runs_as_a_dag_and_a_second_run_sends_nothing(
    emulated: dict[str, Any],
    brevo_sandbox: Any,
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from servers.airflow_db import run_dag, task_states, xcom_value

    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    definition = load_definition(EXAMPLES / "definitions" / "shop_customers_snowflake.yaml")
    definition = definition.model_copy(update={"integration": f"sf{uuid.uuid4().hex[:8]}"})
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_SNOWFLAKE", fakesnow_connection(emulated, "SHOP"))
    brevo = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    brevo["extra"] = json.dumps({"poll_interval": 0.01, "max_retries": 0})
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(brevo))
    for name in ("CITY", "TAGS", "LOYALTY_TIER", "PREFERRED_STORE"):
        brevo_sandbox.create_attribute(name, "text")
    shop = Warehouse("shop_snowflake")
    shop.execute(
        "CREATE OR REPLACE TABLE SHOP.PUBLIC.CUSTOMERS (ID INT, EMAIL TEXT, FIRST_NAME TEXT, LAST_NAME TEXT,"
        " PROFILE VARIANT, TAGS ARRAY, TRAITS VARIANT, UPDATED_AT TIMESTAMP_TZ)"
    )
    for key, email, first, last, profile, tags, minutes in SHOP_ROWS:
        shop.execute(
            "INSERT INTO SHOP.PUBLIC.CUSTOMERS SELECT %(id)s, %(email)s, %(first)s, %(last)s,"
            " PARSE_JSON(%(profile)s), PARSE_JSON(%(tags)s), PARSE_JSON(%(traits)s), %(at)s",
            params={
                "traits": json.dumps(TRAITS[key]),
                "id": key,
                "email": email,
                "first": first,
                "last": last,
                "profile": json.dumps(profile),
                "tags": json.dumps(tags),
                "at": T0 + dt.timedelta(minutes=minutes),
            },
        )

    def run() -> Any:
        return run_dag(build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0}))

    first = run()
    summary = xcom_value(first, "load")

    assert set(task_states(first).values()) == {"success"}
    assert (summary["rows read"], summary["rejected"], summary["created"]) == (5, 1, 4)
    assert summary["cursor"]["value"] == "2024-03-01T12:15:00+00:00" and summary["cursor"]["key"] == 5
    contacts = {c.get("email"): c["attributes"] for c in brevo_sandbox.contacts()}
    assert contacts["ada.lovelace@example.com"]["CITY"] == "London"
    assert contacts["ada.lovelace@example.com"]["TAGS"] == "vip, newsletter"
    payload = {email: (a.get("LOYALTY_TIER"), a.get("PREFERRED_STORE")) for email, a in contacts.items()}
    assert payload == {  # the TRAITS keys as attributes; null values leave the attribute unset
        "ada.lovelace@example.com": ("gold", "London Soho"),
        "alan.turing@example.org": ("silver", None),
        "grace@example.com": (None, None),
        "margaret@example.com": (None, None),
    }

    writes = [r for r in brevo_sandbox.requests() if r["method"] != "GET"]
    second = run()

    assert set(task_states(second).values()) == {"success"}
    again = xcom_value(second, "load")
    # Ids 4 and 5 share the cursor's timestamp: read again, unchanged, so left out and nothing is sent.
    assert (again["rows read"], again["skipped at source"], again["created"], again["updated"]) == (0, 2, 0, 0)
    assert [r for r in brevo_sandbox.requests() if r["method"] != "GET"] == writes

"""PostgresSource against a real PostgreSQL server (tests/servers/postgres.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from airflow.providers.postgres.hooks.postgres import PostgresHook
from cursor_history import Step, check_history, histories, property_settings
from hypothesis import given

from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.models import SqlSource
from airflow_provider_contactsync.sources import ReadWindow, open_source
from airflow_provider_contactsync.sources.postgres import PostgresSource

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NULL_REASON = "updated_at is null"
LAG_REASON = "updated after the safety lag bound"


class Psycopg2Hook:
    """Stands in for PostgresHook on installs where it hands out psycopg2 connections."""

    def __init__(self, conn_id: str) -> None:
        self.connection = PostgresHook(postgres_conn_id=conn_id).connection

    def get_conn(self) -> Any:
        import psycopg2

        c = self.connection
        return psycopg2.connect(host=c.host, port=c.port, user=c.login, password=c.password, dbname=c.schema)


class Database:
    """The test's database: SQL to set it up, and sources reading it."""

    def __init__(self, conn_id: str, driver: str = "psycopg") -> None:
        self.conn_id = conn_id
        self.driver = driver

    def execute(self, *statements: str, params: Any = None) -> None:
        conn = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()

    def source(self, **overrides: Any) -> PostgresSource:
        spec: dict[str, Any] = {
            "type": "postgres",
            "name": "crm",
            "conn_id": self.conn_id,
            "table": "public.customers",
            "fields": ["id", "email", "updated_at"],
        }
        spec.update(overrides)
        hook = Psycopg2Hook(self.conn_id) if self.driver == "psycopg2" else None
        return PostgresSource(SqlSource.model_validate(spec), hook=hook)

    def incremental(self, **overrides: Any) -> PostgresSource:
        return self.source(updated_field="updated_at", key="id", **overrides)


@pytest.fixture
def db(postgres_db: str) -> Database:
    return Database(postgres_db)


@pytest.fixture(params=["psycopg", "psycopg2"])
def any_driver_db(request: pytest.FixtureRequest, postgres_db: str) -> Database:
    """The same test through psycopg 3 (what the installed hook gives) and psycopg2."""
    return Database(postgres_db, request.param)


def create_customers(db: Database, rows: int, *, updated: str = "timestamptz", per_hour: int = 1) -> None:
    """``rows`` customers; ``per_hour`` consecutive ids share each updated_at value (ties)."""
    db.execute(
        f"CREATE TABLE customers (id int PRIMARY KEY, email text, updated_at {updated})",
        f"INSERT INTO customers SELECT i, 'c' || i || '@example.com',"
        f" '2024-03-01 12:00:00+00'::timestamptz + ((i - 1) / {per_hour}) * interval '1 hour'"
        f" FROM generate_series(1, {rows}) AS i",
    )


def read_all(source: PostgresSource, window: ReadWindow | None = None, chunk_size: int = 1000) -> list[dict]:
    return [row for chunk in source.read(window or ReadWindow(), chunk_size=chunk_size) for row in chunk]


def ids(rows: list[dict]) -> list[int]:
    return [row["id"] for row in rows]


def cursor_after(row: dict) -> Cursor:
    """The cursor the extract task stores after ``row``."""
    return Cursor(normalize_value(row["updated_at"]), row["id"])


# -- full reads --------------------------------------------------------------------------------


def test_full_read_yields_chunks_of_exactly_chunk_size(any_driver_db: Database) -> None:
    create_customers(any_driver_db, 25)
    source = any_driver_db.source()

    chunks = list(source.read(ReadWindow(), chunk_size=10))

    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    rows = [row for chunk in chunks for row in chunk]
    assert sorted(ids(rows)) == list(range(1, 26))
    assert all(list(row) == ["id", "email", "updated_at"] for row in rows)
    assert source.skipped == {}


def test_rows_are_built_whatever_cursor_the_connection_extras_ask_for(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_customers(db, 3)
    c = PostgresHook(postgres_conn_id=db.conn_id).connection
    conn = {"conn_type": "postgres", "host": c.host, "port": c.port, "login": c.login, "password": c.password}
    conn.update({"schema": c.schema, "extra": {"cursor": "dictcursor"}})
    monkeypatch.setenv("AIRFLOW_CONN_PG_DICT", json.dumps(conn))

    assert ids(read_all(db.incremental(conn_id="pg_dict"))) == [1, 2, 3]


def test_non_incremental_source_ignores_the_window(db: Database) -> None:
    create_customers(db, 5)
    window = ReadWindow(Cursor(T0 + dt.timedelta(hours=3), 4), T0)

    assert sorted(ids(read_all(db.source(), window))) == [1, 2, 3, 4, 5]


def test_values_are_row_model_natives(db: Database) -> None:
    db.execute(
        "CREATE TABLE things (id int, ts timestamptz, naive timestamp, day date, amount numeric(10,2),"
        " doc jsonb, tags text[], token uuid, raw bytea, flag boolean, ratio double precision)",
        "INSERT INTO things VALUES (1, '2024-03-01 12:00+02', '2024-03-01 12:00', '2024-03-01', 12.50,"
        " '{\"a\": [1, 2]}', '{x,y}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', true, 0.5)",
    )
    fields = ["id", "ts", "naive", "day", "amount", "doc", "tags", "token", "raw", "flag", "ratio"]
    [row] = read_all(db.source(table="things", fields=fields))

    assert row == {
        "id": 1,
        "ts": dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        "naive": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),  # timestamp without time zone is UTC
        "day": dt.date(2024, 3, 1),
        "amount": Decimal("12.50"),
        "doc": {"a": [1, 2]},
        "tags": ["x", "y"],
        "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "raw": b"\x00\xff",
        "flag": True,
        "ratio": 0.5,
    }
    assert row["ts"].utcoffset() == dt.timedelta(0)


def test_only_columns_that_stage_as_they_are_skip_the_staging_type_scan(any_driver_db: Database) -> None:
    """Text, integers, floats, booleans, timestamps and JSON stage as read; a date or numeric column
    would change type in msgpack without the scan, so its chunks are checked value by value."""
    from airflow_provider_contactsync.staging import decode, encode_rows

    any_driver_db.execute(
        "CREATE TABLE typed (id bigint, name text, ts timestamptz, naive timestamp, doc jsonb, flag boolean,"
        " ratio real, day date, amount numeric(10,2))",
        "INSERT INTO typed VALUES (1, 'a', '2024-03-01 12:00+02', '2024-03-01 12:00', '{\"a\": [1]}', true, 0.5,"
        " '2024-03-01', 12.50)",
    )
    native = ["id", "name", "ts", "naive", "doc", "flag", "ratio"]
    plain = any_driver_db.source(table="typed", fields=native)
    [chunk] = plain.read(ReadWindow(), chunk_size=10)
    assert plain.native_rows
    assert decode(encode_rows(chunk, native=plain.native_rows)) == chunk
    for column in ("day", "amount"):
        typed = any_driver_db.source(table="typed", fields=["id", column])
        [chunk] = typed.read(ReadWindow(), chunk_size=10)
        assert not typed.native_rows, column
        assert decode(encode_rows(chunk, native=typed.native_rows)) == chunk


# -- incremental reads -------------------------------------------------------------------------


def test_incremental_read_is_in_updated_key_order(any_driver_db: Database) -> None:
    create_customers(any_driver_db, 12, per_hour=4)
    any_driver_db.execute("UPDATE customers SET updated_at = updated_at - interval '1 day' WHERE id = 12")

    rows = read_all(any_driver_db.incremental(), chunk_size=5)

    assert ids(rows) == [12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_the_cursor_s_own_timestamp_is_read_again_whatever_the_key(any_driver_db: Database) -> None:
    create_customers(any_driver_db, 20, per_hour=10)  # ids 1-10 at T0, 11-20 at T0 + 1h

    rows = read_all(any_driver_db.incremental(), ReadWindow(Cursor(T0, 5)), chunk_size=3)

    assert ids(rows) == list(range(1, 21))  # the boundary T0 whole, keys below 5 included, in order
    assert [r["updated_at"] for r in rows[:10]] == [T0] * 10


def test_a_late_commit_at_the_cursor_s_timestamp_below_its_key_is_read_by_the_next_run(
    any_driver_db: Database,
) -> None:
    create_customers(any_driver_db, 20, per_hour=10)
    source = any_driver_db.incremental()
    first_run = read_all(source, ReadWindow(until=T0 + dt.timedelta(hours=2)), chunk_size=7)
    cursor = cursor_after(first_run[-1])
    assert cursor == Cursor(T0 + dt.timedelta(hours=1), 20)
    # Committed after the run, stamped with the cursor's second: a new row and an update, keys below 20.
    any_driver_db.execute(
        "INSERT INTO customers VALUES (0, 'late@example.com', %(t)s)",
        "UPDATE customers SET email = 'changed@example.com', updated_at = %(t)s WHERE id = 3",
        params={"t": cursor.value},
    )

    second_run = read_all(source, ReadWindow(cursor, T0 + dt.timedelta(hours=2)), chunk_size=7)

    assert ids(second_run) == [0, 3, *range(11, 21)]  # the late rows, then the boundary read again
    assert [r["email"] for r in second_run[:2]] == ["late@example.com", "changed@example.com"]
    assert source.skipped == {}


def test_until_bound_leaves_later_rows_for_the_next_run_and_counts_them(any_driver_db: Database) -> None:
    create_customers(any_driver_db, 10)  # one row per hour from T0
    source = any_driver_db.incremental()

    rows = read_all(source, ReadWindow(Cursor(T0, 1), T0 + dt.timedelta(hours=5)))

    assert ids(rows) == [1, 2, 3, 4, 5, 6]  # both bounds are inclusive: T0 is read again, T0 + 5h read
    assert source.skipped == {LAG_REASON: 4}


def test_skipped_counts_only_rows_inside_the_cursor_s_window(db: Database) -> None:
    create_customers(db, 10)
    source = db.incremental()

    read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=8), 9), T0 + dt.timedelta(hours=2)))

    assert source.skipped == {LAG_REASON: 2}  # ids 9 (the boundary) and 10 wait; ids 1-8 are behind the cursor


def test_null_updated_at_is_counted_as_skipped(db: Database) -> None:
    create_customers(db, 6)
    db.execute("UPDATE customers SET updated_at = NULL WHERE id IN (2, 5)")
    source = db.incremental()

    rows = read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))

    assert ids(rows) == [1, 3, 4, 6]
    assert source.skipped == {NULL_REASON: 2}


def test_skipped_is_reset_on_each_read(db: Database) -> None:
    create_customers(db, 3)
    db.execute("UPDATE customers SET updated_at = NULL WHERE id = 2")
    source = db.incremental()
    read_all(source)

    read_all(source)

    assert source.skipped == {NULL_REASON: 1}


def test_naive_timestamp_columns_compare_in_utc_whatever_the_server_time_zone(db: Database) -> None:
    create_customers(db, 6, updated="timestamp")
    dbname = db.query("SELECT current_database()")[0][0]
    db.execute(f"ALTER DATABASE \"{dbname}\" SET timezone TO 'America/New_York'")
    source = db.incremental()

    rows = read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=1), 2), T0 + dt.timedelta(hours=4)))

    assert ids(rows) == [2, 3, 4, 5]
    assert rows[0]["updated_at"] == T0 + dt.timedelta(hours=1)
    assert source.skipped == {LAG_REASON: 1}


def test_version_number_cursor_ignores_the_time_bound(db: Database) -> None:
    db.execute(
        "CREATE TABLE customers (id int, email text, version bigint)",
        "INSERT INTO customers SELECT i, 'c' || i || '@example.com', 100 + i FROM generate_series(1, 5) i",
    )
    source = db.source(fields=["id", "email", "version"], updated_field="version", key="id")

    rows = read_all(source, ReadWindow(Cursor(102, 2), T0))

    assert ids(rows) == [2, 3, 4, 5]  # version 102 read again
    assert source.skipped == {}


def test_text_keys_break_ties_in_code_point_order_like_the_cursor(db: Database) -> None:
    db.execute(
        "CREATE TABLE customers (id text, email text, updated_at timestamptz)",
        "INSERT INTO customers VALUES ('b', 'b@x.io', %(t)s), ('B', 'B@x.io', %(t)s), ('a', 'a@x.io', %(t)s)",
        params={"t": T0},
    )
    source = db.incremental()

    assert ids(read_all(source)) == ["B", "a", "b"]
    assert ids(read_all(source, ReadWindow(Cursor(T0, "a")))) == ["B", "a", "b"]  # the boundary, in the same order
    assert Cursor(T0, "B").is_before(T0, "a") and Cursor(T0, "a").is_before(T0, "b")  # core/cursor.py agrees


def test_text_updated_field_is_refused_with_a_hint(db: Database) -> None:
    db.execute("CREATE TABLE customers (id int, email text, updated_at text)")

    with pytest.raises(ConfigurationError, match="updated_field 'updated_at' must be a timestamp"):
        read_all(db.incremental())


class History:
    """The table the cursor property test (tests/cursor_history.py) commits to and reads."""

    key_field = "id"

    def __init__(self, db: Database) -> None:
        self.db = db

    def reset(self) -> None:
        self.db.execute(
            "DROP TABLE IF EXISTS customers",
            "CREATE TABLE customers (id int PRIMARY KEY, email text, updated_at timestamptz)",
        )

    def commit(self, rows: dict[int, tuple[str, dt.datetime]]) -> None:
        conn = PostgresHook(postgres_conn_id=self.db.conn_id).get_conn()
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO customers VALUES (%s, %s, %s) ON CONFLICT (id)"
                    " DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at",
                    [(key, email, at) for key, (email, at) in rows.items()],
                )
            conn.commit()
        finally:
            conn.close()

    def source(self) -> PostgresSource:
        return self.db.incremental()


@property_settings(max_examples=60)
@given(history=histories())
def test_property_no_commit_is_missed_at_the_cursor_boundary(db: Database, history: list[Step]) -> None:
    check_history(History(db), history)


# -- queries, identifiers and parameters -------------------------------------------------------


def test_query_source_is_wrapped_and_filtered(any_driver_db: Database) -> None:
    create_customers(any_driver_db, 10)
    source = any_driver_db.incremental(
        table=None,
        query="SELECT id, upper(email) AS email, updated_at FROM customers WHERE email LIKE 'c1%';\n",
    )

    rows = read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=1), 2)))

    assert ids(rows) == [10]
    assert rows[0]["email"] == "C10@EXAMPLE.COM"
    assert source.discover() == ["id", "email", "updated_at"]


def test_missing_column_is_a_configuration_error_naming_source_table_and_field(db: Database) -> None:
    create_customers(db, 3)
    source = db.source(fields=["id", "email", "phone"])

    with pytest.raises(ConfigurationError) as caught:
        read_all(source)

    message = str(caught.value)
    assert "'crm'" in message and "public.customers" in message and "'phone'" in message
    assert caught.value.key_path == "source.fields"


def test_missing_table_is_a_configuration_error(db: Database) -> None:
    with pytest.raises(ConfigurationError, match=r"'crm'.*public\.customers.*does not exist"):
        read_all(db.source())


def test_table_names_are_validated_by_the_model() -> None:
    for table in ['public."customers"', "customers; DROP TABLE x", "a.b.c.d", "1table"]:
        with pytest.raises(pydantic.ValidationError):
            SqlSource(type="postgres", name="crm", conn_id="pg", table=table, fields=["id"])


def test_names_needing_quotes_are_quoted(db: Database) -> None:
    db.execute(
        'CREATE SCHEMA "Sales"',
        'CREATE TABLE "Sales"."Customers" ("Id" int, "order" int, "user" text)',
        """INSERT INTO "Sales"."Customers" VALUES (1, 7, 'ann')""",
    )
    source = db.source(table="Sales.Customers", fields=["Id", "order", "user"])

    assert read_all(source) == [{"Id": 1, "order": 7, "user": "ann"}]
    assert "Sales.Customers" in source.list_tables()


def test_cursor_values_are_bound_parameters(db: Database) -> None:
    db.execute(
        "CREATE TABLE customers (id text, email text, updated_at timestamptz)",
        "INSERT INTO customers VALUES ('o''brien', 'ob@x.io', %(t)s), ('x''); DROP TABLE customers; --', 'x@x.io',"
        " %(t)s), ('p', 'p@x.io', %(u)s)",
        params={"t": T0, "u": T0 + dt.timedelta(hours=1)},
    )
    source = db.incremental()

    assert ids(read_all(source, ReadWindow(Cursor(T0, "x'); DROP TABLE customers; --")))) == [
        "o'brien",
        "x'); DROP TABLE customers; --",
        "p",
    ]
    assert ids(read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=1), "o'brien')) --")))) == ["p"]
    assert db.query("SELECT count(*) FROM customers") == [(3,)]


def test_three_part_table_names_are_refused(postgres_db: str) -> None:
    spec = SqlSource(type="postgres", name="crm", conn_id=postgres_db, table="db.public.customers", fields=["id"])

    with pytest.raises(ConfigurationError, match="schema.table"):
        PostgresSource(spec)


# -- constant memory ---------------------------------------------------------------------------


def test_large_table_streams_through_a_server_side_cursor(db: Database) -> None:
    create_customers(db, 200_000, per_hour=100)
    source = db.incremental()
    dbname = db.query("SELECT current_database()")[0][0]
    chunks = source.read(ReadWindow(), chunk_size=10_000)

    first = next(chunks)
    # While the first chunk is being handled, the reader's session has fetched just that chunk
    # from a named cursor: the rest of the table is still on the server.
    [(statement, state)] = db.query(
        "SELECT query, state FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'",
        (dbname,),
    )
    sizes = [len(first)] + [len(chunk) for chunk in chunks]

    assert statement.startswith("FETCH FORWARD 10000 FROM") and "contactsync_" in statement
    assert state == "idle in transaction"
    assert sizes == [10_000] * 20
    assert not db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'",
        (dbname,),
    )


def test_abandoned_read_closes_its_connection(db: Database) -> None:
    create_customers(db, 50)
    dbname = db.query("SELECT current_database()")[0][0]
    chunks = db.incremental().read(ReadWindow(), chunk_size=10)
    next(chunks)

    chunks.close()

    assert not db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'",
        (dbname,),
    )


# -- discovery and connection test -------------------------------------------------------------


def test_discover_lists_all_columns(db: Database) -> None:
    create_customers(db, 1)
    db.execute("ALTER TABLE customers ADD COLUMN phone text")

    assert db.source().discover() == ["id", "email", "updated_at", "phone"]


def test_list_tables_names_schema_and_table(db: Database) -> None:
    db.execute("CREATE TABLE customers (id int)", "CREATE SCHEMA crm", "CREATE VIEW crm.active AS SELECT 1 AS x")

    assert db.source().list_tables() == ["crm.active", "public.customers"]


def test_test_connection_reports_success_and_problems(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    create_customers(db, 1)

    ok, message = db.source().test_connection()
    assert ok and "public.customers" in message

    ok, message = db.source(fields=["id", "nope"]).test_connection()
    assert not ok and "'nope'" in message

    monkeypatch.setenv("AIRFLOW_CONN_PG_UNREACHABLE", '{"conn_type": "postgres", "host": "127.0.0.1", "port": 1}')
    ok, message = db.source(conn_id="pg_unreachable").test_connection()
    assert not ok and "pg_unreachable" in message


def test_open_source_builds_a_postgres_source(postgres_db: str) -> None:
    spec = SqlSource(type="postgres", name="crm", conn_id=postgres_db, table="customers", fields=["id"])

    assert isinstance(open_source(spec), PostgresSource)


# -- nested data -------------------------------------------------------------------------------


def test_dotted_fields_reach_into_jsonb_and_arrays_come_as_lists(any_driver_db: Database) -> None:
    any_driver_db.execute(
        "CREATE TABLE customers (id int, email text, address jsonb, tags text[], updated_at timestamptz)",
        'INSERT INTO customers VALUES (1, \'a@x.org\', \'{"city": "Lyon", "geo": {"zip": "69001"}}\','
        " ARRAY['news', 'vip'], '2024-03-01 12:00+00'), (2, 'b@x.org', '{}', NULL, '2024-03-01 12:00+00'),"
        " (3, 'c@x.org', NULL, '{}', '2024-03-01 13:00+00')",
    )
    fields = ["id", "address.city", "address.geo.zip", "tags", "updated_at"]
    rows = read_all(any_driver_db.incremental(fields=fields))
    assert [list(r) for r in rows] == [fields] * 3  # the spec's names, in order
    assert [(r["address.city"], r["address.geo.zip"], r["tags"]) for r in rows] == [
        ("Lyon", "69001", ["news", "vip"]),
        (None, None, None),  # a missing key: null
        (None, None, []),  # a null document: null
    ]


def test_a_dotted_field_needs_its_top_level_column(db: Database) -> None:
    create_customers(db, 1)
    with pytest.raises(ConfigurationError, match=r"has no column 'address.city'") as info:
        read_all(db.source(fields=["id", "address.city"]))
    assert info.value.key_path == "source.fields"


def test_a_nested_cursor_or_key_is_refused(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="must be a column, not a nested field") as info:
        db.source(fields=["id", "meta.updated"], updated_field="meta.updated", key="id")
    assert info.value.key_path == "source.updated_field"

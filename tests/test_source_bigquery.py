"""BigQuerySource against the bqemulator emulator (tests/servers/bigquery.py), and optionally real BigQuery.

Every case takes the ``warehouse`` fixture: a fresh dataset in the emulator, driven with the real
``google-cloud-bigquery`` client over HTTP. With ``CONTACTSYNC_TEST_BIGQUERY_PROJECT`` set (credentials
from Application Default Credentials), the same cases also run against real BigQuery, in a temporary
dataset of that project deleted afterwards; without it those variants skip.
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
from cursor_history import Step, check_history, histories, property_settings
from hypothesis import given
from servers.airflow_db import run_dag, task_states, xcom_value
from servers.bigquery import BigQueryEmulator

from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import SqlSource
from airflow_provider_contactsync.sources import ReadWindow, open_source
from airflow_provider_contactsync.sources.bigquery import BigQuerySource

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NOW = dt.datetime(2030, 1, 1, tzinfo=UTC)
NULL_REASON = "updated_at is null"
LAG_REASON = "updated after the safety lag bound"
REAL_PROJECT = os.environ.get("CONTACTSYNC_TEST_BIGQUERY_PROJECT")
EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


class Warehouse:
    """One dataset of the backend under test: SQL to set it up, and sources reading it."""

    def __init__(self, backend: str, client: Any, conn_id: str, dataset: str) -> None:
        self.backend = backend
        self.client = client
        self.conn_id = conn_id
        self.dataset = dataset

    @property
    def emulated(self) -> bool:
        return self.backend == "emulator"

    def sql(self, statement: str) -> list[dict[str, Any]]:
        """Run standard SQL (``{ds}`` is this dataset); return the rows as dicts."""
        from google.cloud.bigquery import QueryJobConfig

        job = self.client.query(statement.format(ds=f"`{self.dataset}`"), job_config=QueryJobConfig())
        return [dict(row.items()) for row in job.result()]

    def users(self, rows: list[tuple[Any, ...]]) -> None:
        """``users(id INT64, email STRING, updated_at TIMESTAMP)`` with rows (id, email, minutes after T0 or None)."""
        self.sql("CREATE TABLE {ds}.users (id INT64, email STRING, updated_at TIMESTAMP)")
        self.insert("users", rows)

    def insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        values = ", ".join(f"({i}, {_literal(email)}, {_ts(minutes)})" for i, email, minutes in rows)
        self.sql(f"INSERT INTO {{ds}}.{table} (id, email, updated_at) VALUES {values}")

    def source(self, **overrides: Any) -> BigQuerySource:
        spec: dict[str, Any] = {
            "type": "bigquery",
            "name": "users",
            "conn_id": self.conn_id,
            "table": f"{self.dataset}.users",
            "fields": ["id", "email", "updated_at"],
        }
        spec.update(overrides)
        return BigQuerySource(SqlSource.model_validate(spec))

    def incremental(self, **overrides: Any) -> BigQuerySource:
        return self.source(updated_field="updated_at", key="id", **overrides)


def _literal(value: str | None) -> str:
    return "NULL" if value is None else json.dumps(value)  # a JSON string is a valid BigQuery string literal


def _ts(minutes: float | None) -> str:
    if minutes is None:
        return "NULL"
    return f"TIMESTAMP '{(T0 + dt.timedelta(minutes=minutes)).isoformat()}'"


@pytest.fixture
def emulator(bigquery_emulator: BigQueryEmulator) -> BigQueryEmulator:
    return bigquery_emulator


def rows_of(source: BigQuerySource, window: ReadWindow | None = None, chunk_size: int = 1000) -> list[Any]:
    return [row for chunk in source.read(window or ReadWindow(), chunk_size=chunk_size) for row in chunk]


def cursor_of(row: dict[str, Any], updated: str = "updated_at", key: str = "id") -> Cursor:
    return Cursor(normalize_value(row[updated]), row[key])


@pytest.fixture(params=["emulator", "bigquery"])
def warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    dataset = f"contactsync_test_{uuid.uuid4().hex[:12]}"
    conn_id = f"bq_{dataset}"
    if request.param == "emulator":
        emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
        client = emulator.client()
        connection = emulator.airflow_connection()
    else:
        if not REAL_PROJECT:
            pytest.skip("real BigQuery: set CONTACTSYNC_TEST_BIGQUERY_PROJECT (credentials from ADC)")
        from google.cloud import bigquery

        client = bigquery.Client(project=REAL_PROJECT)
        connection = json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": REAL_PROJECT}})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
    client.create_dataset(dataset)
    try:
        yield Warehouse(request.param, client, conn_id, dataset)
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


# -- reading ----------------------------------------------------------------------------------


def test_full_sync_reads_every_row_with_exactly_the_fields(warehouse: Warehouse) -> None:
    warehouse.users([(1, "ada@example.com", 0), (2, "alan@example.com", 5), (3, None, None)])
    source = open_source(warehouse.source().spec)
    assert isinstance(source, BigQuerySource)
    rows = sorted(rows_of(source), key=lambda r: r["id"])
    assert rows == [
        {"id": 1, "email": "ada@example.com", "updated_at": T0},
        {"id": 2, "email": "alan@example.com", "updated_at": T0 + dt.timedelta(minutes=5)},
        {"id": 3, "email": None, "updated_at": None},
    ]
    assert [list(r) for r in rows] == [["id", "email", "updated_at"]] * 3
    assert source.skipped == {}


def test_ties_on_the_cursor_across_chunks_and_a_late_commit_below_the_cursor_s_key(warehouse: Warehouse) -> None:
    # Six rows share T0: they straddle chunks of 4 and the first run's end.
    warehouse.users([(i, f"u{i}@example.com", 0) for i in range(1, 7)] + [(7, "late@example.com", 10)])
    source = warehouse.incremental()
    first = list(source.read(ReadWindow(until=T0 + dt.timedelta(minutes=5)), chunk_size=4))
    assert [[r["id"] for r in chunk] for chunk in first] == [[1, 2, 3, 4], [5, 6]]
    cursor = cursor_of(first[-1][-1])
    assert cursor == Cursor(T0, 6)
    # Rows committed later with the cursor's own timestamp, keys before and after the cursor's key.
    warehouse.insert("users", [(8, "tie-after@example.com", 0), (0, "tie-before@example.com", 0)])
    second = rows_of(source, ReadWindow(since=cursor, until=NOW), chunk_size=4)
    # The cursor's timestamp is read again whole: the late row 0, below the cursor's key, is not lost.
    assert [r["id"] for r in second] == [0, 1, 2, 3, 4, 5, 6, 8, 7]
    assert rows_of(source, ReadWindow(since=Cursor(T0, 3), until=NOW), chunk_size=2) == second


def test_string_keys_break_ties_in_code_point_order_like_the_cursor(warehouse: Warehouse) -> None:
    keys = ["b", "B", "é", "z", "a\u0301", "\uff5e", "\U0001f600", "Z", "a"]
    warehouse.sql("CREATE TABLE {ds}.users (id STRING, email STRING, updated_at TIMESTAMP)")
    values = ", ".join(f"({_literal(k)}, NULL, {_ts(0)})" for k in keys)
    warehouse.sql(f"INSERT INTO {{ds}}.users VALUES {values}")
    source = warehouse.incremental()
    assert [r["id"] for r in rows_of(source, ReadWindow(until=NOW), chunk_size=2)] == sorted(keys)
    after = rows_of(source, ReadWindow(since=Cursor(T0, "a\u0301"), until=NOW), chunk_size=4)
    assert [r["id"] for r in after] == sorted(keys)  # the boundary read again, in the same order


def test_timestamps_compare_as_instants_and_datetimes_are_taken_as_utc(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE TABLE {ds}.events (id INT64, ts TIMESTAMP, local DATETIME)")
    warehouse.sql(
        "INSERT INTO {ds}.events VALUES "
        "(1, TIMESTAMP '2024-03-01 12:00:00+02:00', DATETIME '2024-03-01 10:00:00'),"  # 10:00 UTC
        "(2, TIMESTAMP '2024-03-01 10:30:00-00:00', DATETIME '2024-03-01 10:30:00'),"
        "(3, TIMESTAMP '2024-03-01 06:00:00-05:00', DATETIME '2024-03-01 11:00:00')"  # 11:00 UTC
    )
    plus2 = dt.timezone(dt.timedelta(hours=2))
    since = Cursor(dt.datetime(2024, 3, 1, 12, 15, tzinfo=plus2), 0)  # 10:15 UTC
    by_ts = warehouse.source(
        table=f"{warehouse.dataset}.events", fields=["id", "ts", "local"], updated_field="ts", key="id"
    )
    rows = rows_of(by_ts, ReadWindow(since=since, until=NOW))
    assert [(r["id"], r["ts"]) for r in rows] == [
        (2, dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC)),
        (3, dt.datetime(2024, 3, 1, 11, 0, tzinfo=UTC)),
    ]
    assert rows[0]["local"] == dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC)  # DATETIME: aware, taken as UTC
    by_local = warehouse.source(
        table=f"{warehouse.dataset}.events", fields=["id", "local"], updated_field="local", key="id"
    )
    until = dt.datetime(2024, 3, 1, 6, 45, tzinfo=dt.timezone(dt.timedelta(hours=-4)))  # 10:45 UTC
    assert [r["id"] for r in rows_of(by_local, ReadWindow(since=since, until=until))] == [2]
    assert by_local.skipped == {LAG_REASON: 1}


def test_a_query_source_is_wrapped_and_filtered_incrementally(warehouse: Warehouse) -> None:
    warehouse.users([(1, "Ada@Example.com", 0), (2, "skip@example.com", 5), (3, "Grace@Example.com", 10)])
    query = "SELECT id, LOWER(email) AS email, updated_at FROM {ds}.users WHERE id <> 2;".format(
        ds=f"`{warehouse.dataset}`"
    )
    source = warehouse.incremental(table=None, query=query)
    assert rows_of(source, ReadWindow(since=Cursor(T0, 1), until=NOW)) == [
        {"id": 1, "email": "ada@example.com", "updated_at": T0},
        {"id": 3, "email": "grace@example.com", "updated_at": T0 + dt.timedelta(minutes=10)},
    ]


def test_struct_fields_are_reached_with_dots_and_a_null_struct_gives_nulls(warehouse: Warehouse) -> None:
    warehouse.sql(
        "CREATE TABLE {ds}.people (id INT64, address STRUCT<city STRING, geo STRUCT<lat FLOAT64, lng FLOAT64>>, "
        "tags ARRAY<STRING>, phones ARRAY<STRUCT<kind STRING, number STRING>>)"
    )
    warehouse.sql(
        "INSERT INTO {ds}.people VALUES "
        "(1, STRUCT('Paris' AS city, STRUCT(48.85 AS lat, 2.35 AS lng) AS geo), ['vip', 'fr'], "
        "[STRUCT('home' AS kind, '+331' AS number), STRUCT('work' AS kind, '+332' AS number)]),"
        "(2, NULL, [], []),"
        "(3, STRUCT(CAST(NULL AS STRING) AS city, CAST(NULL AS STRUCT<lat FLOAT64, lng FLOAT64>) AS geo), NULL, NULL)"
    )
    fields = ["id", "address.city", "address.geo.lat", "address", "tags", "phones"]
    source = warehouse.source(table=f"{warehouse.dataset}.people", fields=fields)
    rows = sorted(rows_of(source), key=lambda r: r["id"])
    assert rows[0] == {
        "id": 1,
        "address.city": "Paris",
        "address.geo.lat": 48.85,
        "address": {"city": "Paris", "geo": {"lat": 48.85, "lng": 2.35}},
        "tags": ["vip", "fr"],
        "phones": [{"kind": "home", "number": "+331"}, {"kind": "work", "number": "+332"}],
    }
    assert rows[1] == {
        "id": 2,
        "address.city": None,
        "address.geo.lat": None,
        "address": None,
        "tags": [],
        "phones": [],
    }
    assert rows[2]["address"] == {"city": None, "geo": None} and rows[2]["address.geo.lat"] is None
    assert rows[2]["tags"] == [] and rows[2]["phones"] == []  # BigQuery has no NULL arrays
    assert source.discover() == [
        "id",
        "address",
        "address.city",
        "address.geo",
        "address.geo.lat",
        "address.geo.lng",
        "tags",
        "phones",
    ]


def test_each_type_reads_as_its_native_value(warehouse: Warehouse, emulator: BigQueryEmulator) -> None:
    columns = {
        "id": ("INT64", "1"),
        "n": ("NUMERIC", "NUMERIC '12.50'"),
        "f": ("FLOAT64", "1.25"),
        "b": ("BOOL", "TRUE"),
        "s": ("STRING", "'Zoë'"),
        "bin": ("BYTES", "b'\\x00\\xffhi'"),
        "d": ("DATE", "DATE '1990-09-25'"),
        "ts": ("TIMESTAMP", "TIMESTAMP '2024-03-01 12:00:00.123456+01:00'"),
        "dtm": ("DATETIME", "DATETIME '2024-03-01 12:00:00'"),
        "t": ("TIME", "TIME '08:30:00'"),
        "j": ("JSON", 'JSON \'{{"plan": "pro", "seats": [1, 2]}}\''),
        "iv": ("INTERVAL", "INTERVAL '1-2 3 4:5:6' YEAR TO SECOND"),
    }
    if not warehouse.emulated:
        columns["bn"] = ("BIGNUMERIC", "BIGNUMERIC '123456789012345678901234567890.5'")  # not in the emulator
    if not warehouse.emulated or emulator.has_geography:
        columns["g"] = ("GEOGRAPHY", "ST_GEOGPOINT(2.35, 48.85)")
    ddl = ", ".join(f"{name} {kind}" for name, (kind, _) in columns.items())
    warehouse.sql(f"CREATE TABLE {{ds}}.types ({ddl})")
    warehouse.sql(f"INSERT INTO {{ds}}.types VALUES ({', '.join(v for _, v in columns.values())})")
    source = warehouse.source(table=f"{warehouse.dataset}.types", fields=list(columns))
    (row,) = rows_of(source)
    expected = {
        "id": 1,
        "n": Decimal("12.5"),
        "f": 1.25,
        "b": True,
        "s": "Zoë",
        "bin": b"\x00\xffhi",
        "d": dt.date(1990, 9, 25),
        "ts": dt.datetime(2024, 3, 1, 11, 0, 0, 123456, tzinfo=UTC),
        "dtm": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        "t": "08:30:00",
        "j": {"plan": "pro", "seats": [1, 2]},
        "iv": "1-2 3 4:5:6",
        "bn": Decimal("123456789012345678901234567890.5"),
        "g": "POINT(2.35 48.85)",
    }
    assert row == {name: expected[name] for name in columns}
    assert type(row["n"]) is Decimal and type(row["id"]) is int and row["ts"].tzinfo == UTC


# -- bad inputs -------------------------------------------------------------------------------


def test_a_missing_table_is_a_configuration_error_naming_it(warehouse: Warehouse) -> None:
    source = warehouse.source(table=f"{warehouse.dataset}.nope")
    with pytest.raises(ConfigurationError, match=rf"{warehouse.dataset}\.nope") as caught:
        rows_of(source)
    assert caught.value.key_path == "source.table"
    ok, message = source.test_connection()
    assert not ok and "nope" in message


def test_a_missing_field_is_refused_before_reading(warehouse: Warehouse) -> None:
    warehouse.users([(1, "a@example.com", 0)])
    with pytest.raises(ConfigurationError, match=r"'phone'.*its columns are \['id', 'email', 'updated_at'\]") as caught:
        rows_of(warehouse.source(fields=["id", "email", "phone", "updated_at"]))
    assert caught.value.key_path == "source.fields"
    with pytest.raises(ConfigurationError, match="'address.city'"):
        rows_of(warehouse.source(fields=["id", "address.city"]))


def test_a_text_cursor_is_refused(warehouse: Warehouse) -> None:
    warehouse.users([(1, "a@example.com", 0)])
    with pytest.raises(
        ConfigurationError, match="must be a TIMESTAMP, DATETIME, DATE or number column, not STRING"
    ) as caught:
        rows_of(warehouse.source(updated_field="email", key="id"), ReadWindow(until=NOW))
    assert caught.value.key_path == "source.updated_field"


def test_a_query_without_the_key_is_refused(warehouse: Warehouse) -> None:
    warehouse.users([(1, "a@example.com", 0)])
    query = f"SELECT email, updated_at FROM `{warehouse.dataset}`.users"
    with pytest.raises(ConfigurationError, match="no column 'id'") as caught:
        rows_of(warehouse.incremental(table=None, query=query), ReadWindow(until=NOW))
    assert caught.value.key_path == "source.key"


def test_a_value_that_cannot_be_converted_rejects_only_its_row(warehouse: Warehouse) -> None:
    if not warehouse.emulated:
        pytest.skip("real BigQuery never returns non-strict JSON (PARSE_JSON refuses NaN)")
    warehouse.sql("CREATE TABLE {ds}.raw (id INT64, doc STRING)")
    warehouse.sql("INSERT INTO {ds}.raw VALUES (1, '{{\"a\": 1}}'), (2, 'NaN'), (3, '[true]')")
    query = f"SELECT id, PARSE_JSON(doc) AS doc FROM `{warehouse.dataset}`.raw ORDER BY id"
    rows = rows_of(warehouse.source(table=None, query=query, fields=["id", "doc"], key="id"), chunk_size=2)
    assert rows[0] == {"id": 1, "doc": {"a": 1}}
    assert isinstance(rows[1], RowError)
    assert (rows[1].field, rows[1].value, rows[1].row) == ("doc", "NaN", 2)
    assert "NaN is not JSON" in rows[1].reason
    assert rows[2] == {"id": 3, "doc": [True]}


# -- windows and skipped rows -----------------------------------------------------------------


def test_null_cursors_and_rows_after_the_bound_are_counted(warehouse: Warehouse) -> None:
    warehouse.users(
        [(1, "a@x.com", 0), (2, "b@x.com", None), (3, "c@x.com", 30), (4, "d@x.com", None), (5, "e@x.com", 5)]
    )
    source = warehouse.incremental()
    rows = rows_of(source, ReadWindow(until=T0 + dt.timedelta(minutes=10)))
    assert [r["id"] for r in rows] == [1, 5]
    assert source.skipped == {NULL_REASON: 2, LAG_REASON: 1}
    rows = rows_of(source, ReadWindow(since=Cursor(T0 + dt.timedelta(minutes=5), 5), until=NOW))
    assert [r["id"] for r in rows] == [5, 3]  # the cursor's row read again
    assert source.skipped == {NULL_REASON: 2}  # counts are per read, not cumulative


def test_the_safety_lag_bound_is_inclusive_and_only_applies_to_time_cursors(warehouse: Warehouse) -> None:
    warehouse.users([(1, "a@x.com", 0), (2, "b@x.com", 10), (3, "c@x.com", 11)])
    source = warehouse.incremental()
    assert [r["id"] for r in rows_of(source, ReadWindow(until=T0 + dt.timedelta(minutes=10)))] == [1, 2]
    assert source.skipped == {LAG_REASON: 1}
    version = warehouse.source(updated_field="id", key="id")
    assert [r["id"] for r in rows_of(version, ReadWindow(since=Cursor(1, 1), until=T0))] == [1, 2, 3]
    assert version.skipped == {}
    warehouse.sql("CREATE TABLE {ds}.days (id INT64, day DATE)")
    warehouse.sql("INSERT INTO {ds}.days VALUES (1, DATE '2024-02-29'), (2, DATE '2024-03-01'), (3, DATE '2024-03-02')")
    days = warehouse.source(table=f"{warehouse.dataset}.days", fields=["id", "day"], updated_field="day", key="id")
    rows = rows_of(days, ReadWindow(since=Cursor(dt.date(2024, 2, 29), 1), until=T0))
    assert rows == [{"id": 1, "day": dt.date(2024, 2, 29)}, {"id": 2, "day": dt.date(2024, 3, 1)}]  # its last day again
    assert days.skipped == {LAG_REASON: 1}


def test_chunks_hold_at_most_chunk_size_rows_in_order(warehouse: Warehouse) -> None:
    warehouse.users([(i, f"u{i}@x.com", i) for i in range(1, 26)])
    chunks = list(warehouse.incremental().read(ReadWindow(until=NOW), chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 4, 4, 4, 4, 1]
    assert [r["id"] for c in chunks for r in c] == list(range(1, 26))
    with pytest.raises(ValueError, match="chunk_size"):
        list(warehouse.source().read(ReadWindow(), chunk_size=0))


class History:
    """The table the cursor property test (tests/cursor_history.py) commits to and reads."""

    key_field = "id"

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def reset(self) -> None:
        self.warehouse.sql("DROP TABLE IF EXISTS {ds}.users")
        self.warehouse.sql("CREATE TABLE {ds}.users (id INT64, email STRING, updated_at TIMESTAMP)")

    def commit(self, rows: dict[int, tuple[str, dt.datetime]]) -> None:
        self.warehouse.sql(f"DELETE FROM {{ds}}.users WHERE id IN ({', '.join(str(k) for k in rows)})")
        values = ", ".join(f"({k}, {_literal(email)}, TIMESTAMP '{at.isoformat()}')" for k, (email, at) in rows.items())
        self.warehouse.sql(f"INSERT INTO {{ds}}.users (id, email, updated_at) VALUES {values}")

    def source(self) -> BigQuerySource:
        return self.warehouse.incremental()


@property_settings(max_examples=25)
@given(history=histories())
def test_property_no_commit_is_missed_at_the_cursor_boundary(warehouse: Warehouse, history: list[Step]) -> None:
    check_history(History(warehouse), history)


# -- discovery and connections ----------------------------------------------------------------


def test_discover_list_tables_and_test_connection(warehouse: Warehouse) -> None:
    warehouse.users([(1, "a@x.com", 0)])
    warehouse.sql("CREATE TABLE {ds}.orders (id INT64, customer STRUCT<email STRING>)")
    source = warehouse.incremental()
    assert source.discover() == ["id", "email", "updated_at"]
    tables = source.list_tables()
    assert {f"{warehouse.dataset}.users", f"{warehouse.dataset}.orders"} <= set(tables)
    ok, message = source.test_connection()
    assert ok, message
    assert "has the 3 fields" in message
    ok, message = warehouse.source(fields=["id", "nope"]).test_connection()
    assert not ok and "nope" in message


def test_table_names_are_checked_before_anything_runs(warehouse: Warehouse) -> None:
    for table, problem in [("users", "write dataset.table"), ("Bad_Project.ds.users", "not a project id")]:
        with pytest.raises(ConfigurationError, match=problem) as caught:
            warehouse.source(table=table)
        assert caught.value.key_path == "source.table"
    project = warehouse.client.project
    warehouse.users([(1, "a@x.com", 0)])
    assert rows_of(warehouse.source(table=f"{project}.{warehouse.dataset}.users"))[0]["id"] == 1


def test_a_connection_without_api_endpoint_uses_the_hooks_own_client(
    emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``api_endpoint`` extra: the client is ``BigQueryHook.get_client``'s (here routed by the
    client library's own ``BIGQUERY_EMULATOR_HOST``)."""
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    extra = {"project": emulator.project_id, "is_anonymous": True}
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_BQ", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.url)
    calls: list[dict[str, Any]] = []
    original = BigQueryHook.get_client

    def recording(self: BigQueryHook, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(BigQueryHook, "get_client", recording)
    spec = SqlSource.model_validate(
        {"type": "bigquery", "name": "q", "conn_id": "plain_bq", "query": "SELECT 1 AS id", "fields": ["id"]}
    )
    source = BigQuerySource(spec)
    assert rows_of(source) == [{"id": 1}]
    assert calls == [{"project_id": emulator.project_id, "location": None}]


# -- a real DAG run ---------------------------------------------------------------------------


def test_the_example_definition_runs_as_a_dag_then_sends_nothing_new(
    tmp_path: Path,
    emulator: BigQueryEmulator,
    brevo_sandbox: Any,
    airflow_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    client = emulator.client()
    client.create_dataset("analytics", exists_ok=True)
    try:
        client.query(
            "CREATE TABLE analytics.users (user_id INT64, email STRING, first_name STRING, last_name STRING, "
            "address STRUCT<city STRING, country STRING>, tags ARRAY<STRING>, signup_date DATE, updated_at TIMESTAMP)"
        ).result()
        client.query(
            "INSERT INTO analytics.users VALUES "
            "(1, ' Ada@Example.com ', 'Ada', 'Lovelace', STRUCT('London' AS city, 'GB' AS country), "
            "['vip', 'math'], "
            "DATE '2020-01-02', TIMESTAMP '2026-11-20 08:00:00+00'),"
            "(2, 'alan@example.org', 'Alan', 'Turing', NULL, [], DATE '2021-05-06', "
            "TIMESTAMP '2026-11-20 08:00:00+00'),"
            "(3, 'not-an-email', 'Linus', 'Torvalds', STRUCT('Helsinki' AS city, 'FI' AS country), ['kernel'], NULL, "
            "TIMESTAMP '2026-11-20 09:00:00+01:00')"
        ).result()
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_BQ", emulator.airflow_connection())
        brevo = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
        brevo["extra"] = json.dumps({"poll_interval": 0.01, "max_retries": 0})
        monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(brevo))
        for name, kind in {"CITY": "text", "COUNTRY": "text", "TAGS": "text", "SIGNUP_DATE": "date"}.items():
            brevo_sandbox.create_attribute(name, kind)
        definition = load_definition(EXAMPLES / "definitions" / "events_users_bigquery.yaml")
        definition = definition.model_copy(update={"integration": f"bq{uuid.uuid4().hex[:8]}"})
        staging = f"file://{tmp_path}/staging"

        def run() -> Any:
            return run_dag(build_dag(definition, staging=staging, default_args={"retries": 0}))

        dag_run = run()
        assert set(task_states(dag_run).values()) == {"success"}
        summary = xcom_value(dag_run, "load")
        assert (summary["rows read"], summary["rejected"], summary["created"]) == (3, 1, 2)
        assert summary["cursor"]["value"] == "2026-11-20T08:00:00+00:00" and summary["cursor"]["key"] == 3
        contacts = {c.get("email"): c["attributes"] for c in brevo_sandbox.contacts()}
        ada = contacts["ada@example.com"]
        assert (ada["CITY"], ada["COUNTRY"], ada["TAGS"], ada["SIGNUP_DATE"]) == (
            "London",
            "GB",
            "vip, math",
            "2020-01-02",
        )
        assert "CITY" not in contacts["alan@example.org"]
        writes = [r for r in brevo_sandbox.requests() if r["method"] != "GET"]
        again = xcom_value(run(), "load")
        # The three rows share the cursor's timestamp: read again, unchanged, so left out and nothing is sent.
        assert (again["rows read"], again["skipped at source"], again["created"]) == (0, 3, 0)
        assert [r for r in brevo_sandbox.requests() if r["method"] != "GET"] == writes
    finally:
        client.delete_dataset("analytics", delete_contents=True, not_found_ok=True)

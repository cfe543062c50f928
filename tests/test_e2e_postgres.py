"""End to end through Airflow: a real PostgreSQL table synced into the sandbox by DAG runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers.airflow_db import run_dag, task_states, xcom_value

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"
T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
ROWS = [
    # id, email, first, last, phone, country, birthday, loyalty_points, minutes after T0
    (1, " Ada.Lovelace@Example.com ", "Ada", "Lovelace", "06 12 34 56 78", "FR", dt.date(1990, 9, 25), "120", 0),
    (2, "alan.turing@example.org", "Alan", "Turing", "+44 20 7946 0958", "GB", dt.date(1912, 6, 23), "80", 5),
    (3, "grace@example.com", "Grace", "Hopper", "0471 23 45 67", "BE", dt.date(1906, 12, 9), None, 10),
    (4, "not-an-email", "Linus", "Torvalds", None, "FI", dt.date(1969, 12, 28), "15", 15),
    (5, "margaret@example.com", "Margaret", "Hamilton", "12", "US", dt.date(1936, 8, 17), "300", 20),
    (6, "katherine@example.com", "Katherine", "Johnson", "+1 202 555 0143", "US", dt.date(1918, 8, 26), "lots", 25),
    (7, None, "Dennis", "Ritchie", None, "US", dt.date(1941, 9, 9), "5", 30),
    (8, "barbara@example.ch", "Barbara", "Liskov", "044 668 18 00", "CH", dt.date(1939, 11, 7), "42", 35),
    (9, "edsger@example.nl", "Edsger", "Dijkstra", "+31 20 123 4567", "NL", dt.date(1930, 5, 11), "7", 40),
    (10, "frances@example.com", "Frances", "Allen", None, "US", dt.date(1932, 8, 4), "64", 40),  # tie with 9
]


class Crm:
    """The example PostgreSQL definition over a seeded table in a fresh database."""

    def __init__(self, dsn: str, sandbox: BrevoSandbox, staging: str) -> None:
        self.dsn = dsn
        self.sandbox = sandbox
        self.staging = staging
        definition = load_definition(EXAMPLES / "definitions" / "crm_customers_postgres.yaml")
        self.definition = definition.model_copy(update={"integration": f"pg{uuid.uuid4().hex[:8]}"})

    def sql(self, statement: str, params: Any = None) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement, params)

    def insert(self, *rows: tuple[Any, ...]) -> None:
        for *values, minutes in rows:
            self.sql(
                "INSERT INTO public.customers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*values, T0 + dt.timedelta(minutes=minutes)),
            )

    def run(self, **kwargs: Any) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        default_args = {"retries": 0, **kwargs.pop("default_args", {})}
        return run_dag(build_dag(self.definition, staging=self.staging, default_args=default_args), **kwargs)

    def writes(self) -> int:
        return sum(1 for r in self.sandbox.requests() if r["method"] != "GET")


def _dsn(conn_json: str) -> str:
    conn = json.loads(conn_json)
    return (
        f"host={conn['host']} port={conn['port']} dbname={conn['schema']} "
        f"user={conn['login']} password={conn.get('password') or ''}"
    )


@pytest.fixture
def crm(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, postgres_db: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> Crm:
    pg_conn = os.environ[f"AIRFLOW_CONN_{postgres_db.upper()}"]
    monkeypatch.setenv("AIRFLOW_CONN_CRM_PG", pg_conn)
    brevo = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    brevo["extra"] = json.dumps({"poll_interval": 0.01, "max_retries": 0})
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(brevo))
    for name, kind in {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}.items():
        brevo_sandbox.create_attribute(name, kind)
    crm = Crm(_dsn(pg_conn), brevo_sandbox, f"file://{tmp_path}/staging")
    crm.sql(
        "CREATE TABLE public.customers (id int PRIMARY KEY, email text, first_name text, last_name text, "
        "phone text, country text, birthday date, loyalty_points text, updated_at timestamptz)"
    )
    crm.insert(*ROWS)
    return crm


def test_first_full_sync(crm: Crm) -> None:
    dag_run = crm.run()
    assert set(task_states(dag_run).values()) == {"success"}
    summary = xcom_value(dag_run, "load")
    assert (summary["rows read"], summary["rejected"], summary["created"]) == (10, 3, 7)
    assert summary["cursor"]["value"] == "2026-11-20T08:40:00+00:00" and summary["cursor"]["key"] == 10
    contacts = {c.get("email"): c["attributes"] for c in crm.sandbox.contacts()}
    assert contacts["ada.lovelace@example.com"]["BIRTHDAY"] == "1990-09-25"
    assert contacts["ada.lovelace@example.com"]["LOYALTY_POINTS"] == 120


def test_incremental_runs_with_ties_updates_and_a_no_op(crm: Crm) -> None:
    crm.run()
    crm.insert((11, "hedy@example.com", "Hedy", "Lamarr", None, "AT", None, "9", 40))  # same instant as the cursor
    crm.sql(
        "UPDATE public.customers SET first_name = 'Alan M.', updated_at = %s WHERE id = 2", (T0 + dt.timedelta(days=1),)
    )
    summary = xcom_value(crm.run(), "load")
    assert summary["rows read"] == 2  # 11 and 2; 9 and 10, at the cursor's instant, read again but unchanged
    assert summary["skipped at source"] == 2
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (1, 1, 0)
    writes = crm.writes()
    again = xcom_value(crm.run(), "load")
    assert (again["rows read"], again["skipped at source"]) == (0, 1)  # row 2, the cursor's instant, unchanged
    assert crm.writes() == writes  # nothing new: not a single write call


def test_a_late_commit_at_the_cursors_instant_is_read_and_loaded(crm: Crm) -> None:
    first = xcom_value(crm.run(), "load")
    assert first["cursor"]["key"] == 10
    # row 9 changes in a transaction that commits late, stamped with the cursor's own instant (key 9 < 10)
    crm.sql("UPDATE public.customers SET first_name = 'Edsger W.' WHERE id = 9")
    summary = xcom_value(crm.run(), "load")
    assert (summary["rows read"], summary["updated"], summary["skipped at source"]) == (1, 1, 1)  # 10 unchanged
    names = {c.get("email"): c["attributes"]["FIRSTNAME"] for c in crm.sandbox.contacts()}
    assert names["edsger@example.nl"] == "Edsger W."


def test_retry_after_a_load_failure_injected_by_the_sandbox(crm: Crm) -> None:
    crm.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=503, times=1)
    dag_run = crm.run(default_args={"retries": 1, "retry_delay": dt.timedelta(0)})
    assert task_states(dag_run)["load"] == "success"
    statuses = [r["status"] for r in crm.sandbox.requests("POST", "/v3/contacts/import")]
    assert statuses == [503, 202]
    assert len(crm.sandbox.contacts()) == 7


def test_an_older_run_never_rewinds_the_cursor(crm: Crm) -> None:
    first = xcom_value(crm.run(), "load")
    writes = crm.writes()
    backfill = crm.run(logical_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    summary = xcom_value(backfill, "load")
    assert summary["rows read"] == 0  # 9 and 10, at the cursor's instant, read again: unchanged, left out
    assert summary["cursor"] == first["cursor"]
    assert crm.writes() == writes


def test_every_example_dag_runs(crm: Crm, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.dag_factory import load_dags

    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEMO", os.environ["AIRFLOW_CONN_BREVO_DEFAULT"])
    dags = load_dags(EXAMPLES / "definitions", staging=crm.staging, default_args={"retries": 0})
    elsewhere = {
        "contactsync__partners__drop": "tests/test_file_pickup.py (a real sshd)",
        "contactsync__app__users": "tests/test_source_mongo.py (mongomock)",
        "contactsync__warehouse__users": "tests/test_source_bigquery.py (the BigQuery emulator)",
        "contactsync__shop__customers": "tests/test_source_snowflake.py (fakesnow)",
        "contactsync__salesforce__contacts": "tests/test_source_salesforce.py (the Salesforce sandbox)",
        "contactsync_export__newsletter__unsubscribes": "tests/test_e2e_exports.py (a real sshd, PGP decrypted)",
        **dict.fromkeys(
            (
                "contactsync__shopify__customers",
                "contactsync__woocommerce__customers",
                "contactsync__webshop__customers",
            ),
            "tests/test_e2e_events.py (a real Redis and PostgreSQL as queues, the sample webhooks through the intake)",
        ),
    }
    assert set(dags) == {"contactsync__crm__customers", "contactsync__demo__customers", *elsewhere}
    for dag_id in elsewhere:  # each runs against its own server or emulator in the test named above
        dags.pop(dag_id)
    for dag_id, dag in sorted(dags.items()):
        dag_run = run_dag(dag)
        assert set(task_states(dag_run).values()) == {"success"}, dag_id
        summary = xcom_value(dag_run, "load")
        # Both examples load the same seven people into one sandbox: the second finds them there.
        assert (summary["created"] + summary["updated"], summary["refused"]) == (7, 0), dag_id

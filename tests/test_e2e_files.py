"""End to end through Airflow: the example file source synced into the sandbox by real DAG runs."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.airflow_db import run_dag, task_states, xcom_value

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


class Demo:
    """The example definition on a private copy of its data, pointed at a fresh sandbox."""

    def __init__(self, root: Path, sandbox: BrevoSandbox) -> None:
        self.root = root
        self.sandbox = sandbox
        shutil.copytree(EXAMPLES / "definitions", root / "definitions")
        shutil.copytree(EXAMPLES / "data", root / "data")
        self.csv = root / "data" / "customers.csv"
        self.integration = f"e2e{uuid.uuid4().hex[:8]}"  # a fresh cursor and digest store per test
        path = root / "definitions" / "demo_customers.yaml"
        path.write_text(path.read_text().replace("integration: demo", f"integration: {self.integration}"))
        self.definition = load_definition(path)

    def dag(self, **default_args: Any) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        args = {"retries": 0, **default_args}
        return build_dag(self.definition, staging=f"file://{self.root}/staging", default_args=args)

    def run(self, **kwargs: Any) -> Any:
        return run_dag(self.dag(), **kwargs)

    def append(self, *rows: str) -> None:
        with self.csv.open("a") as stream:
            for row in rows:
                stream.write(row + "\n")

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.requests() if r["method"] != "GET"]


@pytest.fixture
def demo(tmp_path: Path, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str) -> Demo:
    for name, kind in {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}.items():
        brevo_sandbox.create_attribute(name, kind)
    conn = {
        "conn_type": "brevo",
        "host": brevo_sandbox.url,
        "password": brevo_sandbox.api_key,
        "extra": json.dumps({"poll_interval": 0.01}),
    }
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEMO", json.dumps(conn))
    return Demo(tmp_path, brevo_sandbox)


def test_first_full_sync_loads_good_rows_and_reports_bad_ones(demo: Demo) -> None:
    dag_run = demo.run()
    assert task_states(dag_run) == {t: "success" for t in ("extract", "transform", "map", "load")}
    summary = xcom_value(dag_run, "load")
    assert summary["rows read"] == 10
    assert summary["rejected"] == 3
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (7, 0, 0)
    assert summary["cursor"]["value"] == "2026-11-20T08:45:00+00:00" and summary["cursor"]["key"] == "10"
    emails = {c.get("email") for c in demo.sandbox.contacts()}
    assert "ada.lovelace@example.com" in emails and "not-an-email" not in emails
    assert len(demo.sandbox.contacts()) == 7
    report = Path(summary["error report"].removeprefix("file://"))
    with report.open() as stream:
        rows = list(csv.DictReader(stream))
    assert {(r["row"], r["field"]) for r in rows} == {("4", "email"), ("5", "phone"), ("6", "loyalty_points")}
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    assert xcom_value(dag_run, "map", "error_report") == summary["error report"]
    from airflow_provider_contactsync.operators.links import ErrorReportLink

    link = xcom_value(dag_run, "map", ErrorReportLink().xcom_key)  # the extra link: the page's http download
    assert link.startswith(f"/contactsync/reports/{demo.definition.dag_id}/")


def test_run_with_no_new_file_is_skipped_and_makes_no_write_call(demo: Demo) -> None:
    demo.run()
    before = len(demo.writes())
    dag_run = demo.run()
    assert task_states(dag_run) == {t: "skipped" for t in ("extract", "transform", "map", "load")}
    assert dag_run.state == "success"  # skipped, not failed
    assert len(demo.writes()) == before


def test_incremental_run_reads_equal_timestamps_across_the_boundary(demo: Demo) -> None:
    demo.run()
    demo.append(
        # same timestamp as the cursor (row 10), higher key: new, must be read
        "11,hedy@example.com,Hedy,Lamarr,,AT,1914-11-09,9,2026-11-20T08:45:00+00:00",
        # row 2 changed later
        "2,alan.turing@example.org,Alan M.,Turing,+44 20 7946 0958,GB,23/06/1912,81,2026-11-21T09:00:00+00:00",
    )
    summary = xcom_value(demo.run(), "load")
    assert summary["rows read"] == 2
    assert (summary["created"], summary["updated"]) == (1, 1)
    assert summary["cursor"]["value"] == "2026-11-21T09:00:00+00:00"
    names = {c.get("email"): c["attributes"].get("FIRSTNAME") for c in demo.sandbox.contacts()}
    assert names["hedy@example.com"] == "Hedy" and names["alan.turing@example.org"] == "Alan M."


def test_full_refresh_param_rereads_everything(demo: Demo) -> None:
    demo.run()
    summary = xcom_value(demo.run(conf={"full_refresh": True}), "load")
    assert summary["rows read"] == 10
    assert summary["updated"] == 7


def test_failed_load_then_next_run_loads_everything_once(demo: Demo) -> None:
    demo.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=400, times=1)
    failed = demo.run()
    assert task_states(failed)["load"] == "failed"
    assert demo.sandbox.contacts() == []
    summary = xcom_value(demo.run(), "load")  # the cursor did not move: the same rows come again
    assert summary["rows read"] == 10 and summary["created"] == 7
    assert len(demo.sandbox.contacts()) == 7


def test_reply_lost_after_import_is_retried_without_duplicates(demo: Demo) -> None:
    demo.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="drop_after", times=1)
    summary = xcom_value(demo.run(), "load")
    assert summary["created"] == 7
    emails = [c["email"] for c in demo.sandbox.contacts() if c.get("email")]
    assert len(emails) == len(set(emails)) == 6


def test_reject_rate_above_threshold_fails_before_loading(demo: Demo) -> None:
    path = demo.root / "definitions" / "demo_customers.yaml"
    path.write_text(path.read_text().replace("max_error_rate: 0.5", "max_error_rate: 0.1"))
    demo.definition = load_definition(path)
    dag_run = demo.run()
    states = task_states(dag_run)
    assert states["map"] == "failed" and states["load"] != "success"
    assert demo.writes() == []


def _alert_to(demo: Demo, smtp_conn_id: str, max_error_rate: str = "0.5") -> None:
    path = demo.root / "definitions" / "demo_customers.yaml"
    text = path.read_text().replace("max_error_rate: 0.5", f"max_error_rate: {max_error_rate}")
    path.write_text(
        text.replace(
            "  emails: [data-team@example.com]", f"  emails: [data-team@example.com]\n  smtp_conn_id: {smtp_conn_id}"
        )
    )
    demo.definition = load_definition(path)


def test_failed_task_emails_the_alert_addresses(demo: Demo, smtp_server: Any, smtp_conn_id: str) -> None:
    _alert_to(demo, smtp_conn_id)
    demo.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=400, times=1)
    assert task_states(demo.run())["load"] == "failed"
    (message,) = smtp_server.wait_for(1, timeout=30)
    assert message["To"] == "data-team@example.com"
    body = message.get_body(("html", "plain")).get_content()
    assert demo.definition.dag_id in message["Subject"] + body
    assert "load" in body


def test_reject_rate_alert_email(demo: Demo, smtp_server: Any, smtp_conn_id: str) -> None:
    _alert_to(demo, smtp_conn_id, max_error_rate="0.1")
    assert task_states(demo.run())["map"] == "failed"
    messages = smtp_server.wait_for(2, timeout=30)  # the reject-rate alert, then the task failure
    text = "\n".join(m["Subject"] + m.get_body(("html", "plain")).get_content() for m in messages)
    assert "3 of 10 rows rejected (30.0%)" in text


def test_successful_run_removes_its_chunks_and_old_leftovers(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    demo.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=400, times=1)
    assert task_states(demo.run())["load"] == "failed"
    runs = demo.root / "staging" / demo.definition.dag_id / "runs"
    assert len(list(runs.iterdir())) == 1  # the failed run's chunks are kept for inspection
    monkeypatch.setenv("AIRFLOW__CONTACTSYNC__RETENTION_DAYS", "0")
    assert task_states(demo.run())["load"] == "success"
    assert list(runs.iterdir()) == []
    assert len(list((runs.parent / "reports").iterdir())) == 2  # error reports are kept

"""Through Airflow DAG runs: what Brevo refuses is reported, alerted, retried; identity changes and
conflicts in a run end where a user expects. The sandbox is Brevo, a real SMTP server gets the alerts."""

from __future__ import annotations

import csv
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers.airflow_db import run_dag, task_states, xcom_value
from servers.smtp import SmtpServer

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox

HEADER = "id,email,first_name,updated_at"


class Shop:
    """A CSV drop folder synced by one definition into a fresh sandbox, alerts to a real SMTP server."""

    def __init__(
        self, root: Path, sandbox: BrevoSandbox, smtp_conn_id: str, max_error_rate: float, transform: str = "{}"
    ) -> None:
        self.root = root
        self.sandbox = sandbox
        (root / "drop").mkdir()
        self.file = root / "drop" / "customers.csv"
        integration = f"shop{uuid.uuid4().hex[:8]}"
        path = root / "shop.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                integration: {integration}
                source:
                  name: customers
                  type: file
                  path: drop
                  pattern: "*.csv"
                  fields: [id, email, first_name, updated_at]
                  updated_field: updated_at
                  key: id
                transform: {transform}
                mapping: {{email: EMAIL, id: EXT_ID, first_name: FIRSTNAME}}
                destination: {{conn_id: brevo_shop, list_ids: [2]}}
                alerts: {{emails: [crm@example.com], smtp_conn_id: {smtp_conn_id}, max_error_rate: {max_error_rate}}}
                """
            )
        )
        self.definition = load_definition(path)

    def drop(self, *rows: str, name: str = "customers.csv") -> None:
        (self.root / "drop" / name).write_text("\n".join([HEADER, *rows]) + "\n")

    def run(self) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(self.definition, staging=f"file://{self.root}/staging", default_args={"retries": 0})
        return run_dag(dag)

    def contacts(self) -> dict[str, dict[str, Any]]:
        return {c["attributes"].get("EXT_ID"): c for c in self.sandbox.contacts()}

    def existing(self, email: str, **attributes: Any) -> int:
        response = httpx.post(
            f"{self.sandbox.url}/contacts",
            json={"email": email, "attributes": attributes},
            headers={"api-key": self.sandbox.api_key},
        )
        response.raise_for_status()
        return int(response.json()["id"])

    def delete(self, contact_id: int) -> None:
        httpx.delete(f"{self.sandbox.url}/contacts/{contact_id}", headers={"api-key": self.sandbox.api_key})


def report_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    with Path(summary["error report"].removeprefix("file://")).open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def shop_factory(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, smtp_conn_id: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> Any:
    conn = {
        "conn_type": "brevo",
        "host": brevo_sandbox.url,
        "password": brevo_sandbox.api_key,
        "extra": json.dumps({"poll_interval": 0.01}),
    }
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_SHOP", json.dumps(conn))

    def make(max_error_rate: float = 0.5, transform: str = "{}", **extra: Any) -> Shop:
        if extra:
            conn["extra"] = json.dumps({"poll_interval": 0.01, **extra})
            monkeypatch.setenv("AIRFLOW_CONN_BREVO_SHOP", json.dumps(conn))
        return Shop(tmp_path, brevo_sandbox, smtp_conn_id, max_error_rate, transform)

    return make


def test_refusals_are_reported_alerted_and_retried_until_the_conflict_is_fixed(
    shop_factory: Any, smtp_server: SmtpServer
) -> None:
    shop = shop_factory(max_error_rate=0.7)
    holder = shop.existing("owner@example.com", EXT_ID="3")  # someone else's contact holds EXT_ID 3
    shop.drop(
        "1,ada@example.com,Ada,2026-11-20T08:00:00Z",
        "2,shared@example.com,Alan,2026-11-20T08:01:00Z",
        "3,grace@example.com,Grace,2026-11-20T08:02:00Z",
        "4,dora@b.c,Dora,2026-11-20T08:03:00Z",  # an address Brevo refuses: rejected before sending
        "5,shared@example.com,Barbara,2026-11-20T08:04:00Z",  # same email as row 2, newer
    )

    first = shop.run()
    assert task_states(first)["load"] == "success"  # 3 of 5 rows not loaded: under max_error_rate 0.7
    summary = xcom_value(first, "load")
    counts = ("rows read", "created", "refused", "identity conflicts", "rejected")
    assert tuple(summary[name] for name in counts) == (5, 2, 1, 1, 1)
    rows = {(r["row"], r["outcome"]): r for r in report_rows(summary)}
    assert set(rows) == {("2", "rejected"), ("3", "refused"), ("4", "rejected")}
    assert rows[("3", "refused")]["field"] == "EXT_ID" and rows[("3", "refused")]["value"] == "3"
    assert rows[("3", "refused")]["reason"] == (
        f"refused by Brevo: EXT_ID 3 belongs to contact {holder} whose EMAIL is owner@example.com"
    )
    assert rows[("4", "rejected")]["reason"].startswith("not a valid email address")
    assert "also on row 5" in rows[("2", "rejected")]["reason"]
    assert set(shop.contacts()) == {"1", "5", "3"} and shop.contacts()["3"]["email"] == "owner@example.com"
    [mail] = smtp_server.wait_for(1)
    assert str(mail["Subject"]).endswith(": 1 contact refused by Brevo")
    text = mail.get_body(("html",)).get_content()
    assert f"EXT_ID 3 belongs to contact {holder} whose EMAIL is owner@example.com" in text

    smtp_server.clear()
    unchanged = shop.run()  # no new file, but refused contacts wait: the run goes on and tries them again
    summary = xcom_value(unchanged, "load")
    assert (summary["rows read"], summary["retried"], summary["refused"], summary["created"]) == (0, 1, 1, 0)

    shop.delete(holder)  # the conflict is fixed in Brevo
    fixed = xcom_value(shop.run(), "load")
    assert (fixed["retried"], fixed["created"], fixed["refused"]) == (1, 1, 0)
    assert shop.contacts()["3"]["email"] == "grace@example.com"


def test_email_change_on_a_known_ext_id_updates_the_contact_in_brevo(shop_factory: Any) -> None:
    shop = shop_factory()
    shop.drop("42,zoe.martin@example.com,Zoe,2026-11-20T08:00:00Z")
    shop.run()
    shop.drop("42,zoe.new@example.com,Zoe,2026-11-21T08:00:00Z", name="changes.csv")
    summary = xcom_value(shop.run(), "load")
    assert (summary["updated"], summary["created"], summary["refused"]) == (1, 0, 0)
    assert [(c["email"], k) for k, c in shop.contacts().items()] == [("zoe.new@example.com", "42")]


def test_refusals_above_max_error_rate_fail_the_run_after_loading_the_rest(
    shop_factory: Any, smtp_server: SmtpServer
) -> None:
    shop = shop_factory(max_error_rate=0.2)
    shop.existing("owner@example.com", EXT_ID="2")
    shop.drop("1,ada@example.com,Ada,2026-11-20T08:00:00Z", "2,alan@example.com,Alan,2026-11-20T08:01:00Z")
    dag_run = shop.run()
    assert task_states(dag_run)["load"] == "failed"
    summary = xcom_value(dag_run, "load", "summary")
    assert (summary["created"], summary["refused"]) == (1, 1)
    assert "ada@example.com" in {c["email"] for c in shop.sandbox.contacts()}  # what Brevo accepted stays
    subjects = {str(m["Subject"]) for m in smtp_server.wait_for(2)}
    assert any(s.endswith("1 of 2 rows not loaded (50.0%)") for s in subjects)
    assert any("task load failed" in s for s in subjects)


def test_a_formula_failing_on_a_field_nothing_maps_keeps_the_row_and_says_so(shop_factory: Any) -> None:
    shop = shop_factory(transform="{score: first_name.asInt()}")
    shop.drop("1,ada@example.com,Ada,2026-11-20T08:00:00Z", "2,alan@example.com,,2026-11-20T08:01:00Z")
    summary = xcom_value(shop.run(), "load")
    assert (summary["created"], summary["rejected"]) == (2, 0)
    assert summary["formula failures on unmapped fields"] == {"score": 1}  # asInt() of "Ada"; an empty one is null
    names = {c["email"]: c["attributes"].get("FIRSTNAME") for c in shop.sandbox.contacts()}
    assert names == {"ada@example.com": "Ada", "alan@example.com": None}


def test_a_long_rate_limit_wait_defers_the_load_and_it_resumes_where_it_stopped(shop_factory: Any) -> None:
    shop = shop_factory(max_wait_seconds=0.5)  # Brevo's 429 without a reset time: a 1 s wait, over the bound
    shop.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=429, times=1)
    shop.drop("1,ada@example.com,Ada,2026-11-20T08:00:00Z", "2,alan@example.com,Alan,2026-11-20T08:01:00Z")
    dag_run = shop.run()
    assert task_states(dag_run)["load"] == "success"
    summary = xcom_value(dag_run, "load")
    assert summary["created"] == 2
    (deferral,) = summary["deferred for Brevo's rate limit"]
    assert deferral.startswith("contacts until ")
    assert [r["status"] for r in shop.sandbox.requests("POST", "/v3/contacts/import")] == [429, 202]


def test_a_load_run_again_after_its_run_finished_ends_as_it_did(shop_factory: Any) -> None:
    from airflow_provider_contactsync.dag_factory import build_dag

    shop = shop_factory()
    shop.drop("1,ada@example.com,Ada,2026-11-20T08:00:00Z")
    dag_run = shop.run()
    summary = xcom_value(dag_run, "load")
    writes = [r for r in shop.sandbox.requests() if r["method"] != "GET"]
    # The load finished (cursor advanced, staging removed) but Airflow never recorded it: a retry, or a
    # cleared task, runs it again with the run's upstream results and its chunks gone.
    load = build_dag(shop.definition, staging=f"file://{shop.root}/staging").get_task("load")
    upstream = {task: xcom_value(dag_run, task) for task in ("extract", "transform", "map")}

    class TI:
        def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
            return upstream[task_ids]

        def xcom_push(self, key: str, value: Any) -> None:
            raise AssertionError("a replay that succeeds pushes nothing")

    context = {"ti": TI(), "run_id": dag_run.run_id, "params": {}}
    assert load.execute(context) == summary
    assert [r for r in shop.sandbox.requests() if r["method"] != "GET"] == writes  # nothing sent again

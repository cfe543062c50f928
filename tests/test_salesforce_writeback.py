"""Brevo -> Salesforce through DAG runs (issue 15, item 3): both sandboxes, the writeback task after the load.

Changes made in Brevo to linked contacts reach Salesforce; a rule of the seed refuses with its reason;
contacts created in Brevo are never pushed; what the forward sync wrote is never echoed back.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers.airflow_db import run_dag, task_states, xcom_value
from test_sync_semantics import use_sandbox

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def linked_factory(
    tmp_path: Path, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> Any:  # fmt: skip
    use_sandbox(monkeypatch, brevo_sandbox)
    for name, value in salesforce_sandbox.environ("crm_sf").items():
        monkeypatch.setenv(name, value)
    return lambda extra="": _linked(tmp_path, brevo_sandbox, extra)


@pytest.fixture
def linked(linked_factory: Any) -> Any:
    return linked_factory()


def _linked(tmp_path: Path, brevo_sandbox: BrevoSandbox, extra: str) -> Any:
    list_id = brevo_sandbox.create_list("salesforce")
    path = tmp_path / f"contacts-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            integration: crm{uuid.uuid4().hex[:6]}
            source: {{name: contacts, type: salesforce, conn_id: crm_sf, object: Contact, writeback: true}}
            consent: {{opt_in_confirmed: true}}
            destination: {{conn_id: brevo_sync, list_ids: [{list_id}]}}
            """
        )
        + extra
    )
    definition = load_definition(path)
    runs = []

    def run(expect: str = "success") -> dict[str, Any]:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0})
        runs.append(None)
        dag_run = run_dag(dag, logical_date=T0 + dt.timedelta(days=len(runs)))
        assert task_states(dag_run)["writeback"] == expect, task_states(dag_run)
        result = xcom_value(dag_run, "writeback") or {}
        mapped = xcom_value(dag_run, "map") or {}
        return {**result, "error report": mapped.get("error_report")}

    def with_deletes() -> dict[str, Any]:
        nonlocal definition
        source = definition.source.model_copy(update={"writeback_deletes": True})
        definition = definition.model_copy(update={"source": source})
        return run()

    run.with_deletes = with_deletes  # type: ignore[attr-defined]
    run.dag_id = definition.dag_id  # type: ignore[attr-defined]
    return run


def read_report(brevo_sandbox: BrevoSandbox, summary: dict[str, Any]) -> list[dict[str, str]]:
    import csv

    with open(summary["error report"].removeprefix("file://")) as stream:
        return list(csv.DictReader(stream))


def brevo_update(sandbox: BrevoSandbox, email: str, **attributes: Any) -> None:
    httpx.put(
        f"{sandbox.url}/contacts/{email}", headers={"api-key": sandbox.api_key}, json={"attributes": attributes}
    ).raise_for_status()


def test_brevo_changes_go_back_by_the_seeds_rules_without_echo(
    linked: Any, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox
) -> None:
    ids = salesforce_sandbox.seed(
        "Contact",
        [{"FirstName": f"F{n}", "LastName": f"L{n}", "Email": f"p{n}@example.com"} for n in range(3)],
    )
    first = linked()
    assert first["written"] == 0  # the first run only starts the write-back's clock
    assert len(brevo_sandbox.contacts()) == 3

    brevo_update(brevo_sandbox, "p0@example.com", FIRSTNAME="Ann from Brevo")
    brevo_update(brevo_sandbox, "p1@example.com", LASTNAME="")  # a mapped last name cannot be emptied
    httpx.post(
        f"{brevo_sandbox.url}/contacts",
        headers={"api-key": brevo_sandbox.api_key},
        json={"email": "new@example.com", "attributes": {"FIRSTNAME": "New", "EXT_ID": "brevo-only"}},
    ).raise_for_status()
    second = linked()
    records = {r["Id"]: r for r in salesforce_sandbox.records("Contact")}
    assert records[ids[0]]["FirstName"] == "Ann from Brevo"
    assert records[ids[1]]["LastName"] == "L1"  # refused: kept
    assert len(records) == 3  # the Brevo-created contact was never pushed
    assert (second["written"], second.get("refused")) == (1, 1), second
    assert second["reasons"]["a mapped last name cannot be emptied"] == 1
    assert second["reasons"]["created in Brevo (no Salesforce Id): never pushed"] == 1
    # ... and per contact in the run's error report (the dashboard's download)
    lines = [line for line in read_report(brevo_sandbox, second) if line["reason"].startswith("write-back")]
    assert {(line["row"], line["outcome"], line["field"]) for line in lines} == {
        (ids[1], "refused", "LastName"),
        ("new@example.com", "skipped", ""),
    }

    # The forward sync brings Salesforce's change of ids[0] back to Brevo; it is not written back again.
    stamp = records[ids[0]]["SystemModstamp"]
    salesforce_sandbox.clear_calls()
    third = linked()
    assert third["written"] == 0
    assert {r["Id"]: r for r in salesforce_sandbox.records("Contact")}[ids[0]]["SystemModstamp"] == stamp
    assert not salesforce_sandbox.calls().get("composite_update")


def test_writing_back_counts_in_the_monthly_quota_and_stops_before_crossing_it(
    linked_factory: Any, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox
) -> None:
    run = linked_factory("quota: {operations_per_month: 4}\n")
    ids = salesforce_sandbox.seed("Contact", [{"LastName": f"L{n}", "Email": f"q{n}@example.com"} for n in range(3)])
    run()  # 3 creates: 3 of 4 operations
    brevo_update(brevo_sandbox, "q0@example.com", FIRSTNAME="One")
    brevo_update(brevo_sandbox, "q1@example.com", FIRSTNAME="Two")
    run(expect="failed")  # two write-backs would make 5 of 4: nothing written
    records = {r["Id"]: r for r in salesforce_sandbox.records("Contact")}
    assert records[ids[0]].get("FirstName") is None and records[ids[1]].get("FirstName") is None


def test_contacts_deleted_in_brevo_are_deleted_in_salesforce_except_one_linked_to_a_case(
    linked_factory: Any, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox
) -> None:
    run = linked_factory("deletes: {max_per_run: 10}\n")
    ids = salesforce_sandbox.seed("Contact", [{"LastName": f"L{n}", "Email": f"d{n}@example.com"} for n in range(4)])
    run()
    # writeback_deletes on: set on the definition the factory wrote (the model is frozen)
    salesforce_sandbox.add_case(ids[1])
    for email in ("d0@example.com", "d1@example.com"):
        httpx.delete(f"{brevo_sandbox.url}/contacts/{email}", headers={"api-key": brevo_sandbox.api_key})
    summary = run.with_deletes()
    left = {r["Id"] for r in salesforce_sandbox.records("Contact")}
    assert ids[0] not in left and {ids[1], ids[2], ids[3]} <= left  # ids[1] has a Case: not deleted
    assert summary["deleted in Salesforce"] == 1
    assert summary["delete skipped"] == 1
    assert any("linked to a Case" in reason for reason in summary["reasons"])
    again = run.with_deletes()  # handled once: not tried again
    assert again["deleted in Salesforce"] == 0 and "delete skipped" not in again


def test_the_source_page_shows_what_each_run_wrote_back(
    linked: Any, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox
) -> None:
    from airflow.utils.session import create_session

    from airflow_provider_contactsync.plugins.data import load_source
    from airflow_provider_contactsync.plugins.panels import panels_for

    salesforce_sandbox.seed("Contact", [{"LastName": f"L{n}", "Email": f"w{n}@example.com"} for n in range(2)])
    linked()
    brevo_update(brevo_sandbox, "w0@example.com", FIRSTNAME="Changed")
    brevo_update(brevo_sandbox, "w1@example.com", LASTNAME="")
    linked()
    with create_session() as session:
        detail = load_source(session, linked.dag_id)
    [panel] = [p for p in panels_for(detail) if p.title == "Brevo -> Salesforce"]
    newest = panel.rows[0]
    assert newest[1:6] == (2, 1, 1, 0, 0)  # looked at, written, refused, skipped, deleted
    assert "a mapped last name cannot be emptied (1)" in newest[6]


def test_a_record_changed_in_salesforce_after_the_brevo_change_wins(
    linked: Any, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    [record] = salesforce_sandbox.seed("Contact", [{"FirstName": "Ann", "LastName": "Lee", "Email": "c@example.com"}])
    linked()
    brevo_update(brevo_sandbox, "c@example.com", FIRSTNAME="From Brevo")
    # Salesforce's clock an hour ahead: its change is stamped after the Brevo one, whatever the rounding
    monkeypatch.setattr(salesforce_sandbox.api, "clock", lambda: time.time() + 3600)
    from simple_salesforce import Salesforce

    Salesforce(**salesforce_sandbox.simple_salesforce_kwargs()).Contact.update(record, {"FirstName": "From Salesforce"})
    summary = linked()
    assert summary["written"] == 0
    assert summary["reasons"] == {"changed in Salesforce since: the most recent change wins": 1}
    assert salesforce_sandbox.records("Contact")[0]["FirstName"] == "From Salesforce"

"""The salesforce source through DAG runs (issue 15): the Salesforce sandbox as the org (HTTPS, the
provider's SalesforceHook unmodified), the Brevo sandbox as Brevo.

Full and incremental syncs with ties on SystemModstamp, REST and Bulk API 2.0 reads giving the same
contacts, deletes (queryAll's IsDeleted) into the delete rules, consent from HasOptedOutOfEmail, and
formula fields refused with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.airflow_db import run_dag, task_states, xcom_value
from test_sync_semantics import use_sandbox

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)


def stamp(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", ".000+0000")


class Org:
    """One Salesforce definition over the Salesforce sandbox, synced into the Brevo sandbox."""

    def __init__(self, root: Path, salesforce: Any, brevo: BrevoSandbox, extra: str = "", obj: str = "Contact"):
        self.root, self.salesforce, self.brevo, self.obj = root, salesforce, brevo, obj
        self.list_id = brevo.create_list("salesforce")
        self.integration = f"crm{uuid.uuid4().hex[:8]}"
        path = root / f"{self.integration}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                integration: {self.integration}
                source:
                  name: people
                  type: salesforce
                  conn_id: crm_sf
                  object: {obj}
                consent: {{opt_in_confirmed: true}}
                destination: {{conn_id: brevo_sync, list_ids: [{self.list_id}]}}
                deletes: {{max_per_run: 100}}
                """
            )
            + textwrap.dedent(extra)
        )
        self.definition = load_definition(path)
        self.runs = 0

    def run(self) -> dict[str, Any]:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(self.definition, staging=f"file://{self.root}/staging", default_args={"retries": 0})
        self.runs += 1
        dag_run = run_dag(dag, logical_date=T0 + dt.timedelta(days=self.runs))
        assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
        return {"load": xcom_value(dag_run, "load"), "extract": xcom_value(dag_run, "extract")}

    def salesforce_client(self) -> Any:
        """A user of the org changing records (simple-salesforce, straight to the sandbox)."""
        from simple_salesforce import Salesforce

        return Salesforce(**self.salesforce.simple_salesforce_kwargs())

    def members(self) -> dict[str, dict[str, Any]]:
        return {
            str(c["attributes"].get("EXT_ID")): c
            for c in self.brevo.contacts()
            if self.list_id in (c.get("listIds") or [])
        }


@pytest.fixture
def org_factory(
    tmp_path: Path, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> Any:  # fmt: skip
    use_sandbox(monkeypatch, brevo_sandbox)
    for name, value in salesforce_sandbox.environ("crm_sf").items():
        monkeypatch.setenv(name, value)

    def make(extra: str = "", obj: str = "Contact") -> Org:
        return Org(tmp_path, salesforce_sandbox, brevo_sandbox, extra, obj)

    return make


def people(count: int, *, start: int = 0, tie_every: int = 7) -> list[dict[str, Any]]:
    """Contacts whose SystemModstamp is shared by runs of ``tie_every`` records (ties on the cursor)."""
    return [
        {"FirstName": f"F{n}", "LastName": f"L{n}", "Email": f"p{n}@example.com",
         "HasOptedOutOfEmail": n % 10 == 0, "SystemModstamp": stamp(n // tie_every)}
        for n in range(start, start + count)
    ]  # fmt: skip


@pytest.mark.parametrize("read", ["rest", "bulk"])
def test_full_then_incremental_sync_with_ties_deletes_and_consent(org_factory: Any, read: str) -> None:
    org = org_factory()
    org.definition = org.definition.model_copy(
        update={"source": org.definition.source.model_copy(update={"read": read})}
    )
    ids = org.salesforce.seed("Contact", people(2500))
    org.salesforce.clear_calls()
    first = org.run()
    assert first["load"]["created"] == 2500 and first["load"]["rejected"] == 0
    calls = org.salesforce.calls()
    if read == "bulk":  # one job, its result pages: no queryMore
        assert calls.get("bulk2_create_job") == 1 and not calls.get("query_more")
    else:  # 2,000 records a page: queryAll then one queryMore
        assert (calls.get("query_all"), calls.get("query_more")) == (1, 1) and not calls.get("bulk2_create_job")
    members = org.members()
    assert set(members) == set(ids)
    ada = members[ids[0]]
    assert (ada["email"], ada["attributes"]["FIRSTNAME"], ada["emailBlacklisted"]) == ("p0@example.com", "F0", True)
    assert members[ids[1]]["emailBlacklisted"] is False

    # A second run with nothing changed reads the cursor's instant again and sends nothing.
    again = org.run()
    assert again["load"]["created"] + again["load"]["updated"] == 0

    # Changes: two records updated with the cursor's own instant and a key below it (a late commit),
    # one updated later, one deleted (soft: it comes back through queryAll with IsDeleted).
    client = org.salesforce_client()
    client.Contact.update(ids[5], {"FirstName": "Changed"})
    client.Contact.delete(ids[6])
    third = org.run()
    assert third["load"]["updated"] == 1
    members = org.members()
    assert members[ids[5]]["attributes"]["FIRSTNAME"] == "Changed"
    assert ids[6] not in members  # unlinked (the default delete behaviour)
    assert third["extract"]["cursor_end"] is not None


def test_formula_fields_cannot_be_matched(org_factory: Any) -> None:
    org = org_factory()
    source = org.definition.source.model_copy(
        update={"fields": [*org.definition.source.fields, "Full_Name_Formula__c"]}
    )
    org.definition = org.definition.model_copy(update={"source": source})
    from airflow_provider_contactsync.core.errors import ConfigurationError
    from airflow_provider_contactsync.sources import open_source
    from airflow_provider_contactsync.sources.base import ReadWindow

    with pytest.raises(ConfigurationError, match="formula field.*cannot be matched"):
        list(open_source(org.definition.source).read(ReadWindow(), chunk_size=100))


def test_leads_sync_like_contacts(org_factory: Any) -> None:
    org = org_factory(obj="Lead")
    ids = org.salesforce.seed("Lead", [dict(p, Company="ACME") for p in people(30)])
    assert org.run()["load"]["created"] == 30
    assert set(org.members()) == set(ids)


def test_auto_reads_in_bulk_above_the_threshold_only(org_factory: Any) -> None:
    org = org_factory()
    org.definition = org.definition.model_copy(
        update={"source": org.definition.source.model_copy(update={"bulk_threshold": 100})}
    )
    org.salesforce.seed("Contact", people(150))
    org.salesforce.clear_calls()
    assert org.run()["load"]["created"] == 150
    assert org.salesforce.calls().get("bulk2_create_job") == 1  # counted 150 > 100
    org.salesforce.seed("Contact", people(20, start=1000))
    org.salesforce.clear_calls()
    assert org.run()["load"]["created"] == 20
    calls = org.salesforce.calls()
    assert not calls.get("bulk2_create_job") and calls.get("query_all", 0) >= 2  # COUNT(), then the page


def test_the_example_definition_syncs_the_org(
    tmp_path: Path, salesforce_sandbox: Any, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> None:  # fmt: skip
    from airflow_provider_contactsync.dag_factory import build_dag

    example = Path(__file__).resolve().parents[1] / "example_dags" / "definitions" / "salesforce_contacts.yaml"
    definition = load_definition(example)
    use_sandbox(monkeypatch, brevo_sandbox, "brevo_default")
    for name, value in salesforce_sandbox.environ(definition.source.conn_id).items():
        monkeypatch.setenv(name, value)
    rows = [
        dict(p, MobilePhone=f"06 12 34 56 {n:02d}" if n % 2 else None, Title="CTO") for n, p in enumerate(people(12))
    ]
    ids = salesforce_sandbox.seed("Contact", rows)
    dag_run = run_dag(build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0}))
    assert set(task_states(dag_run).values()) == {"success"}
    summary = xcom_value(dag_run, "load")
    assert summary["created"] == 12 and summary["rejected"] == 0
    by_id = {str(c["attributes"].get("EXT_ID")): c for c in brevo_sandbox.contacts()}
    assert by_id[ids[1]]["attributes"]["SMS"] == "33612345601"  # Brevo keeps SMS without the +


def test_check_source_lists_the_objects_fields_and_refuses_a_formula_field(
    tmp_path: Path, salesforce_sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_contactsync.cli import main

    for name, value in salesforce_sandbox.environ("crm_sf").items():
        monkeypatch.setenv(name, value)
    text = textwrap.dedent(
        """\
        integration: crm
        source: {{name: contacts, type: salesforce, conn_id: crm_sf, object: Contact, fields: [{field}]}}
        consent: {{opt_in_confirmed: true}}
        destination: {{list_ids: [2]}}
        """
    )
    file = tmp_path / "contacts.yaml"
    file.write_text(text.format(field="Title"))
    assert main(["validate", str(file), "--check-source"]) == 0
    out = capsys.readouterr().out
    assert "objects: Contact, Lead" in out and "Full_Name_Formula__c (formula)" in out
    file.write_text(text.format(field="Full_Name_Formula__c"))
    assert main(["validate", str(file), "--check-source"]) == 1
    err = capsys.readouterr().err
    assert "'Full_Name_Formula__c' is a formula field" in err and "cannot be matched" in err


REAL_ENV = "CONTACTSYNC_TEST_SALESFORCE_CONN"


@pytest.mark.skipif(
    not os.environ.get(REAL_ENV),
    reason=f"{REAL_ENV} is not set: give it an Airflow connection (JSON) to a Salesforce developer org",
)
@pytest.mark.parametrize("read", ["rest", "bulk"])
def test_a_real_org_reads_like_the_sandbox(monkeypatch: pytest.MonkeyPatch, read: str) -> None:
    """Opt-in, read-only: the same reader against a real org (describe, count, a window of Contacts)."""
    from airflow_provider_contactsync.core.spec import SourceDefinition
    from airflow_provider_contactsync.sources import open_source
    from airflow_provider_contactsync.sources.base import ReadWindow

    monkeypatch.setenv("AIRFLOW_CONN_REAL_SF", os.environ[REAL_ENV])
    definition = SourceDefinition.model_validate(
        {"integration": "real", "consent": {"opt_in_confirmed": True}, "destination": {"list_ids": [2]},
         "source": {"type": "salesforce", "name": "contacts", "conn_id": "real_sf", "object": "Contact",
                    "read": read}}
    )  # fmt: skip
    source = open_source(definition.source)
    ok, message = source.test_connection()
    assert ok, message
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    from airflow_provider_contactsync.core.cursor import Cursor

    rows = [row for chunk in source.read(ReadWindow(since=Cursor(since, None)), chunk_size=500) for row in chunk]
    assert all(row["SystemModstamp"] >= since.replace(microsecond=0) for row in rows)
    assert [(r["SystemModstamp"], r["Id"]) for r in rows] == sorted((r["SystemModstamp"], r["Id"]) for r in rows)

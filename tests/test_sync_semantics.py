"""Sync semantics through Airflow DAG runs: modes, deletes (three behaviours, ownership, guardrail),
list membership, consent and resubscription, empty values, dry runs. A local drop folder is the
source, the sandbox is Brevo, a real SMTP server gets the alerts."""

from __future__ import annotations

import csv
import datetime as dt
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

HEADER = "id,email,first_name,tier,deleted,accepts,opt_in_at,updated_at"


class Sync:
    """One definition over a CSV drop folder, synced into a sandbox; ``run`` drops a snapshot and runs."""

    def __init__(self, root: Path, sandbox: BrevoSandbox, smtp_conn_id: str, extra: str, source: str = "") -> None:
        self.root = root
        self.sandbox = sandbox
        (root / "drop").mkdir(parents=True, exist_ok=True)
        self.version = 0
        path = root / f"sync-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                integration: shop{uuid.uuid4().hex[:8]}
                source:
                  name: customers
                  type: file
                  path: drop
                  pattern: "*.csv"
                  fields: [id, email, first_name, tier, deleted, accepts, opt_in_at, updated_at]
                  key: id
                  {source}
                mapping: {{email: EMAIL, id: EXT_ID, first_name: FIRSTNAME}}
                alerts: {{emails: [crm@example.com], smtp_conn_id: {smtp_conn_id}, max_error_rate: 0.5}}
                """
            )
            + textwrap.dedent(extra)
        )
        self.definition = load_definition(path)

    def drop(self, *rows: str) -> None:
        """Replace the snapshot file (a new version: it is read by the next run)."""
        self.version += 1
        target = self.root / "drop" / "customers.csv"
        target.write_text("\n".join([HEADER, *rows]) + "\n")
        import os

        os.utime(target, (1_000_000 + self.version, 1_000_000 + self.version))

    def run(self, **params: Any) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(self.definition, staging=f"file://{self.root}/staging", default_args={"retries": 0})
        return run_dag(dag, conf=params or None)

    def summary(self, dag_run: Any) -> dict[str, Any]:
        return xcom_value(dag_run, "load") or xcom_value(dag_run, "load", key="summary") or {}

    def contacts(self) -> dict[str, dict[str, Any]]:
        """Sandbox contacts by EXT_ID (contacts without one by email)."""
        return {str(c["attributes"].get("EXT_ID") or c["email"]): c for c in self.sandbox.contacts()}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(
            method, f"{self.sandbox.url}{path}", headers={"api-key": self.sandbox.api_key}, **kwargs
        )
        response.raise_for_status()
        return response

    def members(self, list_id: int) -> set[str]:
        page = self.api("GET", f"/contacts/lists/{list_id}/contacts", params={"limit": 500}).json()
        return {str(c["attributes"].get("EXT_ID") or c["email"]) for c in page.get("contacts") or []}


def row(key: int, *, tier: str = "", deleted: str = "", accepts: str = "", opt_in_at: str = "") -> str:
    return f"{key},c{key}@example.com,Name{key},{tier},{deleted},{accepts},{opt_in_at},2026-11-20T08:00:{key:02d}Z"


def report(summary: dict[str, Any]) -> list[dict[str, str]]:
    with Path(summary["error report"].removeprefix("file://")).open() as stream:
        return list(csv.DictReader(stream))


def use_sandbox(monkeypatch: pytest.MonkeyPatch, sandbox: BrevoSandbox, conn_id: str = "brevo_sync") -> None:
    """Point an Airflow connection at the sandbox (polling fast: tests wait for no real Brevo)."""
    conn = {"conn_type": "brevo", "host": sandbox.url, "password": sandbox.api_key, "extra": {"poll_interval": 0.01}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def sync_factory(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, smtp_conn_id: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> Any:
    use_sandbox(monkeypatch, brevo_sandbox)
    lists = [brevo_sandbox.create_list(f"list {n}") for n in range(4)]

    def make(extra: str, source: str = "") -> Sync:
        text = extra.format(a=lists[0], b=lists[1], c=lists[2], d=lists[3])
        return Sync(tmp_path, brevo_sandbox, smtp_conn_id, text, source)

    make.lists = lists  # type: ignore[attr-defined]
    return make


def test_update_only_never_creates_and_says_which_contacts_it_skipped(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, mode: update_only, list_ids: [{a}]}}
        """
    )
    sync.api("POST", "/contacts", json={"email": "c1@example.com", "attributes": {"FIRSTNAME": "Old"}})
    sync.drop(row(1), row(2))

    dag_run = sync.run()

    summary = sync.summary(dag_run)
    assert task_states(dag_run)["load"] == "success"
    contacts = {c["email"]: c for c in sync.sandbox.contacts()}
    assert set(contacts) == {"c1@example.com"}  # c2 was not created
    assert contacts["c1@example.com"]["attributes"]["FIRSTNAME"] == "Name1"
    assert sync.members(sync_factory.lists[0]) == {"1"}
    assert (summary["updated"], summary["created"], summary["skipped (not in Brevo)"]) == (1, 0, 1)
    (skipped,) = [r for r in report(summary) if r["outcome"] == "skipped"]
    assert skipped["row"] == "2" and "update_only never creates" in skipped["reason"]


def test_create_only_leaves_existing_contacts_as_they_are(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, mode: create_only, list_ids: [{a}]}}
        """
    )
    sync.api("POST", "/contacts", json={"email": "c1@example.com", "attributes": {"FIRSTNAME": "Old"}})
    sync.drop(row(1), row(2))

    summary = sync.summary(sync.run())

    contacts = {c["email"]: c for c in sync.sandbox.contacts()}
    assert contacts["c1@example.com"]["attributes"]["FIRSTNAME"] == "Old"
    assert contacts["c2@example.com"]["attributes"]["FIRSTNAME"] == "Name2"
    assert (summary["created"], summary["skipped (exists)"]) == (1, 1)


@pytest.mark.parametrize("behavior", ["unlink", "blacklist", "delete"])
def test_soft_deletes_act_on_contacts_this_source_created_and_never_on_others(sync_factory: Any, behavior: str) -> None:
    sync = sync_factory(
        f"""
        destination: {{{{conn_id: brevo_sync, list_ids: [{{a}}]}}}}
        deletes: {{{{behavior: {behavior}, max_per_run: 100%}}}}
        """,
        source="deleted_when: deleted == 'yes'",
    )
    sync.api("POST", "/contacts", json={"email": "c3@example.com", "attributes": {"FIRSTNAME": "Mine"}})
    sync.drop(row(1), row(2), row(3))
    first = sync.summary(sync.run())
    assert (first["created"], first["updated"]) == (2, 1)  # c3 existed: delivered, not created

    sync.drop(row(1), row(2, deleted="yes"), row(3, deleted="yes"))
    dag_run = sync.run()

    summary = sync.summary(dag_run)
    assert task_states(dag_run)["load"] == "success"
    contacts = {c["email"]: c for c in sync.sandbox.contacts()}
    members = sync.members(sync_factory.lists[0])
    assert summary["deleted in source"] == 2, summary
    if behavior == "delete":
        assert set(contacts) == {"c1@example.com", "c3@example.com"} and summary["deleted"] == 1
    elif behavior == "blacklist":
        assert contacts["c2@example.com"]["emailBlacklisted"] is True and summary["blacklisted"] == 1, summary
        assert contacts["c3@example.com"]["emailBlacklisted"] is False
    else:
        assert members == {"1", "3"} and summary["unlinked"] == 1
    assert "3" in members and contacts["c3@example.com"]["attributes"]["FIRSTNAME"] == "Name3"
    (kept,) = [r for r in report(summary) if r["row"] == "3"]
    assert kept["outcome"] == "skipped" and "not created by this source" in kept["reason"]


def test_mirror_removes_what_a_snapshot_lost_and_the_guardrail_stops_a_mass_removal(
    sync_factory: Any, smtp_server: SmtpServer
) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, mode: mirror, list_ids: [{a}]}}
        deletes: {{behavior: delete, max_per_run: 30%}}
        """
    )
    sync.drop(*(row(n) for n in range(1, 11)))
    assert sync.summary(sync.run())["created"] == 10

    sync.drop(*(row(n) for n in range(1, 10)))  # row 10 left the source
    summary = sync.summary(sync.run())
    assert (summary["deleted"], summary["unchanged"], summary["created"]) == (1, 9, 0)
    assert "c10@example.com" not in {c["email"] for c in sync.sandbox.contacts()}

    sync.drop(row(1))  # a broken export: 8 of 9 contacts "gone"
    stopped = sync.run()
    assert task_states(stopped)["load"] == "failed"
    assert len(sync.sandbox.contacts()) == 9  # nothing removed
    mails = smtp_server.messages()
    (alert,) = [m for m in mails if "stopped before removing 8 contacts" in str(m["Subject"])]
    assert "allow_mass_delete" in alert.get_body(("html",)).get_content()

    sync.drop(row(1), "")  # the same snapshot again, a new file version
    allowed = sync.run(allow_mass_delete=True)
    assert task_states(allowed)["load"] == "success"
    assert {c["email"] for c in sync.sandbox.contacts()} == {"c1@example.com"}


def test_lists_join_and_leave_by_condition_and_unlink_lists_empty(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination:
          conn_id: brevo_sync
          list_ids: [{a}]
          unlink_list_ids: [{b}]
          lists: {{{c}: "tier == 'gold'", {d}: "tier == 'gold' || tier == 'silver'"}}
        """
    )
    lists = sync_factory.lists
    for email in ("c1@example.com", "c2@example.com"):
        sync.api("POST", "/contacts", json={"email": email, "listIds": [lists[1]]})
    sync.drop(row(1, tier="gold"), row(2, tier="silver"), row(3))
    summary = sync.summary(sync.run())
    assert sync.members(lists[0]) == {"1", "2", "3"}
    assert sync.members(lists[1]) == set()
    assert sync.members(lists[2]) == {"1"}
    assert sync.members(lists[3]) == {"1", "2"}
    assert summary["joined a list"] == 3

    sync.drop(row(1, tier="silver"), row(2, tier="silver"), row(3, tier="gold"))
    sync.run()
    assert sync.members(lists[2]) == {"3"}  # 1 left when its condition turned false
    assert sync.members(lists[3]) == {"1", "2", "3"}


def test_consent_blacklists_and_only_a_newer_opt_in_lifts_a_blacklist(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, list_ids: [{a}]}}
        consent:
          email: "accepts == 'yes' ? true : accepts == 'no' ? false : null"
          email_opt_in_at: "opt_in_at == '' ? null : opt_in_at"
        """
    )
    sync.drop(row(1, accepts="yes"), row(2, accepts="no"), row(3))
    sync.run()
    flags = {c["email"]: c["emailBlacklisted"] for c in sync.sandbox.contacts()}
    assert flags == {"c1@example.com": False, "c2@example.com": True, "c3@example.com": False}

    sync.sandbox.unsubscribe("c1@example.com", at="2026-11-25T10:00:00Z")  # by a campaign's link
    after_the_first_run = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    sync.drop(
        row(1, accepts="yes", opt_in_at="2026-11-24T09:00:00Z"),  # opted in before unsubscribing
        row(2, accepts="yes", opt_in_at=after_the_first_run),  # opted in after the sync blacklisted it
        row(3),
    )
    summary = sync.summary(sync.run())
    flags = {c["email"]: c["emailBlacklisted"] for c in sync.sandbox.contacts()}
    assert flags["c1@example.com"] is True  # stays unsubscribed
    assert flags["c2@example.com"] is False  # resubscribed
    assert (summary["resubscribed"], summary["kept unsubscribed"]) == (1, 1)
    (kept,) = [r for r in report(summary) if r["row"] == "1"]
    assert "before the unsubscription" in kept["reason"]

    sync.drop(row(1, accepts="yes", opt_in_at="2026-11-26T09:00:00Z"), row(2, accepts="yes"), row(3))
    sync.run()
    assert {c["email"]: c["emailBlacklisted"] for c in sync.sandbox.contacts()}["c1@example.com"] is False


def test_resubscribe_never_keeps_every_blacklist(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, list_ids: [{a}]}}
        consent: {{email: "accepts == 'yes'", email_opt_in_at: "opt_in_at", resubscribe: never}}
        """
    )
    sync.drop(row(1, accepts="no", opt_in_at="2026-11-01T00:00:00Z"))
    sync.run()
    sync.drop(row(1, accepts="yes", opt_in_at="2026-11-30T00:00:00Z"))
    sync.run()
    assert sync.sandbox.contacts()[0]["emailBlacklisted"] is True


@pytest.mark.parametrize("mode", ["upsert", "update_only"])
def test_empty_attributes_mean_the_same_on_every_write_path(sync_factory: Any, mode: str) -> None:
    sync = sync_factory(
        f"""
        destination: {{{{conn_id: brevo_sync, mode: {mode}, list_ids: [{{a}}], empty_attributes: true}}}}
        """
    )
    sync.api("POST", "/contacts", json={"email": "c1@example.com", "attributes": {"FIRSTNAME": "Old", "EXT_ID": "1"}})
    sync.drop("1,c1@example.com,,,,,,2026-11-20T08:00:01Z")  # first_name empty: erased

    sync.run()

    (contact,) = sync.sandbox.contacts()
    assert "FIRSTNAME" not in contact["attributes"]


def test_a_dry_run_reports_what_it_would_do_and_changes_nothing(sync_factory: Any) -> None:
    sync = sync_factory(
        """
        destination: {{conn_id: brevo_sync, mode: mirror, list_ids: [{a}]}}
        deletes: {{behavior: delete, max_per_run: 1}}
        """
    )
    sync.drop(row(1), row(2), row(3))
    sync.run()
    sync.sandbox.clear_requests()
    sync.drop(row(4))

    dag_run = sync.run(dry_run=True)

    summary = sync.summary(dag_run)
    assert task_states(dag_run)["load"] == "success"
    assert (summary["would send"], summary["would remove"]) == (1, 3)
    assert any("a real run would stop" in note for note in summary["notes"])
    assert len(sync.sandbox.contacts()) == 3
    assert not [r for r in sync.sandbox.requests() if r["method"] != "GET"]


def test_a_mirror_over_a_truncated_postgres_table_deletes_nothing_until_allowed(
    tmp_path: Path,
    brevo_sandbox: BrevoSandbox,
    postgres_server: Any,
    postgres_db: str,
    smtp_conn_id: str,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> None:
    """Real PostgreSQL: incremental cursor fields are ignored in mirror mode (every run reads in full)."""
    from airflow_provider_contactsync.core.spec import parse_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    use_sandbox(monkeypatch, brevo_sandbox, "brevo_pg")
    dbname = postgres_db.removeprefix("pg_")
    with postgres_server.connect(dbname) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text, updated_at timestamptz)")
        conn.execute(
            "INSERT INTO customers SELECT i, 'p' || i || '@example.com', now() - interval '1 day'"
            " FROM generate_series(1, 20) AS i"
        )
    someone_elses = httpx.post(
        f"{brevo_sandbox.url}/contacts",
        json={"email": "p20@example.com"},  # there before the source: it never removes this one
        headers={"api-key": brevo_sandbox.api_key},
    )
    someone_elses.raise_for_status()
    definition = parse_definition(
        textwrap.dedent(
            f"""\
            integration: pg{uuid.uuid4().hex[:8]}
            source:
              type: postgres
              name: customers
              conn_id: {postgres_db}
              table: public.customers
              fields: [id, email, updated_at]
              updated_field: updated_at
              key: id
            mapping: {{email: EMAIL, id: EXT_ID}}
            destination: {{conn_id: brevo_pg, mode: mirror, list_ids: [2]}}
            deletes: {{behavior: delete}}
            alerts: {{emails: [crm@example.com], smtp_conn_id: {smtp_conn_id}}}
            """
        ),
        file="mirror.yaml",
    )

    def run(**params: Any) -> Any:
        dag = build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0})
        return run_dag(dag, conf=params or None)

    first = xcom_value(run(), "load")
    assert (first["created"], first["updated"]) == (19, 1)
    with postgres_server.connect(dbname) as conn:
        conn.execute("DELETE FROM customers WHERE id = 1")
    assert xcom_value(run(), "load")["deleted"] == 1  # one row gone: within the default 10%

    with postgres_server.connect(dbname) as conn:
        conn.execute("TRUNCATE customers")  # by mistake
    stopped = run()
    assert task_states(stopped)["load"] == "failed"
    assert len(brevo_sandbox.contacts()) == 19  # nothing removed
    (alert,) = [m for m in smtp_server.messages() if "stopped before removing 18 contacts" in str(m["Subject"])]
    assert "EMAIL p19@example.com" in alert.get_body(("html",)).get_content()  # the first ten are named

    allowed = xcom_value(run(allow_mass_delete=True), "load")
    assert allowed["deleted"] == 18
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["p20@example.com"]  # not this source's to remove
    assert allowed["not removed (not created by this source)"] == 1


def test_a_contact_another_source_created_is_never_removed_by_this_one(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, smtp_conn_id: str, sync_factory: Any
) -> None:
    other = Sync(
        tmp_path / "other",
        brevo_sandbox,
        smtp_conn_id,
        f"destination: {{conn_id: brevo_sync, list_ids: [{sync_factory.lists[1]}]}}\n",
    )
    mirror = sync_factory(
        """
        destination: {{conn_id: brevo_sync, mode: mirror, list_ids: [{a}]}}
        deletes: {{behavior: delete, max_per_run: 100%}}
        """
    )
    other.drop(row(1))
    other.run()  # the other source creates c1
    mirror.drop(row(1), row(2))
    first = mirror.summary(mirror.run())
    assert (first["created"], first["updated"]) == (1, 1)

    mirror.drop(row(3))  # 1 and 2 leave this source
    summary = mirror.summary(mirror.run())

    assert {c["email"] for c in brevo_sandbox.contacts()} == {"c1@example.com", "c3@example.com"}
    assert (summary["deleted"], summary["not removed (not created by this source)"]) == (1, 1)

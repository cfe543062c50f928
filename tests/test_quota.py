"""The monthly operations quota (issue 15): usage per integration and UTC month in an Airflow Variable,
a warning email at 80%, a run that would go past the limit stopped before sending, the integration
stopped until the month ends, and the count back at 0 in the next month.

Through DAG runs: a CSV drop folder is the source, the sandbox is Brevo, a real SMTP server gets the
emails; the quota's clock (``quota.utc_now``) is moved by the tests.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.airflow_db import task_states
from servers.smtp import SmtpServer
from test_sync_semantics import Sync, row, use_sandbox

from airflow_provider_contactsync.core.spec import SourceDefinition
from airflow_provider_contactsync.load import quota as quota_module
from airflow_provider_contactsync.load.quota import MonthlyQuota, MonthUsage, operations_of, variable_key
from airflow_provider_contactsync.sandbox import BrevoSandbox

NOVEMBER = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
DECEMBER = dt.datetime(2026, 12, 1, 0, 0, 5, tzinfo=dt.timezone.utc)
WARNING = "monthly operations used"
STOPPED = "stopped: monthly operations quota reached"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(NOVEMBER)
    monkeypatch.setattr(quota_module, "utc_now", clock)
    return clock


@pytest.fixture
def quota_sync(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, smtp_conn_id: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> Any:
    use_sandbox(monkeypatch, brevo_sandbox)
    list_id = brevo_sandbox.create_list("quota")

    def make(limit: int, extra: str = "") -> Sync:
        return Sync(
            tmp_path,
            brevo_sandbox,
            smtp_conn_id,
            f"destination: {{conn_id: brevo_sync, list_ids: [{list_id}]}}\n"
            f"quota: {{operations_per_month: {limit}}}\n{extra}",
        )

    return make


def rows(first: int, last: int) -> list[str]:
    return [row(n) for n in range(first, last + 1)]


def stored(sync: Sync, month: str = "2026-11") -> MonthUsage:
    from airflow.models import Variable

    integration = sync.definition.integration
    return MonthUsage.from_json(integration, month, Variable.get(variable_key(integration, month), default_var=None))


def subjects(smtp_server: SmtpServer, part: str) -> list[str]:
    return [str(m["Subject"]) for m in smtp_server.messages() if part in str(m["Subject"])]


def writes(sandbox: BrevoSandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if r["method"] != "GET"]


def other_source(sync: Sync, name: str = "leads") -> Sync:
    """A second source of the same integration (its own DAG, the same quota)."""
    other = object.__new__(Sync)
    other.__dict__.update(sync.__dict__)
    other.definition = sync.definition.model_copy(
        update={"source": sync.definition.source.model_copy(update={"name": name})}
    )
    return other


# -- through DAG runs ---------------------------------------------------------------------------------


def test_the_quota_warns_at_80_percent_once_and_stops_a_run_that_would_go_past_it(
    quota_sync: Any, smtp_server: SmtpServer, clock: Clock, capfd: pytest.CaptureFixture[str]
) -> None:
    sync = quota_sync(100)

    sync.drop(*rows(1, 79))
    first = sync.summary(sync.run())
    assert (first["created"], first["quota used"], first["quota limit"], first["quota month"]) == (
        79,
        79,
        100,
        "2026-11",
    )
    assert stored(sync).used == 79 and not subjects(smtp_server, WARNING)  # 79%: no email

    sync.drop(*rows(1, 80))  # one new contact, 79 unchanged: one operation
    second = sync.summary(sync.run())
    assert (second["created"], second["unchanged"], second["quota used"]) == (1, 79, 80)
    [warning] = smtp_server.wait_for(1)
    assert str(warning["Subject"]).endswith(
        f"integration {sync.definition.integration}: 80 of 100 monthly operations used (80%, 2026-11)"
    )
    assert warning["To"] == "crm@example.com"

    sync.drop(*rows(1, 81))
    assert sync.summary(sync.run())["quota used"] == 81
    assert len(subjects(smtp_server, WARNING)) == 1  # once a month

    sync.sandbox.clear_requests()
    sync.drop(*rows(1, 101))  # 20 new contacts: 81 + 20 would pass 100
    capfd.readouterr()
    stopped = sync.run()
    assert task_states(stopped)["load"] == "failed"
    assert "QuotaExhaustedError: this run would make 20 operations" in "".join(capfd.readouterr())  # the task log
    assert not writes(sync.sandbox) and len(sync.sandbox.contacts()) == 81  # nothing sent
    [stop] = [m for m in smtp_server.messages() if STOPPED in str(m["Subject"])]
    text = stop.get_body(("html",)).get_content()
    assert "this run would make 20 operations" in text and "has used 81 of its 100 for 2026-11" in text
    assert "2026-12-01 00:00 UTC" in text
    usage = stored(sync)
    assert usage.used == 81 and usage.stopped_at and usage.stopped_limit == 100 and not usage.reserved
    assert not [m for m in smtp_server.messages() if "failed (try" in str(m["Subject"])]  # its own email only

    # Every later run of the integration fails before reading or sending, without another email.
    again = sync.run()
    assert task_states(again)["extract"] == "failed" and task_states(again)["load"] == "upstream_failed"
    assert "reached its monthly operations quota for 2026-11 (UTC) on 2026-11-20" in "".join(capfd.readouterr())
    leads = other_source(sync)
    leads_run = leads.run()
    assert task_states(leads_run)["extract"] == "failed"
    assert not writes(sync.sandbox)
    assert len(subjects(smtp_server, STOPPED)) == 1 and len(smtp_server.messages()) == 2

    # A dry run still shows what it would do, and what a real run would meet; it counts nothing.
    dry = sync.summary(sync.run(dry_run=True))
    assert dry["would send"] == 20 and dry["quota used"] == 81
    assert any(note.startswith("a real run would stop: integration") for note in dry["notes"])
    assert stored(sync).used == 81

    # The next month starts from 0: the file that was refused is loaded.
    clock.now = DECEMBER
    december = sync.run()
    assert task_states(december)["load"] == "success"
    summary = sync.summary(december)
    assert (summary["created"], summary["quota used"], summary["quota month"]) == (20, 20, "2026-12")
    assert len(sync.sandbox.contacts()) == 101
    assert stored(sync, "2026-11").used == 81 and stored(sync, "2026-12").used == 20


def test_the_exact_plan_decides_near_the_limit_and_reaching_it_exactly_stops_the_integration(
    quota_sync: Any, smtp_server: SmtpServer, clock: Clock
) -> None:
    sync = quota_sync(10)
    sync.drop(*rows(1, 6))
    assert sync.summary(sync.run())["quota used"] == 6

    # 10 contacts staged (over the 4 left), but 6 are unchanged: the exact plan is 4, which fits.
    sync.drop(*rows(1, 10))
    dag_run = sync.run()
    assert task_states(dag_run)["load"] == "success"
    summary = sync.summary(dag_run)
    assert (summary["created"], summary["quota used"]) == (4, 10)
    assert len(subjects(smtp_server, WARNING)) == 1 and len(subjects(smtp_server, STOPPED)) == 1
    stop = next(m for m in smtp_server.messages() if STOPPED in str(m["Subject"]))
    assert "bringing integration" in stop.get_body(("html",)).get_content()

    sync.drop(*rows(1, 11))
    later = sync.run()
    assert task_states(later)["extract"] == "failed" and len(sync.sandbox.contacts()) == 10

    # Raising the limit lifts the stop at once.
    raised = sync.definition.model_copy(
        update={"quota": sync.definition.quota.model_copy(update={"operations_per_month": 20})}
    )  # type: ignore[union-attr]
    sync.definition = raised
    after = sync.run()
    assert task_states(after)["load"] == "success"
    assert (sync.summary(after)["quota used"], sync.summary(after)["quota limit"]) == (11, 20)


def test_a_dry_run_counts_nothing(quota_sync: Any, smtp_server: SmtpServer, clock: Clock) -> None:
    sync = quota_sync(5)
    sync.drop(*rows(1, 4))

    summary = sync.summary(sync.run(dry_run=True))

    assert (summary["would send"], summary["quota used"], summary["quota limit"]) == (4, 0, 5)
    assert stored(sync).used == 0 and stored(sync).to_json() == MonthUsage("x", "2026-11").to_json()
    assert not smtp_server.messages() and not sync.sandbox.contacts()


def test_a_source_without_a_quota_counts_nothing(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, smtp_conn_id: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    use_sandbox(monkeypatch, brevo_sandbox)
    list_id = brevo_sandbox.create_list("no quota")
    sync = Sync(tmp_path, brevo_sandbox, smtp_conn_id, f"destination: {{conn_id: brevo_sync, list_ids: [{list_id}]}}\n")
    sync.drop(*rows(1, 3))
    summary = sync.summary(sync.run())
    assert summary["created"] == 3 and "quota used" not in summary
    assert stored(sync).to_json() == MonthUsage("x", "2026-11").to_json()


# -- the rules, over an in-memory Variable ---------------------------------------------------------------


class Variables(dict):
    def read(self, key: str) -> str | None:
        return self.get(key)

    def write(self, key: str, value: str) -> None:
        self[key] = value


def quota(variables: Variables, limit: int = 100, warn_at: float = 0.8) -> MonthlyQuota:
    return MonthlyQuota("crm", limit, warn_at, read=variables.read, write=variables.write)


def test_runs_in_progress_hold_their_reservations(clock: Clock) -> None:
    variables = Variables()
    one, two = quota(variables), quota(variables)

    assert one.check(60, run="a/1").reason is None
    refused = two.check(50, run="b/1", source="contactsync__crm__leads", write=False)
    assert refused.reason is not None and "(60 more reserved by runs in progress)" in refused.reason
    assert two.check(40, run="b/1").reason is None  # 60 + 40: exactly the limit
    assert one.room("a/1") == 60 and one.room() == 0

    settled = one.settle(55, run="a/1", month="2026-11")  # it did less than planned
    assert settled.usage.used == 55 and set(settled.usage.reserved) == {"b/1"} and not settled.warn
    clock.now = NOVEMBER + dt.timedelta(hours=quota_module.RESERVATION_HOURS, minutes=1)
    assert one.room() == 45  # b/1 died without settling: its reservation lapsed


def test_the_warning_and_the_stop_are_due_once(clock: Clock) -> None:
    variables = Variables()
    q = quota(variables, limit=10)
    assert not q.settle(7).warn
    first = q.settle(1)
    assert first.warn and first.usage.share(10) == "80%"
    assert not q.settle(1).warn
    last = q.settle(1)
    assert last.newly_stopped and last.usage.used == 10
    check = q.check(0)
    assert check.reason is not None and not check.newly_stopped
    assert "reached its monthly operations quota for 2026-11" in check.reason
    assert "until 2026-12-01 00:00 UTC" in check.reason
    assert quota(variables, limit=11).check(1).reason is None  # a higher limit lifts the stop

    clock.now = DECEMBER
    assert q.check(10).reason is None and q.usage().used == 0


def test_a_refused_run_stops_the_integration_even_below_the_limit(clock: Clock) -> None:
    variables = Variables()
    q = quota(variables, limit=100)
    q.settle(50)
    refused = q.check(51, run="a/1", source="contactsync__crm__customers")
    assert refused.newly_stopped and "would make 51 operations" in refused.reason  # type: ignore[operator]
    later = q.check(1, run="b/1")
    assert later.reason is not None and not later.newly_stopped
    assert "(contactsync__crm__customers needed 51 operations): 50 of 100 operations used" in later.reason
    stored_usage = json.loads(variables[variable_key("crm", "2026-11")])
    assert stored_usage["stopped_limit"] == 100 and stored_usage["reserved"] == {}


def test_shares_round_down_and_operations_are_what_brevo_did() -> None:
    assert MonthUsage("crm", "2026-11", used=7999).share(10_000) == "79.9%"
    assert MonthUsage("crm", "2026-11", used=100_000).share(100_000) == "100%"
    counts = {"created": 3, "updated": 2, "unchanged": 50, "deleted": 1, "unlinked": 4, "refused": 9, "recovered": 1}
    assert operations_of(counts) == 11
    assert quota_module.month_end("2026-12") == dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)


def test_salesforce_sources_get_the_default_quota() -> None:
    base = {
        "integration": "crm",
        "mapping": {"email": "EMAIL"},
        "destination": {"conn_id": "brevo_default", "list_ids": [2]},
    }
    files = SourceDefinition.model_validate(
        {**base, "source": {"name": "customers", "type": "file", "path": "/data", "fields": ["email"]}}
    )
    assert files.quota_or_default is None
    own = files.model_validate({**files.model_dump(mode="json"), "quota": {"operations_per_month": 500}})
    assert (own.quota_or_default.operations_per_month, own.quota_or_default.warn_at) == (500, 0.8)  # type: ignore[union-attr]
    salesforce = SourceDefinition.model_validate(
        {
            "integration": "crm",
            "destination": {"list_ids": [2]},  # the preset maps the standard fields
            "status": "draft",
            "source": {"name": "contacts", "type": "salesforce", "conn_id": "sf", "object": "Contact"},
        }
    )
    assert salesforce.quota_or_default.operations_per_month == 100_000  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="operations_per_month"):
        files.model_validate({**files.model_dump(mode="json"), "quota": {"operations_per_month": 0}})


# -- the dashboard -------------------------------------------------------------------------------------


def test_the_source_page_shows_the_months_usage_and_the_limit(
    tmp_path: Path, airflow_db: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.configuration import conf
    from airflow.models import Variable

    from airflow_provider_contactsync.plugins import panels
    from airflow_provider_contactsync.plugins.data import Run, Source, SourceDetail

    folder = Path(conf.get("core", "dags_folder")) / f"quotapanel{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    definition = folder / "customers.yaml"
    integration = f"panel{uuid.uuid4().hex[:8]}"
    definition.write_text(
        textwrap.dedent(
            f"""\
            integration: {integration}
            source: {{name: customers, type: file, path: /data, fields: [id, email]}}
            mapping: {{email: EMAIL, id: EXT_ID}}
            destination: {{conn_id: brevo_default, list_ids: [2]}}
            quota: {{operations_per_month: 1000, warn_at: 0.5}}
            """
        )
    )

    def detail(source_type: str = "file", path: Path | None = definition, summary: Any = None) -> SourceDetail:
        run = Run(1, "r1", "success", "manual", None, None, None, {}, summary=summary)
        dag_id = f"contactsync__{integration}__customers"
        source = Source(
            dag_id, integration, "customers", source_type, "daily", False, False, False, None, None, run, run
        )
        return SourceDetail(source, [run], None, str(path) if path else None, None)

    [panel] = [p for p in panels.panels_for(detail()) if p.key == "operations_quota"]
    assert list(panel.rows) == [("2026-11", "0", "1,000", "0%", "syncing")]

    Variable.set(
        variable_key(integration, "2026-11"),
        MonthUsage(
            integration,
            "2026-11",
            used=1000,
            warned_at=NOVEMBER.isoformat(),
            stopped_at=NOVEMBER.isoformat(),
            stopped_limit=1000,
        ).to_json(),
    )
    [panel] = [p for p in panels.panels_for(detail()) if p.key == "operations_quota"]
    (month, used, limit, share, status) = panel.rows[0]
    assert (month, used, limit, share) == ("2026-11", "1,000", "1,000", "100%")
    assert status.startswith("stopped on 2026-11-20") and "2026-12-01" in status
    assert "at 50%" in panel.note

    # Without the definition file: the limit the last load recorded; without a quota: no panel.
    [panel] = [
        p for p in panels.panels_for(detail(path=None, summary={"quota limit": 2000})) if p.key == "operations_quota"
    ]
    assert panel.rows[0][2] == "2,000"
    assert not [p for p in panels.panels_for(detail(path=None, summary={})) if p.key == "operations_quota"]
    definition.write_text(definition.read_text().replace("quota: {operations_per_month: 1000, warn_at: 0.5}\n", ""))
    assert not [p for p in panels.panels_for(detail()) if p.key == "operations_quota"]

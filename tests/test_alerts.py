"""Alert emails, delivered through a real SMTP server (tests/servers/smtp.py)."""

from __future__ import annotations

import datetime as dt
import logging
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import pytest
from servers.airflow_db import run_dag, task_states
from servers.smtp import SmtpServer

from airflow_provider_contactsync import alerts
from airflow_provider_contactsync.core.spec import SourceDefinition


def definition(emails: list[str] | None = None, **alert_options: Any) -> SourceDefinition:
    return SourceDefinition.model_validate(
        {
            "integration": "crm",
            "source": {"name": "customers", "type": "file", "path": "/data", "fields": ["id", "email"]},
            "mapping": {"email": "EMAIL", "id": "EXT_ID"},
            "destination": {"conn_id": "brevo_default", "list_ids": [2]},
            "alerts": {"emails": emails or [], **alert_options},
        }
    )


def body(message: EmailMessage) -> str:
    part = message.get_body(("html", "plain"))
    assert part is not None
    return part.get_content()


def fake_ti(**overrides: Any) -> SimpleNamespace:
    """What the templates read from ``context["ti"]`` (a RuntimeTaskInstance in a real run)."""
    values = {
        "dag_id": "contactsync__crm__customers",
        "task_id": "load",
        "run_id": "scheduled__2024-05-01T00:00:00+00:00",
        "try_number": 2,
        "max_tries": 2,
        "hostname": "worker-1",
        "log_url": "http://airflow.example.com/dags/contactsync__crm__customers/runs/r1/tasks/load?try_number=2",
    }
    return SimpleNamespace(**{**values, **overrides})


# -- the failure notifier ------------------------------------------------------------------------


def test_no_notifier_without_emails() -> None:
    assert alerts.failure_notifier(definition()) is None


def test_notifier_fields() -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = alerts.failure_notifier(definition(["ops@example.com", "data@example.com"], smtp_conn_id="relay"))

    assert isinstance(notifier, SmtpNotifier)
    assert notifier.to == ["ops@example.com", "data@example.com"]
    assert notifier.smtp_conn_id == "relay"
    for name in ("ti.dag_id", "ti.task_id", "ti.run_id", "ti.try_number"):
        assert name in notifier.subject
    for name in ("ti.log_url", "contactsync_error", "ti.max_tries"):
        assert name in notifier.html_content


def test_failure_mail_delivered(smtp_server: SmtpServer, smtp_conn_id: str) -> None:
    notifier = alerts.failure_notifier(definition(["ops@example.com"], smtp_conn_id=smtp_conn_id))
    error = ValueError("mapping failed for <row 7> & friends")

    notifier({"ti": fake_ti(), "exception": error})

    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "ops@example.com"
    assert mail["From"] == "contactsync@example.com"
    subject = str(mail["Subject"])
    assert "contactsync__crm__customers" in subject and "load" in subject and "try 2" in subject
    html = body(mail)
    assert "scheduled__2024-05-01T00:00:00+00:00" in html
    assert "2 of 3" in html  # try 2 of max_tries + 1
    assert 'href="http://airflow.example.com/dags/contactsync__crm__customers/runs/r1/tasks/load' in html
    assert "ValueError: mapping failed for &lt;row 7&gt; &amp; friends" in html
    assert smtp_server.password not in mail.as_string()


def test_one_notifier_renders_each_failure_afresh(smtp_server: SmtpServer, smtp_conn_id: str) -> None:
    """BaseNotifier renders in place; the shared instance must not resend the first task's mail."""
    notifier = alerts.failure_notifier(definition(["ops@example.com"], smtp_conn_id=smtp_conn_id))
    context: dict[str, Any] = {"ti": fake_ti(task_id="extract"), "exception": RuntimeError("first")}

    notifier(context)
    notifier({"ti": fake_ti(task_id="transform"), "exception": RuntimeError("second")})

    first, second = smtp_server.wait_for(2)
    assert "extract" in str(first["Subject"]) and "first" in body(first)
    assert "transform" in str(second["Subject"]) and "second" in body(second)
    assert set(context) == {"ti", "exception"}  # the task's own context is left alone


def test_error_text_hides_credentials() -> None:
    from airflow.sdk.log import mask_secret

    mask_secret("s3cr3t-smtp-password")
    error = RuntimeError("login as bob with s3cr3t-smtp-password failed; dsn postgresql://bob:hunter2@db:5432/crm")

    text = alerts.describe_error(error)

    assert "s3cr3t-smtp-password" not in text and "hunter2" not in text
    assert text.startswith("RuntimeError: login as bob with ***")
    assert "postgresql://***@db:5432/crm" in text


def test_error_text_is_capped() -> None:
    text = alerts.describe_error("x" * 10_000)
    assert len(text) < alerts.MAX_ERROR_CHARS + 100
    assert text.endswith("(6000 more characters in the task log)")


@pytest.mark.slow
def test_failed_task_mails_through_dag_test(smtp_server: SmtpServer, smtp_conn_id: str, airflow_db: str) -> None:
    """A real task failure under dag.test(): the callback runs with Airflow's own context."""
    from airflow.sdk import DAG, BaseHook, task

    notifier = alerts.failure_notifier(definition(["ops@example.com"], smtp_conn_id=smtp_conn_id))
    with DAG("contactsync__alerts__failing", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) as dag:

        @task(on_failure_callback=notifier, retries=0)
        def extract() -> None:
            password = BaseHook.get_connection(smtp_conn_id).password  # fetched => registered as a secret
            raise RuntimeError(f"source unreachable (tried {password})")

        extract()

    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"extract": "failed"}
    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "ops@example.com"
    assert str(mail["Subject"]).startswith("[contactsync] contactsync__alerts__failing: task extract failed (try 1")
    html = body(mail)
    assert "contactsync__alerts__failing" in html and dag_run.run_id in html
    assert "RuntimeError: source unreachable (tried ***)" in html
    assert "/dags/contactsync__alerts__failing/runs/" in html and "/tasks/extract" in html
    assert smtp_server.password not in mail.as_string()


# -- the reject rate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "rejected", "limit", "failed"),
    [
        (100, 5, 0.05, False),  # exactly at the threshold passes
        (100, 6, 0.05, True),
        (300, 21, 0.07, False),  # 21/300 is 7% exactly, though the float is a hair above 0.07
        (300, 22, 0.07, True),
        (0, 0, 0.05, False),  # nothing read: never fails
        (0, 0, 0.0, False),
        (10, 0, 0.0, False),
        (10, 1, 0.0, True),
        (10, 10, 1.0, False),
    ],
)
def test_check_reject_rate_boundaries(rows: int, rejected: int, limit: float, failed: bool) -> None:
    problem = alerts.check_reject_rate(definition(max_error_rate=limit), rows, rejected)
    assert (problem is not None) is failed


def test_check_reject_rate_message() -> None:
    assert (
        alerts.check_reject_rate(definition(max_error_rate=0.05), 100, 12)
        == "12 of 100 rows rejected (12.0%), above max_error_rate 5.0%"
    )
    # one decimal would print "5.0%, above 5.0%"
    assert alerts.check_reject_rate(definition(max_error_rate=0.05), 10_000, 501) == (
        "501 of 10000 rows rejected (5.01%), above max_error_rate 5.00%"
    )


def summary(**overrides: Any) -> dict[str, Any]:
    reasons = {f"reason {i:02d}": 20 - i for i in range(12)}
    reasons["{{ 7 * 7 }} <b>EMAIL</b> is not an email"] = 30
    values = {
        "rows": 1000,
        "rejected": 300,
        "contacts": 700,
        "error_report": "file:///staging/contactsync__crm__customers/reports/run-1.csv",
        "reject_reasons": reasons,
        **overrides,
    }
    return values


def test_reject_rate_alert_delivered(smtp_server: SmtpServer, smtp_conn_id: str) -> None:
    spec = definition(["ops@example.com", "data@example.com"], smtp_conn_id=smtp_conn_id, max_error_rate=0.1)

    alerts.send_reject_rate_alert(spec, summary(), {"ti": fake_ti(task_id="map")})

    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "ops@example.com, data@example.com"
    assert str(mail["Subject"]) == "[contactsync] contactsync__crm__customers: 300 of 1000 rows rejected (30.0%)"
    html = body(mail)
    for cell in ("Rows read</td><td>1000", "Rejected</td><td>300", "30.0%", "max_error_rate</td><td>10.0%"):
        assert cell in html
    assert "file:///staging/contactsync__crm__customers/reports/run-1.csv" in html
    # top 10 by count, most frequent first; data is escaped and never rendered as a template
    assert "<tr><td>30</td><td>{{ 7 * 7 }} &lt;b&gt;EMAIL&lt;/b&gt; is not an email</td></tr>" in html
    assert html.index("reason 00") < html.index("reason 08")
    assert "reason 08" in html and "reason 09" not in html
    assert "49" not in html


def test_reject_rate_alert_needs_emails(smtp_server: SmtpServer, smtp_conn_id: str) -> None:
    alerts.send_reject_rate_alert(definition(smtp_conn_id=smtp_conn_id), summary(), {})

    with pytest.raises(TimeoutError):
        smtp_server.wait_for(1, timeout=0.5)


def test_reject_rate_alert_never_raises(
    monkeypatch: pytest.MonkeyPatch, unused_smtp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator raises its own, clearer failure right after: a dead relay must not replace it."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD_RELAY",
        f'{{"conn_type": "smtp", "host": "127.0.0.1", "port": {unused_smtp_port},'
        ' "extra": {"disable_ssl": true, "disable_tls": true, "from_email": "a@example.com", "retry_limit": 0}}',
    )
    spec = definition(["ops@example.com"], smtp_conn_id="dead_relay")

    with caplog.at_level(logging.ERROR, logger=alerts.__name__):
        alerts.send_reject_rate_alert(spec, summary(), {})

    assert "Could not send the reject-rate alert through dead_relay" in caplog.text


@pytest.fixture
def unused_smtp_port() -> int:
    """A port nobody listens on (bound, then released: connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

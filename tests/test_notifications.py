"""Outbound webhooks (signed, retried, never failing the sync) and debug mode's row tracer.

Webhooks are received by a real HTTP server in its own process (tests/servers/http_receiver.py),
through an Airflow http connection and the HTTP provider's hook.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from typing import Any

import pytest
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, task_states
from servers.http_receiver import HttpReceiver, Received

from airflow_provider_contactsync.core.debug import RowTracer, debug_value_mode
from airflow_provider_contactsync.core.errors import DefinitionError
from airflow_provider_contactsync.core.spec import SourceDefinition, parse_definition
from airflow_provider_contactsync.notifications import webhooks
from airflow_provider_contactsync.notifications.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    ContactsyncWebhookNotifier,
    build_payload,
    notify_event,
    sign,
    verify_signature,
)

CONN_ID = "contactsync_test_webhook"
EMAILS = ("jane.doe@example.com", "bob@shop.example")


def definition(events: list[str] | None = None, conn_id: str = CONN_ID, **extra: Any) -> SourceDefinition:
    return SourceDefinition.model_validate(
        {
            "integration": "crm",
            "source": {"name": "customers", "type": "file", "path": "/data", "fields": ["id", "email"]},
            "mapping": {"email": "EMAIL", "id": "EXT_ID"},
            "destination": {"conn_id": "brevo_default", "list_ids": [2]},
            "notifications": {
                "webhooks": [
                    {"url_conn_id": conn_id, "events": events or ["sync_completed", "sync_failed", "batch_completed"]}
                ]
            },
            **extra,
        }
    )


def summary() -> dict[str, Any]:
    """A load summary as the load operator returns it, personal data included where it puts some."""
    return {
        "rows read": 120,
        "rejected": 3,
        "identity conflicts": 0,
        "created": 100,
        "updated": 15,
        "unchanged": 0,
        "skipped (exists)": 0,
        "refused": 2,
        "skipped at source": 0,
        "max error rate": 0.05,
        "cursor": {"type": "timestamp", "value": "2024-05-01T10:00:00+00:00", "key": EMAILS[0]},
        "error report": "file:///staging/contactsync__crm__customers/run/errors.csv",
        "refusals": [f"row 7: refused by Brevo: the contact whose EMAIL is {EMAILS[0]} exists", f"row 9: {EMAILS[1]}"],
        "brevo requests": {"import": 2},
        "load seconds": 1.5,
        "notes": [f"{EMAILS[1]} was unchanged"],
        "dry": True,
    }


@pytest.fixture
def secret() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def webhook_conn(webhook_receiver: HttpReceiver, secret: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", webhook_receiver.connection_json(secret))
    return CONN_ID


class Sleeps:
    """Injected instead of time.sleep: records the backoff without waiting it."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def assert_signed(request: Received, secret: str) -> None:
    assert verify_signature(secret, request.header(SIGNATURE_HEADER), request.body)


# -- payload ------------------------------------------------------------------------------------------------


def test_payload_holds_counts_and_link_but_no_personal_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    payload = build_payload(definition(), "sync_completed", summary(), run_id="manual__2024-05-01T10:00:00+00:00")
    text = json.dumps(payload)
    for email in EMAILS:
        assert email not in text
    assert "refused by Brevo" not in text and "was unchanged" not in text and "staging" not in text
    assert payload["source"] == {
        "dag_id": "contactsync__crm__customers",
        "integration": "crm",
        "name": "customers",
        "type": "file",
    }
    assert payload["run"]["error_report"] == (
        "https://airflow.example.com/contactsync/reports/contactsync__crm__customers/"
        "manual__2024-05-01T10%3A00%3A00%2B00%3A00"
    )
    assert payload["counts"] == {
        "rows_read": 120,
        "rejected": 3,
        "identity_conflicts": 0,
        "created": 100,
        "updated": 15,
        "unchanged": 0,
        "skipped_exists": 0,
        "refused": 2,
        "skipped_at_source": 0,
    }  # no floats, no booleans, no lists, no nested dicts
    assert payload["cursor"] == {
        "type": "timestamp",
        "value": "2024-05-01T10:00:00+00:00",
    }  # the key (an email) left out
    assert payload["event"] == "sync_completed" and len(payload["id"]) == 32


def test_string_cursor_value_is_left_out() -> None:
    data = {**summary(), "cursor": {"type": "string", "value": EMAILS[0], "key": 3}}
    assert build_payload(definition(), "sync_failed", data, run_id="r")["cursor"] == {"type": "string"}


def test_payload_without_summary_and_for_unknown_event() -> None:
    payload = build_payload(definition(), "sync_failed", None, run_id="r", failed_task="extract")
    assert payload["counts"] == {} and payload["cursor"] is None and payload["run"]["failed_task"] == "extract"
    with pytest.raises(ValueError, match="unknown event"):
        build_payload(definition(), "sync_started", None, run_id="r")


# -- signatures ---------------------------------------------------------------------------------------------


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"event":"sync_completed"}'
    header = sign("s3cret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature("s3cret", header, body, now=1_700_000_100)
    assert not verify_signature("other", header, body, now=1_700_000_100)  # wrong secret
    assert not verify_signature("s3cret", header, body + b" ", now=1_700_000_100)  # body changed
    assert not verify_signature("s3cret", header, body, now=1_700_000_301)  # too old: a replay
    assert not verify_signature("s3cret", header, body, now=1_699_999_000)  # from the future
    assert verify_signature("s3cret", header, body, now=1_700_000_600, tolerance_seconds=600)
    forged = header.replace("t=1700000000", "t=1700000200")  # a fresh timestamp on an old signature
    assert not verify_signature("s3cret", forged, body, now=1_700_000_200)
    for bad in (None, "", "v1=abc", "t=1700000000", "t=1700000000,t=1700000000," + header.split(",")[1], "garbage"):
        assert not verify_signature("s3cret", bad, body, now=1_700_000_000)
    rotated = f"{header},v1={'0' * 64}"  # several signatures (secret rotation): one valid is enough
    assert verify_signature("s3cret", rotated, body, now=1_700_000_000)


# -- delivery to a real receiver ----------------------------------------------------------------------------


def test_delivered_signed_through_the_http_connection(webhook_receiver: HttpReceiver, webhook_conn: str, secret: str):
    sleeps = Sleeps()
    [delivery] = notify_event(definition(), "sync_completed", summary(), run_id="run-1", sleep=sleeps)
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    [request] = webhook_receiver.wait_for(1)
    assert request.path == "/hooks/contactsync"
    assert request.header("Content-Type") == "application/json"
    assert request.header(EVENT_HEADER) == "sync_completed"
    assert request.header(DELIVERY_HEADER) == request.json()["id"]
    assert_signed(request, secret)
    assert not verify_signature("not-the-secret", request.header(SIGNATURE_HEADER), request.body)
    assert request.header("Authorization") is None and secret not in json.dumps(request.headers)
    assert request.json()["counts"]["created"] == 100
    for email in EMAILS:
        assert email.encode() not in request.body
    assert sleeps.calls == []


def test_login_on_the_connection_does_not_send_the_secret(
    webhook_receiver: HttpReceiver, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(webhook_receiver.connection_json(secret))
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({**conn, "login": "someone"}))
    [delivery] = notify_event(definition(), "sync_completed", summary(), run_id="run-1", sleep=Sleeps())
    assert delivery.delivered
    [request] = webhook_receiver.wait_for(1)
    assert request.header("Authorization") is None
    assert_signed(request, secret)


def test_retried_with_backoff_on_503_then_delivered(webhook_receiver: HttpReceiver, webhook_conn: str, secret: str):
    webhook_receiver.answer([503, 503, 429])
    sleeps = Sleeps()
    [delivery] = notify_event(definition(), "batch_completed", summary(), run_id="run-1", batch=3, sleep=sleeps)
    assert delivery.delivered and delivery.attempts == 4
    assert sleeps.calls == [1.0, 2.0, 4.0]
    requests = webhook_receiver.wait_for(4)
    assert [r.status for r in requests] == [503, 503, 429, 200]
    assert len({r.header(DELIVERY_HEADER) for r in requests}) == 1  # one idempotency id for every attempt
    assert len({r.body for r in requests}) == 1
    for request in requests:
        assert_signed(request, secret)
    assert requests[-1].json()["run"]["batch"] == 3


def test_always_500_gives_up_without_raising(
    webhook_receiver: HttpReceiver, webhook_conn: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_receiver.answer(default=500)
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING):
        [delivery] = notify_event(definition(), "sync_failed", summary(), run_id="run-1", sleep=sleeps)
    assert not delivery.delivered and delivery.attempts == 4 and delivery.status == 500
    assert len(webhook_receiver.wait_for(4)) == 4 and sleeps.calls == [1.0, 2.0, 4.0]
    assert "not delivered after 4 attempt(s): HTTP 500" in caplog.text
    assert secret not in caplog.text and EMAILS[0] not in caplog.text


def test_client_error_is_not_retried(webhook_receiver: HttpReceiver, webhook_conn: str) -> None:
    webhook_receiver.answer(default=401)
    [delivery] = notify_event(definition(), "sync_completed", summary(), run_id="run-1", sleep=Sleeps())
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status == 401


def test_endpoint_down_does_not_raise(
    unused_tcp_port: int, secret: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{unused_tcp_port}/hook", "password": secret}),
    )
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING):
        [delivery] = notify_event(definition(), "sync_completed", summary(), run_id="run-1", sleep=sleeps)
    assert not delivery.delivered and delivery.attempts == 4 and delivery.status is None
    assert delivery.error == "ConnectionError" and sleeps.calls == [1.0, 2.0, 4.0]
    assert secret not in caplog.text


def test_missing_connection_or_secret_does_not_raise(
    webhook_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    [missing] = notify_event(definition(conn_id="no_such_conn"), "sync_completed", None, run_id="r", sleep=Sleeps())
    assert not missing.delivered
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", webhook_receiver.connection_json(None))
    [unsigned] = notify_event(definition(), "sync_completed", None, run_id="r", sleep=Sleeps())
    assert not unsigned.delivered and "password" in (unsigned.error or "")
    assert webhook_receiver.requests() == []  # never sent unsigned


def test_only_listeners_of_the_event_are_called(webhook_receiver: HttpReceiver, webhook_conn: str) -> None:
    assert notify_event(definition(["sync_failed"]), "sync_completed", summary(), run_id="r") == []
    assert notify_event(SourceDefinition.model_validate(_plain()), "sync_completed", summary(), run_id="r") == []
    assert webhook_receiver.requests() == []


@pytest.fixture
def unused_tcp_port() -> int:
    from servers.processes import free_port

    return free_port()


# -- the Airflow notifier, in real runs (dag.test) ----------------------------------------------------------


def test_notifier_posts_success_and_failure_from_real_runs(
    webhook_receiver: HttpReceiver, webhook_conn: str, secret: str, airflow_db: str
) -> None:
    from airflow.sdk import DAG, task

    spec = definition().model_dump(mode="json")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    with DAG("contactsync__crm__customers", schedule=None, start_date=start) as ok_dag:

        @task(task_id="load", on_success_callback=ContactsyncWebhookNotifier(spec, "sync_completed"))
        def load() -> dict[str, Any]:
            return summary()

        load()

    run = run_dag(ok_dag)
    assert task_states(run) == {"load": "success"}
    [request] = webhook_receiver.wait_for(1)
    assert_signed(request, secret)
    payload = request.json()
    assert payload["event"] == "sync_completed" and payload["run"]["run_id"] == run.run_id
    assert payload["counts"]["rows_read"] == 120
    assert EMAILS[0].encode() not in request.body and EMAILS[1].encode() not in request.body

    webhook_receiver.clear()
    webhook_receiver.answer(default=500)  # a failing endpoint changes nothing in the run
    failed = ContactsyncWebhookNotifier(json.dumps(spec), "sync_failed", sleep=lambda _: None)
    with DAG("contactsync__crm__customers", schedule=None, start_date=start) as bad_dag:

        @task(task_id="extract", on_failure_callback=failed, retries=0)
        def extract() -> None:
            raise RuntimeError(f"source unreachable for {EMAILS[0]}")

        @task(task_id="load")
        def load_after() -> None:
            return None

        extract() >> load_after()

    run = run_dag(bad_dag)
    assert task_states(run)["extract"] == "failed"
    requests = webhook_receiver.wait_for(4)
    payload = requests[0].json()
    assert payload["event"] == "sync_failed" and payload["run"]["failed_task"] == "extract"
    assert payload["counts"] == {} and EMAILS[0].encode() not in requests[0].body
    assert_signed(requests[0], secret)


def test_notifier_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        ContactsyncWebhookNotifier(definition().model_dump(mode="json"), "sync_done")


def test_notifier_never_raises_on_a_broken_context(webhook_conn: str) -> None:
    notifier = ContactsyncWebhookNotifier(definition().model_dump(mode="json"), "sync_completed", sleep=Sleeps())
    notifier.notify({"run_id": "r", "ti": object()})  # no xcom_pull: no counts, still sent
    webhooks_json = {"not": "a definition"}
    ContactsyncWebhookNotifier(webhooks_json, "sync_completed").notify({})  # logged, not raised


# -- the spec -----------------------------------------------------------------------------------------------


def _plain() -> dict[str, Any]:
    return {
        "integration": "crm",
        "source": {"name": "customers", "type": "file", "path": "/data", "fields": ["id", "email"]},
        "mapping": {"email": "EMAIL", "id": "EXT_ID"},
        "destination": {"conn_id": "brevo_default", "list_ids": [2]},
    }


YAML = """\
integration: crm
source: {name: customers, type: file, path: /data, fields: [id, email]}
mapping: {email: EMAIL, id: EXT_ID}
destination: {conn_id: brevo_default, list_ids: [2]}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, file="crm.yaml")
    return str(info.value).splitlines()


def test_spec_defaults_and_accepts_the_new_keys() -> None:
    plain = parse_definition(YAML)
    assert plain.debug is False and plain.notifications.webhooks == []
    full = parse_definition(
        YAML + "debug: true\nnotifications:\n  webhooks:\n"
        "    - {url_conn_id: shop_hooks, events: [sync_completed, sync_failed]}\n"
        "    - {url_conn_id: ops_hooks, events: [batch_completed]}\n"
    )
    assert full.debug is True
    assert [(w.url_conn_id, w.events) for w in full.notifications.webhooks] == [
        ("shop_hooks", ["sync_completed", "sync_failed"]),
        ("ops_hooks", ["batch_completed"]),
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("debug: 'true'", "debug"),
        ("debug: 1", "debug"),
        ("notifications: {webhooks: [{url_conn_id: hooks, events: [sync_started]}]}", "sync_started"),
        ("notifications: {webhooks: [{url_conn_id: hooks, events: []}]}", "events"),
        ("notifications: {webhooks: [{url_conn_id: hooks}]}", "events"),
        ("notifications: {webhooks: [{url_conn_id: 'a b', events: [sync_failed]}]}", "url_conn_id"),
        ("notifications: {webhooks: [{url: 'https://x.example', events: [sync_failed]}]}", "url"),
        ("notifications: {webhooks: [{url_conn_id: h, events: [sync_failed, sync_failed]}]}", "listed twice"),
        (
            "notifications: {webhooks: [{url_conn_id: h, events: [sync_failed]}, {url_conn_id: h, events: "
            "[sync_completed]}]}",
            "listed twice",
        ),
        ("notifications: {emails: [a@example.com]}", "emails"),
    ],
)
def test_spec_refuses_bad_notifications_and_debug(extra: str, expected: str) -> None:
    errors = errors_of(YAML + extra + "\n")
    assert errors and any(expected in line for line in errors), errors
    assert any("notifications" in line or "debug" in line for line in errors), errors


def test_webhook_secret_in_the_definition_is_refused() -> None:
    errors = errors_of(YAML + "notifications: {webhooks: [{url_conn_id: h, events: [sync_failed], secret: abc}]}\n")
    assert any("secret" in line for line in errors), errors


# -- debug mode ---------------------------------------------------------------------------------------------


def test_tracer_lines_per_stage_masked() -> None:
    tracer = RowTracer(mode="masked", keep=True)
    tracer.extract(42, {"email": "jane.doe@example.com", "first_name": "Janet", "age": None, "vip": True})
    tracer.transform(42, {"email": "jane.doe@example.com"})
    tracer.mapped(42, {"EMAIL": "jane.doe@example.com"})
    tracer.rejected("map", 43, "EMAIL: jane@bad is not a valid email", field="email", value="jane@bad")
    tracer.loaded(42, "sent in import 3")
    tracer.loaded("jane.doe@example.com", "refused: the contact jane.doe@example.com exists")
    assert tracer.lines[:5] == [
        "extract row 42: email='j***@example.com', first_name='J****', age=null, vip=true",
        "transform row 42: email='j***@example.com'",
        "map row 42: EMAIL='j***@example.com'",
        "map row 43: rejected: EMAIL: jane@bad is not a valid email (email='j***@*ad')",
        "load row 42: sent in import 3",
    ]
    assert "jane.doe" not in "\n".join(tracer.lines)


def test_tracer_raw_and_hashed() -> None:
    raw = RowTracer(mode="raw", keep=True)
    raw.extract(1, {"email": "jane.doe@example.com"})
    assert raw.lines == ["extract row 1: email='jane.doe@example.com'"]
    hashed = RowTracer(mode="hashed", keep=True)
    hashed.extract(1, {"email": "jane.doe@example.com"})
    hashed.extract(2, {"email": "jane.doe@example.com"})
    assert hashed.lines[0].split(": ", 1)[1] == hashed.lines[1].split(": ", 1)[1]
    assert "sha256:" in hashed.lines[0] and "jane" not in hashed.lines[0]


def test_tracer_is_bounded_per_stage(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("contactsync.test.debug")
    tracer = RowTracer(mode="masked", limit=3, logger=logger)
    with caplog.at_level(logging.INFO, logger="contactsync.test.debug"):
        for row in range(1_000):
            tracer.extract(row, {"email": f"user{row}@example.com"})
            if row < 2:
                tracer.transform(row, {"email": "x@example.com"})
        assert tracer.finish() == ["extract: ... and 997 more rows not traced (debug traces 3 rows per stage)"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 + 2 + 1
    assert lines[-1].startswith("extract: ... and 997 more")
    assert tracer.finish() == []


def test_tracer_caps_wide_rows_and_long_values() -> None:
    tracer = RowTracer(mode="raw", keep=True)
    line = tracer.extract(1, {f"f{i}": "x" * 1000 for i in range(80)})
    assert line is not None and len(line) < 1100 and line.endswith("...")
    assert "x" * 201 not in line


def test_tracer_follows_the_definition() -> None:
    assert RowTracer.for_definition(SourceDefinition.model_validate(_plain())) is None
    tracer = RowTracer.for_definition(SourceDefinition.model_validate({**_plain(), "debug": True}))
    assert tracer is not None and tracer.mode == "masked"  # reports.values' default (raw) is not inherited
    for values in ("raw", "masked", "hashed"):
        spec = SourceDefinition.model_validate({**_plain(), "debug": True, "reports": {"values": values}})
        assert debug_value_mode(spec) == values
    with pytest.raises(ValueError):
        RowTracer(mode="clear")


def test_module_constants_agree_with_the_spec() -> None:
    assert webhooks.NOTIFICATION_EVENTS == ("sync_completed", "sync_failed", "batch_completed")


def test_a_dag_run_posts_sync_completed_and_a_failed_one_sync_failed(
    tmp_path: Any,
    webhook_receiver: HttpReceiver,
    webhook_conn: str,
    secret: str,
    brevo_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> None:
    """Wired by the DAG factory: the load's success callback and every task's failure callback."""
    hooks = (
        f"notifications: {{webhooks: [{{url_conn_id: {CONN_ID}, events: [sync_completed, sync_failed, "
        "batch_completed]}]}\n"
    )
    good = drop_folder_definition(
        tmp_path / "good", brevo_sandbox, monkeypatch, "id,email\n1,a@example.com\n", extra=hooks
    )
    assert set(task_states(run_dag(build(good, f"file://{tmp_path}/staging"))).values()) == {"success"}
    broken = drop_folder_definition(
        tmp_path / "broken",
        brevo_sandbox,
        monkeypatch,
        "id,email\n1,a@example.com\n",
        mapping="{email: EMAIL, id: NO_SUCH_ATTRIBUTE}",
        extra=hooks,
    )
    assert task_states(run_dag(build(broken, f"file://{tmp_path}/staging")))["map"] == "failed"

    received = webhook_receiver.wait_for(3)
    by_event = {r.json()["event"]: r for r in received}
    assert set(by_event) == {"sync_completed", "sync_failed", "batch_completed"}  # the failed run sent no batch
    batch = by_event["batch_completed"].json()
    assert batch["run"]["batch"] == 1 and batch["counts"] == {"accepted": 1, "refused": 0}
    for request in received:
        assert verify_signature(secret, request.header("X-Contactsync-Signature"), request.body)
    assert by_event["sync_completed"].json()["counts"]["created"] == 1
    assert by_event["sync_failed"].json()["source"]["dag_id"] == broken.dag_id

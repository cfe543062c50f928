"""The ``events`` source through Airflow DAG runs (issue 14): a real redis-server (and PostgreSQL) as the
queue, the sandbox as Brevo. Events are put in the queue as the intake would (the intake itself is
tested in test_events_intake.py; one test here goes through it too).

What the final sandbox state must be is computed independently: for each customer, the events applied
once each, in event-time order.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
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
from airflow_provider_contactsync.sources.events.backends import open_event_queue
from airflow_provider_contactsync.sources.events.queue import QueuedEvent

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


def custom(event: str, customer: int, minute: int, *, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    body = {
        "event": f"customer_{event}",
        "event_id": event_id or f"evt-{uuid.uuid4().hex[:12]}",
        "timestamp": (T0 + dt.timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
        "data": {"id": customer, **data},
    }
    return body


class Shop:
    """One events definition, its queue, and runs of its DAG into the sandbox."""

    def __init__(self, root: Path, sandbox: BrevoSandbox, backend: str, conn_id: str, extra: str = "") -> None:
        self.root, self.sandbox, self.backend, self.conn_id = root, sandbox, backend, conn_id
        self.list_id = sandbox.create_list("shop customers")
        self.integration = f"shop{uuid.uuid4().hex[:8]}"
        path = root / f"{self.integration}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                integration: {self.integration}
                source:
                  name: customers
                  type: events
                  platform: custom
                  queue: {{backend: {backend}, conn_id: {conn_id}}}
                destination: {{conn_id: brevo_sync, list_ids: [{self.list_id}]}}
                """
            )
            + textwrap.dedent(extra)
        )
        self.definition = load_definition(path)
        self.runs = 0

    def queue(self) -> Any:
        return open_event_queue(self.backend, self.conn_id, integration=self.integration, source="customers")

    def put(self, *bodies: dict[str, Any] | bytes, delivery_ids: list[str] | None = None) -> None:
        queue = self.queue()
        try:
            for index, body in enumerate(bodies):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                delivery = delivery_ids[index] if delivery_ids else f"dlv-{uuid.uuid4().hex[:12]}"
                assert queue.put(
                    QueuedEvent(delivery, "custom", None, raw, dt.datetime.now(dt.timezone.utc), headers={})
                )
        finally:
            queue.close()

    def run(self) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(self.definition, staging=f"file://{self.root}/staging", default_args={"retries": 0})
        self.runs += 1
        return run_dag(dag, logical_date=T0 + dt.timedelta(days=self.runs))

    @staticmethod
    def summary(dag_run: Any) -> dict[str, Any]:
        return xcom_value(dag_run, "load") or xcom_value(dag_run, "load", key="summary") or {}

    def contacts(self) -> dict[str, dict[str, Any]]:
        return {str(c["attributes"].get("EXT_ID")): c for c in self.sandbox.contacts()}

    def members(self) -> set[str]:
        return {
            str(c["attributes"].get("EXT_ID"))
            for c in self.sandbox.contacts()
            if self.list_id in (c.get("listIds") or [])
        }


def report(summary: dict[str, Any]) -> list[dict[str, str]]:
    with Path(summary["error report"].removeprefix("file://")).open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(params=["redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    fixture = "redis_conn_id" if request.param == "redis" else "postgres_db"
    return request.param, str(request.getfixturevalue(fixture))


@pytest.fixture
def shop_factory(tmp_path: Path, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str) -> Any:
    use_sandbox(monkeypatch, brevo_sandbox)

    def make(backend: tuple[str, str], extra: str = "") -> Shop:
        return Shop(tmp_path, brevo_sandbox, backend[0], backend[1], extra)

    return make


def test_create_partial_update_and_soft_delete_across_runs(shop_factory: Any, backend: tuple[str, str]) -> None:
    shop = shop_factory(backend)
    shop.put(
        custom("created", 1, 0, email="ann@example.com", firstName="Ann", lastName="Lee", acceptsMarketing=True),
        custom("created", 2, 0, email="bob@example.com", firstName="Bob", lastName="Ray"),
    )
    first = shop.run()
    assert task_states(first)["load"] == "success"
    summary = shop.summary(first)
    assert summary["events"] == {
        "claimed": 2, "applied": 2, "duplicate": 0, "stale": 0, "unreadable": 0, "dead-lettered": 0,
        "ignored": 0, "customers": 2,
    }  # fmt: skip
    assert summary["created"] == 2 and summary["events waiting"] == 0
    assert summary["event latency p95 s"] >= summary["event latency p50 s"] >= 0
    contacts = shop.contacts()
    assert contacts["1"]["email"] == "ann@example.com" and contacts["1"]["attributes"]["FIRSTNAME"] == "Ann"
    assert shop.members() == {"1", "2"}

    # An update with only `changes` touches only those attributes; a delete unlinks (soft, the default).
    shop.put(
        custom("updated", 1, 5, changes={"firstName": {"old": "Ann", "new": "Anna"}}),
        custom("deleted", 2, 6),
    )
    second = shop.summary(shop.run())
    assert second["events"]["applied"] == 2
    contacts = shop.contacts()
    assert contacts["1"]["attributes"]["FIRSTNAME"] == "Anna"
    assert contacts["1"]["attributes"]["LASTNAME"] == "Lee"  # untouched by the partial update
    assert contacts["1"]["email"] == "ann@example.com"
    assert "2" in contacts and shop.members() == {"1"}  # unlinked, not deleted
    queue = shop.queue()
    try:
        assert queue.depth() == 0  # acknowledged after the load
    finally:
        queue.close()


def test_out_of_order_and_redelivered_events_across_runs(shop_factory: Any, redis_conn_id: str) -> None:
    shop = shop_factory(("redis", redis_conn_id))
    newer = custom("updated", 7, 10, event_id="e-new", email="new@example.com", firstName="New")
    shop.put(custom("created", 7, 0, event_id="e-create", email="old@example.com", firstName="Old", lastName="L"))
    shop.put(newer)
    first = shop.summary(shop.run())
    assert first["events"]["applied"] == 2
    # Late: an older update, then the newer one delivered again (same event id, another delivery).
    shop.put(custom("updated", 7, 5, event_id="e-late", email="late@example.com", firstName="Late"))
    shop.put(newer)
    second_run = shop.run()
    second = shop.summary(second_run)
    assert second["events"]["stale"] == 1 and second["events"]["duplicate"] == 1
    assert second["events"]["applied"] == 0
    contact = shop.contacts()["7"]
    assert contact["email"] == "new@example.com" and contact["attributes"]["FIRSTNAME"] == "New"
    assert contact["attributes"]["LASTNAME"] == "L"
    extracted = xcom_value(second_run, "extract")
    assert extracted["skipped"] == {"duplicate event (applied already)": 1, "stale event (newer events decided it)": 1}


def test_hard_delete_removes_the_contact(shop_factory: Any, redis_conn_id: str) -> None:
    shop = shop_factory(("redis", redis_conn_id), "deletes: {behavior: delete}\n")
    shop.put(custom("created", 3, 0, email="c3@example.com"), custom("created", 4, 0, email="c4@example.com"))
    shop.run()
    shop.put(custom("deleted", 3, 1))
    summary = shop.summary(shop.run())
    assert set(shop.contacts()) == {"4"}
    assert summary["events"]["applied"] == 1


def test_create_without_update_enabled_reports_the_existing_contact(
    shop_factory: Any, redis_conn_id: str, brevo_sandbox: BrevoSandbox
) -> None:
    """The seed's 409: updateEnabled false and the customer already in Brevo is a per-customer outcome."""
    shop = shop_factory(("redis", redis_conn_id))
    shop.definition = load_definition(
        _rewrite(shop, f"destination: {{conn_id: brevo_sync, list_ids: [{shop.list_id}], mode: create_only}}")
    )
    httpx.post(
        f"{brevo_sandbox.url}/contacts",
        headers={"api-key": brevo_sandbox.api_key},
        json={"email": "kim@example.com", "attributes": {"FIRSTNAME": "Kim", "EXT_ID": "9"}},
    ).raise_for_status()
    shop.put(
        custom("created", 9, 0, email="kim@example.com", firstName="Kimberly"),
        custom("created", 10, 0, email="lou@example.com", firstName="Lou"),
        custom("deleted", 10, 1),
    )
    run = shop.run()
    summary = shop.summary(run)
    assert task_states(run)["load"] == "success"
    assert summary["skipped (exists)"] == 1 and summary["created"] == 0
    contacts = shop.contacts()
    assert contacts["9"]["attributes"]["FIRSTNAME"] == "Kim"  # not updated
    assert summary["events"]["ignored"] == 2  # customer 10 created then deleted: a delete is ignored


def _rewrite(shop: Shop, destination: str) -> Path:
    path = shop.root / f"{shop.integration}.yaml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("destination:")]
    path.write_text("\n".join([*lines, destination]) + "\n")
    return path


def test_unreadable_events_are_reported_and_acknowledged(shop_factory: Any, redis_conn_id: str) -> None:
    shop = shop_factory(("redis", redis_conn_id))  # default max_error_rate 5%: unreadable events are no rows
    shop.put(b'{"event": "customer_exploded", "data": {"id": 1}}', custom("created", 5, 0, email="c5@example.com"),
             delivery_ids=["bad-1", "good-1"])  # fmt: skip
    summary = shop.summary(shop.run())
    assert summary["events"]["unreadable"] == 1 and summary["events"]["applied"] == 1
    lines = report(summary)
    assert [(line["row"], line["outcome"]) for line in lines] == [("delivery bad-1", "rejected")]
    assert "unknown event" in lines[0]["reason"]
    assert summary["events waiting"] == 0


def test_an_event_whose_runs_keep_failing_goes_to_the_dead_letter_list(shop_factory: Any, redis_conn_id: str) -> None:
    shop = shop_factory(("redis", redis_conn_id))
    shop.definition = shop.definition.model_copy(
        update={"source": shop.definition.source.model_copy(update={"max_attempts": 2})}
    )
    shop.put(custom("created", 6, 0, email="c6@example.com"), delivery_ids=["poison"])
    queue = shop.queue()
    try:  # two runs claimed it and died before their load
        for _ in range(2):
            assert [e.delivery_id for e in queue.claim("contactsync", max_events=10, stale_after_seconds=0)] == [
                "poison"
            ]
    finally:
        queue.close()
    summary = shop.summary(shop.run())
    assert summary["events"]["dead-lettered"] == 1 and summary["events"]["applied"] == 0
    assert [(line["row"], line["outcome"]) for line in report(summary)] == [("delivery poison", "dead-lettered")]
    queue = shop.queue()
    try:
        letters = queue.dead_letters()
        assert [(e.delivery_id, e.attempts) for e, _ in letters] == [("poison", 2)]
        assert "dead-lettered after 2 runs" in letters[0][1]
        assert queue.depth() == 0
    finally:
        queue.close()
    assert "6" not in shop.contacts()


def test_a_run_with_nothing_queued_is_skipped(shop_factory: Any, redis_conn_id: str) -> None:
    shop = shop_factory(("redis", redis_conn_id))
    states = task_states(shop.run())
    assert states["extract"] == "skipped" and states["load"] == "skipped"


# -- the example definitions, one per platform, fed the sample webhooks through the intake ----------

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags" / "definitions"
SAMPLES = Path(__file__).parent / "data" / "events"
SECRET = "whsec-example"


def signed(platform: str, body: bytes) -> dict[str, str]:
    """The signature header each platform sends, computed here independently of the intake."""
    import base64
    import hashlib
    import hmac
    import time

    if platform == "custom":
        t = int(time.time())
        digest = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {"X-Contactsync-Signature": f"t={t},v1={digest}"}
    header = "X-Shopify-Hmac-Sha256" if platform == "shopify" else "X-WC-Webhook-Signature"
    return {header: base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()}


EXAMPLE_CASES = {
    # example file, platform, queue kind, samples of the first run, of the second run
    "shopify": ("shopify_customers_events.yaml", "redis", ["shopify_customers_create.json"],
                ["shopify_customers_update.json", "shopify_customers_delete.json"]),
    "woocommerce": ("woocommerce_customers_events.yaml", "redis", ["woocommerce_customer_created.json"],
                    ["woocommerce_customer_updated.json", "woocommerce_customer_deleted.json"]),
    "custom": ("webshop_customers_events.yaml", "postgres", ["custom_customer_created.json"],
               ["custom_customer_updated.json", "custom_customer_deleted.json"]),
}  # fmt: skip


@pytest.mark.parametrize("platform", sorted(EXAMPLE_CASES))
def test_each_platform_example_syncs_its_sample_webhooks(
    platform: str, tmp_path: Path, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    from fastapi.testclient import TestClient

    from airflow_provider_contactsync.dag_factory import build_dag
    from airflow_provider_contactsync.sources.events.intake import endpoint_conn_id
    from airflow_provider_contactsync.sources.events.intake_cli import create_app

    file, kind, first, second = EXAMPLE_CASES[platform]
    definition = load_definition(EXAMPLES / file)
    queue_conn = str(request.getfixturevalue("redis_conn_id" if kind == "redis" else "postgres_db"))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{definition.source.queue.conn_id.upper()}", os.environ[f"AIRFLOW_CONN_{queue_conn.upper()}"]
    )
    use_sandbox(monkeypatch, brevo_sandbox, "brevo_default")
    endpoint = {
        "conn_type": "generic",
        "password": SECRET,
        "extra": {"platform": platform, "queue": kind, "queue_conn_id": definition.source.queue.conn_id},
    }
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{endpoint_conn_id(definition.integration, 'customers').upper()}", json.dumps(endpoint)
    )
    deliveries = json.loads((SAMPLES / "deliveries.json").read_text())
    run = 0

    def post_and_run(samples: list[str]) -> dict[str, Any]:
        nonlocal run
        with TestClient(create_app()) as client:
            for name in samples:
                body = (SAMPLES / name).read_bytes()
                headers = {**deliveries[name]["headers"], **signed(platform, body)}
                answer = client.post(f"/webhooks/{definition.integration}/customers", content=body, headers=headers)
                assert answer.status_code == 200, answer.text
        run += 1
        dag = build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0})
        dag_run = run_dag(dag, logical_date=T0 + dt.timedelta(days=run))
        assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
        return xcom_value(dag_run, "load")

    summary = post_and_run(first)
    assert (summary["events"]["applied"], summary["created"]) == (1, 1)
    customer_id = str(json.loads((SAMPLES / first[0]).read_bytes()).get("data", {}).get("id") or
                      json.loads((SAMPLES / first[0]).read_bytes())["id"])  # fmt: skip
    created = {str(c["attributes"].get("EXT_ID")): c for c in brevo_sandbox.contacts()}[customer_id]
    assert created["attributes"]["FIRSTNAME"] in ("Jane", "John")

    summary = post_and_run(second)
    assert summary["events"]["applied"] == 2 and summary["events"]["unreadable"] == 0
    after = {str(c["attributes"].get("EXT_ID")): c for c in brevo_sandbox.contacts()}
    if platform == "shopify":  # hard delete
        assert customer_id not in after
    elif platform == "woocommerce":  # soft: unlinked from the list (the update before the delete is moot)
        assert 2 not in after[customer_id]["listIds"]
    else:  # custom, soft: blacklisted, the phone from `changes` kept
        assert after[customer_id]["emailBlacklisted"] is True
        assert after[customer_id]["attributes"]["LASTNAME"] == "Smith"


def test_dag_docs_name_the_queue_and_the_intake_route() -> None:
    from airflow_provider_contactsync.dag_factory.docs import dag_doc_md

    text = dag_doc_md(load_definition(EXAMPLES / "webshop_customers_events.yaml"))
    assert "postgres queue of connection `webshop_pg`" in text
    assert "/contactsync/webhooks/webshop/customers" in text and "dead-letter" in text


def test_brevo_failing_keeps_the_events_queued_until_a_run_loads_them_then_dead_letters_them(
    shop_factory: Any, redis_conn_id: str, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5xx retried by the hook (with backoff), then by the next runs; after max_attempts runs, set aside."""
    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key,
            "extra": {"poll_interval": 0.01, "max_retries": 1}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_SYNC", json.dumps(conn))
    shop = shop_factory(("redis", redis_conn_id))
    shop.definition = shop.definition.model_copy(
        update={"source": shop.definition.source.model_copy(update={"max_attempts": 2})}
    )
    shop.put(custom("created", 21, 0, email="c21@example.com"), delivery_ids=["first"])
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=503, times=1000)
    assert task_states(shop.run())["load"] == "failed"
    assert len(brevo_sandbox.requests("POST", "/v3/contacts/import")) == 2  # the hook tried twice
    queue = shop.queue()
    try:
        assert queue.depth() == 1  # not acknowledged: the next run gets it again
    finally:
        queue.close()
    brevo_sandbox.clear_faults()
    summary = shop.summary(shop.run())
    assert summary["events"]["applied"] == 1 and "21" in shop.contacts()

    shop.put(custom("created", 22, 0, email="c22@example.com"), delivery_ids=["doomed"])
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=503, times=1000)
    for _ in range(2):  # two runs claim it and fail
        assert task_states(shop.run())["load"] == "failed"
    brevo_sandbox.clear_faults()
    summary = shop.summary(shop.run())
    assert summary["events"]["dead-lettered"] == 1 and "22" not in shop.contacts()
    queue = shop.queue()
    try:
        assert [(event.delivery_id, event.attempts) for event, _ in queue.dead_letters()] == [("doomed", 2)]
        assert queue.depth() == 0
    finally:
        queue.close()


def test_debug_traces_each_customers_events_masked(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, redis_conn_id: str, monkeypatch: pytest.MonkeyPatch,
    airflow_db: str, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    use_sandbox(monkeypatch, brevo_sandbox)
    shop = Shop(tmp_path, brevo_sandbox, "redis", redis_conn_id, "debug: true\n")
    created = custom("created", 31, 0, event_id="e-31", email="jane.doe@example.com", firstName="Jane")
    shop.put(created, created)  # the same event delivered twice
    assert task_states(shop.run())["load"] == "success"
    text = "".join(capfd.readouterr())
    lines = [line for line in text.splitlines() if "extract row" in line]  # row keys are masked too: 31 is 3*
    assert any("row 3*: duplicate: event e-31 is in this run more than once; applied once" in line for line in lines), (
        lines
    )
    assert any("row 3*: id='3*', email='j***@example.com'" in line for line in lines)
    assert "jane.doe@example.com" not in text

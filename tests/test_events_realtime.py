"""Realtime events sources (issue 14 part 3): wake-ups published by the intake, an AssetWatcher schedules the DAG.

- the wake channel, the throttle rule (at most one publish per interval per source, never dropping
  the last wake of a burst) and ``publish_wake`` against a real redis-server, subscribed to here;
- the intake (both mounts) publishing after a new delivery is queued, and answering 200 when the
  publish fails;
- the DAG factory: a realtime source scheduled on its wake asset, or on the asset or its cron;
- end to end in real Airflow processes: a signed webhook to the standalone intake, the triggerer's
  watcher, an asset-triggered DAG run (``test_a_webhook_wakes_the_dag_through_the_triggerer``).
"""

from __future__ import annotations

import json
import logging
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers.processes import free_port
from test_events_intake import (  # the intake's fixtures and helpers, shared
    SECRET,
    Poster,
    airflow_api,  # noqa: F401 - fixture
    claimed,
    intake,  # noqa: F401 - fixture
    sample,
    shopify_headers,
    standalone,  # noqa: F401 - fixture
)

from airflow_provider_contactsync.core.spec import parse_definition
from airflow_provider_contactsync.dag_factory import build_dag
from airflow_provider_contactsync.sources.events import intake as intake_module
from airflow_provider_contactsync.sources.events import wake
from airflow_provider_contactsync.sources.events.intake import endpoint_conn_id
from airflow_provider_contactsync.state import source_asset

WAIT = 10.0  # seconds a subscriber waits for a message before the test fails


def subscribe(redis_server: Any, integration: str, source: str) -> Any:
    """A pub/sub subscription to the source's wake channel, confirmed before returning."""
    client = redis_server.client()
    pubsub = client.pubsub()
    pubsub.owner = client  # the client's pool closes the subscription's connection when collected
    pubsub.subscribe(wake.wake_channel(integration, source))
    confirmation = pubsub.get_message(timeout=WAIT)
    assert confirmation is not None and confirmation["type"] == "subscribe"
    return pubsub


def next_message(pubsub: Any, timeout: float = WAIT) -> dict[str, Any] | None:
    """The next published message (blocking read with a deadline), or None when none came."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == "message":
            return message
    return None


def wait_until_settled() -> None:
    """Wait for the module's throttle to have no trailing publish pending (a test's wakes are all out)."""
    deadline = time.monotonic() + WAIT
    while wake._throttle.pending():
        assert time.monotonic() < deadline, "a trailing wake-up never fired"
        time.sleep(0.01)  # polling interval


# --- the channel and the throttle ---------------------------------------------------------------------


def test_the_wake_channel_names_the_integration_and_source() -> None:
    assert wake.wake_channel("shop", "customers") == "contactsync:wake:shop:customers"


class Recorder:
    """A publish function recording when each publish started; may be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.started: list[float] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, key: Any) -> None:
        with self.lock:
            self.started.append(time.monotonic())
        if self.fail:
            raise ConnectionError("redis is down")


def settle(throttle: wake.WakeThrottle) -> None:
    deadline = time.monotonic() + WAIT
    while throttle.pending():
        assert time.monotonic() < deadline
        time.sleep(0.005)  # polling interval


def test_a_lone_wake_is_published_at_once() -> None:
    publish = Recorder()
    throttle = wake.WakeThrottle(publish, interval=0.2)
    before = time.monotonic()
    throttle.wake("a")
    assert len(publish.started) == 1 and publish.started[0] >= before
    assert not throttle.pending()


def test_a_publish_under_way_is_pending_until_it_returns() -> None:
    """Waiting for pending() to end must include a publish that has started (and its failure log)."""
    started, release = threading.Event(), threading.Event()

    def publish(key: Any) -> None:
        started.set()
        assert release.wait(WAIT)
        raise ConnectionError("redis is down")

    throttle = wake.WakeThrottle(publish, interval=10.0)
    caller = threading.Thread(target=throttle.wake, args=("a",))
    caller.start()
    assert started.wait(WAIT)
    assert throttle.pending()  # out of the timer slot, still publishing
    release.set()
    caller.join(WAIT)
    assert not caller.is_alive() and not throttle.pending()


@pytest.mark.parametrize("pause", [0.0, 0.001, 0.02])
def test_a_burst_is_throttled_and_its_last_wake_is_never_dropped(pause: float) -> None:
    publish = Recorder()
    interval = 0.1
    throttle = wake.WakeThrottle(publish, interval=interval)
    wakes: list[float] = []
    start = time.monotonic()
    for _ in range(60):
        wakes.append(time.monotonic())
        throttle.wake("a")
        if pause:
            time.sleep(pause)  # the spacing of the burst's events, not a synchronisation
    settle(throttle)
    elapsed = time.monotonic() - start
    starts = publish.started
    # every wake is followed by a publish that starts after it, at most about an interval later
    for at in wakes:
        assert any(at <= started <= at + interval + 0.5 for started in starts), (at, starts)
    assert starts[-1] >= wakes[-1]
    # at most one publish per interval (timers may fire a hair early on some clocks)
    assert all(b - a >= interval * 0.9 for a, b in zip(starts, starts[1:], strict=False)), starts
    assert len(starts) <= elapsed / interval + 2
    assert len(starts) < len(wakes)


def test_sources_are_throttled_apart() -> None:
    publish = Recorder()
    throttle = wake.WakeThrottle(publish, interval=10.0)
    throttle.wake("a")
    throttle.wake("b")
    assert len(publish.started) == 2  # b's wake did not wait for a's interval
    throttle.wake("a")
    assert throttle.pending() and len(publish.started) == 2  # a's second wake waits (10 s here)


def test_a_failing_publish_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    publish = Recorder(fail=True)
    throttle = wake.WakeThrottle(publish, interval=0.05)
    with caplog.at_level(logging.WARNING, logger=wake.__name__):
        throttle.wake("a")  # no exception
        throttle.wake("a")
        settle(throttle)
    assert len(publish.started) == 2  # the trailing publish was tried too
    assert caplog.text.count("not published") == 2


# --- publish_wake against a real Redis ------------------------------------------------------------------


def test_publish_wake_reaches_a_subscriber_through_redis_hook(redis_server: Any, redis_conn_id: str) -> None:
    pubsub = subscribe(redis_server, "shop", "direct")
    try:
        before = time.time()
        wake.publish_wake(redis_conn_id, "shop", "direct")
        message = next_message(pubsub)
        assert message is not None, "no wake-up arrived"
        assert message["channel"] == b"contactsync:wake:shop:direct"
        body = json.loads(message["data"])
        assert (body["integration"], body["source"]) == ("shop", "direct")
        assert body["at"] >= before - 1
        wait_until_settled()
    finally:
        pubsub.close()


def test_publish_wake_to_a_redis_that_is_down_returns_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead = "contactsync_test_dead_wake_redis"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{dead.upper()}", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": free_port()})
    )
    with caplog.at_level(logging.WARNING, logger=wake.__name__):
        wake.publish_wake(dead, "shop", "down")
        wait_until_settled()
    assert "not published" in caplog.text
    # A Redis that accepts and never answers costs the timeout, not a hang: the client is bounded.
    kwargs = wake._publisher._client(dead).connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == wake.SOCKET_TIMEOUT_SECONDS


# --- the intake publishes -------------------------------------------------------------------------------


def set_realtime_endpoint(monkeypatch: pytest.MonkeyPatch, source: str, queue_conn_id: str, **extra: Any) -> None:
    conn = {
        "conn_type": "generic",
        "password": SECRET,
        "extra": {"platform": "shopify", "queue": "redis", "queue_conn_id": queue_conn_id, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{endpoint_conn_id('shop', source).upper()}", json.dumps(conn))


class Spy:
    """Wraps the intake's publish_wake: records each call, then publishes for real."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.finished = 0
        self._changed = threading.Condition()

    def __call__(self, conn_id: str, integration: str, source: str) -> None:
        self.calls.append((conn_id, integration, source))
        try:
            wake.publish_wake(conn_id, integration, source)
        finally:
            with self._changed:
                self.finished += 1
                self._changed.notify_all()

    def wait_finished(self, count: int) -> None:
        """Wait until ``count`` calls returned: behind Airflow's middleware the intake's background
        task (the wake) may still run after the test client has the answer."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.finished >= count, timeout=WAIT), "the wake never returned"


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    recorder = Spy()
    monkeypatch.setattr(intake_module, "publish_wake", recorder)
    return recorder


def test_a_queued_delivery_wakes_its_realtime_source(
    intake: Poster,  # noqa: F811 - fixture
    redis_server: Any,
    redis_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    spy: Spy,
) -> None:
    set_realtime_endpoint(monkeypatch, "realtime", redis_conn_id, wake_conn_id=redis_conn_id)
    pubsub = subscribe(redis_server, "shop", "realtime")
    try:
        body = sample("shopify_customers_create.json")
        response = intake.post("realtime", body, shopify_headers(body, webhook_id="rt-1"))
        assert (response.status_code, response.json()["status"]) == (200, "queued"), response.text
        message = next_message(pubsub)
        assert message is not None, "no wake-up arrived"
        assert json.loads(message["data"])["source"] == "realtime"
        [event] = claimed(redis_conn_id, "realtime")  # the event was stored before the wake
        assert event.delivery_id == "rt-1"

        # the same delivery again is a duplicate: stored once, nothing to wake for
        again = intake.post("realtime", body, shopify_headers(body, webhook_id="rt-1"))
        assert again.json()["status"] == "duplicate"
        assert spy.calls == [(redis_conn_id, "shop", "realtime")]
        wait_until_settled()
    finally:
        pubsub.close()


def test_a_source_without_wake_conn_id_publishes_nothing(
    intake: Poster,  # noqa: F811 - fixture
    redis_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    spy: Spy,
) -> None:
    set_realtime_endpoint(monkeypatch, "batch", redis_conn_id)
    body = sample("shopify_customers_create.json")
    assert intake.post("batch", body, shopify_headers(body)).json()["status"] == "queued"
    assert spy.calls == []


def test_a_failing_wake_still_answers_200_and_the_event_is_stored(
    intake: Poster,  # noqa: F811 - fixture
    redis_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    spy: Spy,
) -> None:
    dead = "contactsync_test_dead_wake_redis"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{dead.upper()}", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": free_port()})
    )
    set_realtime_endpoint(monkeypatch, "realtime", redis_conn_id, wake_conn_id=dead)
    body = sample("shopify_customers_create.json")
    with caplog.at_level(logging.WARNING, logger=wake.__name__):
        response = intake.post("realtime", body, shopify_headers(body, webhook_id="rt-down"))
        spy.wait_finished(1)
        wait_until_settled()
    assert (response.status_code, response.json()["status"]) == (200, "queued"), response.text
    assert spy.calls == [(dead, "shop", "realtime")]
    assert "not published" in caplog.text
    assert [event.delivery_id for event in claimed(redis_conn_id, "realtime")] == ["rt-down"]


@pytest.mark.parametrize("value", [5, "", ["redis"]])
def test_a_wake_conn_id_that_is_not_a_connection_id_is_500(
    standalone: Any,  # noqa: F811 - fixture
    redis_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    value: Any,
) -> None:
    set_realtime_endpoint(monkeypatch, "realtime", redis_conn_id, wake_conn_id=value)
    body = sample("shopify_customers_create.json")
    response = Poster(standalone, "/webhooks").post("realtime", body, shopify_headers(body))
    assert response.status_code == 500
    assert claimed(redis_conn_id, "realtime") == []


# --- the DAG factory ------------------------------------------------------------------------------------


def events_definition(schedule: str = "manual", sync_mode: str = "realtime", queue: str = "") -> str:
    queue = queue or "{backend: redis, conn_id: shop_redis}"
    return textwrap.dedent(
        f"""\
        integration: shop
        source:
          name: customers
          type: events
          platform: shopify
          sync_mode: {sync_mode}
          queue: {queue}
        schedule: "{schedule}"
        destination: {{conn_id: brevo_sync, list_ids: [3]}}
        """
    )


def watcher_trigger(asset: Any) -> tuple[str, dict[str, Any]]:
    [watcher] = asset.watchers
    return watcher.trigger.serialize()


def test_the_wake_asset_is_watched_on_the_wake_channel_and_is_not_the_load_outlet() -> None:
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    asset = wake.wake_asset("shop", "customers", "shop_redis")
    assert (asset.name, asset.uri) == ("contactsync/shop/customers/events", "x-contactsync-events://shop/customers")
    assert (asset.name, asset.uri) != (source_asset("shop", "customers").name, source_asset("shop", "customers").uri)
    [watcher] = asset.watchers
    from airflow.triggers.base import BaseEventTrigger

    assert isinstance(watcher.trigger, BaseEventTrigger)  # what an AssetWatcher accepts
    classpath, kwargs = watcher.trigger.serialize()  # what the triggerer stores and runs
    # ... exactly what the common-messaging trigger would store (without its 2.3 s import at every parse)
    assert (classpath, kwargs) == MessageQueueTrigger(scheme="redis+pubsub", **kwargs).serialize()
    assert classpath == "airflow.providers.redis.triggers.redis_await_message.AwaitMessageTrigger"
    assert kwargs == {
        "channels": ["contactsync:wake:shop:customers"],
        "redis_conn_id": "shop_redis",
        "poll_interval": wake.POLL_INTERVAL_SECONDS,
    }
    assert wake.POLL_INTERVAL_SECONDS <= 1


def test_a_manual_realtime_source_is_scheduled_on_its_wake_asset_only() -> None:
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    dag = build_dag(parse_definition(events_definition()), register=False)
    assert isinstance(dag.timetable, AssetTriggeredTimetable)
    assert dag.timetable.asset_condition == wake.wake_asset("shop", "customers", "shop_redis")
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    outlets = {(a.name, a.uri) for task in dag.tasks for a in task.outlets}
    assert ("contactsync/shop/customers/events", "x-contactsync-events://shop/customers") not in outlets


@pytest.mark.parametrize(("schedule", "cron"), [("*/30 * * * *", "*/30 * * * *"), ("hourly", "@hourly")])
def test_a_realtime_source_with_a_schedule_runs_on_its_asset_or_the_cron(schedule: str, cron: str) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    dag = build_dag(parse_definition(events_definition(schedule=schedule)), register=False)
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition == wake.wake_asset("shop", "customers", "shop_redis")
    assert dag.timetable.timetable == CronTriggerTimetable(cron, timezone="UTC")
    assert dag.max_active_runs == 1


def test_a_batch_events_source_stays_on_its_cron() -> None:
    dag = build_dag(parse_definition(events_definition(schedule="daily", sync_mode="batch")), register=False)
    from airflow.sdk import CronTriggerTimetable

    assert dag.schedule == "@daily"
    assert isinstance(dag.timetable, CronTriggerTimetable)


def test_a_postgres_queue_wakes_through_its_wake_connection() -> None:
    queue = "{backend: postgres, conn_id: shop_pg, wake_conn_id: wake_redis}"
    dag = build_dag(parse_definition(events_definition(queue=queue)), register=False)
    classpath, kwargs = watcher_trigger(dag.timetable.asset_condition)
    assert kwargs["redis_conn_id"] == "wake_redis"


def test_the_realtime_dag_serialises_with_its_watcher() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dag(parse_definition(events_definition(schedule="*/30 * * * *")), register=False)
    data = DagSerialization.to_dict(dag)
    timetable = data["dag"]["timetable"]
    assert timetable["__type"] == "airflow.timetables.assets.AssetOrTimeSchedule"
    [watcher] = timetable["__var"]["asset_condition"]["watchers"]
    assert watcher["trigger"]["classpath"].endswith("AwaitMessageTrigger")
    assert watcher["trigger"]["kwargs"]["channels"] == ["contactsync:wake:shop:customers"]
    restored = DagSerialization.from_dict(data)
    assert restored.max_active_runs == 1
    assert restored.timetable.asset_condition.name == "contactsync/shop/customers/events"


def test_load_dags_builds_the_realtime_dag_from_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "shop.yaml").write_text(events_definition(schedule="daily"))
    (tmp_path / "contactsync_dags.py").write_text(
        "from airflow_provider_contactsync.dag_factory import load_dags; load_dags()\n"
    )
    bag = DagBag(dag_folder=str(tmp_path), load_op_links=False)
    assert bag.import_errors == {}
    dag = bag.dags["contactsync__shop__customers"]
    assert dag.timetable.asset_condition.name == "contactsync/shop/customers/events"


# --- end to end: real Airflow processes -------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"
RT_INTEGRATION, RT_SOURCE = "rtshop", "customers"
RT_DAG = f"contactsync__{RT_INTEGRATION}__{RT_SOURCE}"
PARSE_TIMEOUT = 120.0
WATCH_TIMEOUT = 120.0  # the unpaused DAG's next parse registers the watcher, the triggerer starts it
RUN_TIMEOUT = 240.0


def custom_delivery(event: str, customer: int, minute: int, **data: Any) -> tuple[bytes, dict[str, str]]:
    """A signed delivery of the custom shape (its own event id and delivery id)."""
    from airflow_provider_contactsync.sources.events.signatures import sign_custom

    event_id = f"{event}-{customer}-{minute}"
    body = json.dumps(
        {
            "event": f"customer_{event}",
            "event_id": event_id,
            "timestamp": f"2026-11-20T08:{minute:02d}:00Z",
            "data": {"id": customer, **data},
        }
    ).encode()
    headers = {"X-Contactsync-Signature": sign_custom(SECRET, body), "X-Contactsync-Delivery-Id": f"d-{event_id}"}
    return body, headers


class Runs:
    """The realtime DAG's runs and asset events, read from the metadata database."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def all(self) -> list[dict[str, Any]]:
        rows = self.services.query(
            "SELECT run_id, run_type, state, start_date, end_date FROM dag_run WHERE dag_id = %s ORDER BY id", RT_DAG
        )
        return [dict(zip(("run_id", "run_type", "state", "start_date", "end_date"), row, strict=True)) for row in rows]

    def asset_triggered(self) -> list[dict[str, Any]]:
        return [run for run in self.all() if run["run_type"] == "asset_triggered"]

    def queued_wakes(self) -> int:
        """AssetDagRunQueue rows: asset events waiting for the next run (one row however many events)."""
        return self.services.query("SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = %s", RT_DAG)[0][0]

    def wake_events(self) -> list[dict[str, Any]]:
        rows = self.services.query(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s ORDER BY e.id",
            f"contactsync/{RT_INTEGRATION}/{RT_SOURCE}/events",
        )
        return [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]


def task_logs(services: Any, run_id: str) -> str:
    """The run's task logs as the worker wrote them (for assertion messages)."""
    folder = services.home / "logs" / f"dag_id={RT_DAG}" / f"run_id={run_id}"
    logs = sorted(folder.glob("*/*.log"))
    return "\n".join(f"--- {path.parent.name} ---\n{path.read_text(errors='replace')[-3000:]}" for path in logs)


@pytest.mark.slow
def test_a_webhook_wakes_the_dag_through_the_triggerer(
    tmp_path_factory: pytest.TempPathFactory,
    airflow_services_factory: Any,
    redis_server: Any,
    redis_conn_id: str,
    brevo_sandbox: Any,
    standalone: Any,  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    list_id = brevo_sandbox.create_list("shop customers")
    dags = tmp_path_factory.mktemp("realtime") / "dags"
    (dags / "definitions").mkdir(parents=True)
    shutil.copy(EXAMPLES / "contactsync_dags.py", dags / "contactsync_dags.py")  # the shipped one-line file
    (dags / "definitions" / "rtshop.yaml").write_text(
        textwrap.dedent(
            f"""\
            integration: {RT_INTEGRATION}
            source:
              name: {RT_SOURCE}
              type: events
              platform: custom
              sync_mode: realtime
              queue: {{backend: redis, conn_id: {redis_conn_id}}}
            # the safety sweep: its latest tick (January 1st) runs once at unpause (catchup is off), not again
            schedule: "0 0 1 1 *"
            destination: {{conn_id: brevo_sync, list_ids: [{list_id}]}}
            """
        )
    )
    brevo = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    services = airflow_services_factory(
        dags,
        connections={redis_conn_id: json.loads(redis_server.airflow_connection()), "brevo_sync": brevo},
    )
    # the intake (standalone app, in this process) writes the same queue and publishes the wake-ups
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{endpoint_conn_id(RT_INTEGRATION, RT_SOURCE).upper()}",
        json.dumps(
            {
                "conn_type": "generic",
                "password": SECRET,
                "extra": {
                    "platform": "custom",
                    "queue": "redis",
                    "queue_conn_id": redis_conn_id,
                    "wake_conn_id": redis_conn_id,
                },
            }
        ),
    )
    shop = Poster(standalone, "/webhooks")
    runs = Runs(services)
    channel = wake.wake_channel(RT_INTEGRATION, RT_SOURCE)
    watcher = redis_server.client()

    def subscribers() -> int:
        return dict(watcher.pubsub_numsub(channel)).get(channel.encode(), 0)

    def post(event: str, customer: int, minute: int, **data: Any) -> None:
        response = shop.post(RT_SOURCE, *custom_delivery(event, customer, minute, **data), integration=RT_INTEGRATION)
        assert (response.status_code, response.json()["status"]) == (200, "queued"), response.text

    figures: dict[str, float | bool] = {}
    services.wait_for(lambda: RT_DAG in services.dag_ids(), timeout=PARSE_TIMEOUT)
    assert subscribers() == 0  # a paused DAG's asset has no watcher running
    services.unpause(RT_DAG)
    started = time.monotonic()
    services.wait_for(lambda: subscribers() >= 1, timeout=WATCH_TIMEOUT, interval=0.1)
    figures["unpause to watcher subscribed s"] = time.monotonic() - started
    # The sweep's latest tick runs once at unpause; it finds the queue empty.
    [sweep] = services.wait_for(
        lambda: (found := runs.all()) and all(run["state"] in ("success", "failed") for run in found) and found,
        timeout=RUN_TIMEOUT,
    )
    assert (sweep["run_type"], sweep["state"]) == ("scheduled", "success"), services.logs()

    # 1. A webhook: queued, its wake-up published, the watcher fires, the scheduler creates a run.
    posted = time.monotonic()
    post("created", 1, 0, email="ann@example.com", firstName="Ann", lastName="Lee")
    first = services.wait_for(lambda: runs.asset_triggered(), timeout=WATCH_TIMEOUT, interval=0.05)[0]
    figures["webhook to asset-triggered run created s"] = time.monotonic() - posted
    [event] = runs.wake_events()
    assert event["from_trigger"] is True
    assert event["payload"]["channel"] == channel
    assert json.loads(event["payload"]["data"])["source"] == RT_SOURCE
    consumed = services.query(
        "SELECT count(*) FROM dagrun_asset_event ae JOIN dag_run r ON r.id = ae.dag_run_id WHERE r.run_id = %s",
        first["run_id"],
    )
    assert consumed == [(1,)]

    # The watcher's trigger returned after its event; the triggerer starts it again.
    services.wait_for(lambda: subscribers() >= 1, timeout=WATCH_TIMEOUT, interval=0.05)
    figures["webhook to watcher subscribed again s"] = time.monotonic() - posted

    # 2. Two more webhooks while the first run is (most likely) still going: one more run, after it.
    first_active = runs.asset_triggered()[0]["state"] in ("queued", "running")
    post("created", 2, 1, email="bob@example.com", firstName="Bob")
    post("updated", 1, 2, firstName="Anna")
    if first_active:
        # the wake was recorded, and no second run started while the first one runs (max_active_runs=1)
        services.wait_for(lambda: runs.queued_wakes() == 1 or len(runs.asset_triggered()) == 2, timeout=60)
    done = services.wait_for(
        lambda: (
            (found := runs.asset_triggered())
            and len(found) == 2
            and all(run["state"] in ("success", "failed") for run in found)
            and found
        ),
        timeout=RUN_TIMEOUT,
    )
    assert [run["run_type"] for run in runs.all()] == ["scheduled", "asset_triggered", "asset_triggered"]
    first, second = done
    assert second["start_date"] >= first["end_date"], "two runs of one source overlapped"
    loaded = []
    for run in done:
        tasks = services.task_states(RT_DAG, run["run_id"])
        # a run woken for events an earlier run already drained finds the queue empty and skips
        assert set(tasks.values()) in ({"success"}, {"skipped"}), (tasks, task_logs(services, run["run_id"]))
        if tasks["load"] == "success":
            loaded.append(services.xcom(RT_DAG, run["run_id"], "load"))
    assert first["state"] == second["state"] == "success"
    assert runs.queued_wakes() == 0

    # 3. The contacts reached Brevo, each event applied once.
    contacts = {str(c["attributes"].get("EXT_ID")): c for c in brevo_sandbox.contacts()}
    assert set(contacts) == {"1", "2"}
    assert contacts["1"]["email"] == "ann@example.com"
    assert contacts["1"]["attributes"]["FIRSTNAME"] == "Anna" and contacts["1"]["attributes"]["LASTNAME"] == "Lee"
    assert all(list_id in (c.get("listIds") or []) for c in contacts.values())
    assert loaded and sum(summary["events"]["applied"] for summary in loaded) == 3
    figures["first run still active at the next webhooks"] = first_active
    print("realtime figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
    if first_active and "Asset-triggered Dags at max_active_runs, deferring" not in services.log_file(
        "scheduler"
    ).read_text(errors="replace"):
        pytest.fail("the scheduler never deferred the second run while the first one was active")

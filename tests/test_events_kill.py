"""A task SIGKILLed while draining the events queue, then retried as Airflow would (issue 14).

Each task runs in its own process (``servers.stage_process``), like a worker runs it. The test kills
one mid-way (extract: once it holds claims; load: once its import reached Brevo), runs it again with
the same run and upstream results (Airflow's retry), and runs the rest. The sandbox must then hold
exactly what applying each distinct event once, in event-time order, gives; the queue must be empty,
and the killed load must not have sent its import again.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.stage_process import STAGES, start_stage, write_definition
from test_sync_semantics import use_sandbox

from airflow_provider_contactsync.core.spec import SourceDefinition
from airflow_provider_contactsync.sandbox import BrevoSandbox
from airflow_provider_contactsync.sources.events.backends import open_event_queue
from airflow_provider_contactsync.sources.events.queue import QueuedEvent
from airflow_provider_contactsync.sources.events.redis_queue import GROUP

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
WAIT = 120.0


def stamp(minutes: float) -> str:
    return (T0 + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def make_events(rng: random.Random, customers: range, *, start: float, updates: int, deletes: int) -> list[dict]:
    """Creates (only for customers new at ``start``), updates with ``changes``, deletes; shuffled."""
    events = []
    for customer in customers:
        if start == 0:
            events.append(
                {"event": "customer_created", "event_id": f"c-{customer}", "timestamp": stamp(0),
                 "data": {"id": customer, "email": f"c{customer}@example.com", "firstName": f"F{customer}"}}
            )  # fmt: skip
    for n in range(updates):
        customer = rng.choice(customers)
        events.append(
            {"event": "customer_updated", "event_id": f"u-{start}-{n}", "timestamp": stamp(start + rng.random() * 50),
             "data": {"id": customer, "changes": {"firstName": {"old": None, "new": f"N{start}-{n}"}}}}
        )  # fmt: skip
    for customer in rng.sample(list(customers), deletes):
        events.append(
            {"event": "customer_deleted", "event_id": f"d-{customer}", "timestamp": stamp(start + 60),
             "data": {"id": customer}}
        )  # fmt: skip
    rng.shuffle(events)
    return events


def expected(events: list[dict]) -> dict[str, dict[str, Any]]:
    """Each distinct event once, per customer in (time, id) order: what the sandbox must hold."""
    distinct = {e["event_id"]: e for e in events}
    state: dict[str, dict[str, Any]] = {}
    for event in sorted(distinct.values(), key=lambda e: (e["timestamp"], e["event_id"])):
        data = event["data"]
        customer = state.setdefault(str(data["id"]), {"deleted": False})
        if event["event"] == "customer_deleted":
            customer["deleted"] = True
            continue
        customer["deleted"] = False
        changes = data.get("changes")
        values = {k: v["new"] for k, v in changes.items()} if changes else {k: v for k, v in data.items() if k != "id"}
        customer.update(values)
    return state


class Drain:
    def __init__(self, root: Path, redis_conn_id: str, sandbox: BrevoSandbox) -> None:
        self.root, self.conn_id, self.sandbox = root, redis_conn_id, sandbox
        self.list_id = sandbox.create_list("customers")
        self.integration = f"shop{uuid.uuid4().hex[:8]}"
        definition = SourceDefinition.model_validate(
            {
                "integration": self.integration,
                "source": {"type": "events", "name": "customers", "platform": "custom",
                           "queue": {"backend": "redis", "conn_id": redis_conn_id}},
                "destination": {"conn_id": "brevo_sync", "list_ids": [self.list_id]},
            }
        )  # fmt: skip
        self.definition = definition.model_dump(mode="json")
        self.runs = 0

    def queue(self) -> Any:
        return open_event_queue("redis", self.conn_id, integration=self.integration, source="customers")

    def put(self, events: list[dict], rng: random.Random, redeliver: int) -> None:
        queue = self.queue()
        try:
            bodies = [*events, *rng.sample(events, redeliver)]  # the same events delivered again
            for body in bodies:
                raw = json.dumps(body).encode()
                event = QueuedEvent(f"dlv-{uuid.uuid4().hex}", "custom", None, raw, dt.datetime.now(dt.timezone.utc))
                assert queue.put(event)
        finally:
            queue.close()

    def state(self, run: int) -> Path:
        path = self.root / f"run-{run}"
        write_definition(path, self.definition)
        return path

    def stage(self, stage: str, state: Path, run_id: str) -> int:
        process = start_stage(stage, state, {}, run_id=run_id)
        return process.wait(timeout=WAIT)

    def run(self, *, kill: str | None = None, poll: Any = None) -> dict[str, Any]:
        """One DAG run: each stage in its process; ``kill`` names the stage killed once ``poll()`` is true."""
        self.runs += 1
        state, run_id = self.state(self.runs), f"run-{self.runs}"
        # Staging is per DAG: runs share the ledger and events state under one base, as in Airflow.
        staging_root = self.root / "staging"
        (state / "staging").unlink(missing_ok=True)
        (state / "staging").symlink_to(staging_root, target_is_directory=True)
        staging_root.mkdir(exist_ok=True)
        killed = False
        for stage in STAGES:
            if stage == kill:
                process = start_stage(stage, state, {}, run_id=run_id)
                while process.poll() is None and not poll():
                    pass  # busy-wait on the condition, not on time
                if process.poll() is None:
                    process.kill()
                    killed = process.wait(timeout=WAIT) == -9
                assert killed, f"{stage} finished before the kill: make the run bigger"
                self.after_kill()
            code = self.stage(stage, state, run_id)  # the retry (or the first and only attempt)
            assert code == 0, (state / f"{stage}.log").read_text()[-3000:]
        return json.loads((state / "xcom.json").read_text())["load"]

    def after_kill(self) -> None:
        self.sandbox.clear_faults()

    def pending(self) -> int:
        info = self.sandbox_redis().xpending(f"contactsync:events:{{{self.integration}:customers}}", GROUP)
        return int(info["pending"])

    def sandbox_redis(self) -> Any:
        from airflow.providers.redis.hooks.redis import RedisHook

        return RedisHook(redis_conn_id=self.conn_id).get_conn()

    def import_recorded(self) -> bool:
        """The load recorded its import as sent and waits for Brevo (the ledger holds the batch)."""
        dag_id = f"contactsync__{self.integration}__customers"
        path = self.root / "staging" / dag_id / "state" / "sent-contacts.sqlite"
        if not path.exists():
            return False
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM batches").fetchone()[0] > 0
        except sqlite3.OperationalError:  # being written: look again
            return False

    def imports(self) -> int:
        return len(self.sandbox.requests("POST", "/v3/contacts/import"))

    def members(self) -> dict[str, dict[str, Any]]:
        contacts = {}
        for contact in self.sandbox.contacts():
            if self.list_id in (contact.get("listIds") or []):
                contacts[str(contact["attributes"]["EXT_ID"])] = contact
        return contacts


@pytest.fixture
def drain(tmp_path: Path, redis_conn_id: str, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch) -> Drain:
    use_sandbox(monkeypatch, brevo_sandbox)
    return Drain(tmp_path, redis_conn_id, brevo_sandbox)


@pytest.mark.parametrize("kill", ["extract", "load"])
def test_a_task_killed_while_draining_loses_no_event_and_applies_none_twice(drain: Drain, kill: str) -> None:
    rng = random.Random(14)
    customers = range(1, 3001)
    first = make_events(rng, customers, start=0, updates=1000, deletes=0)
    drain.put(first, rng, redeliver=100)
    summary = drain.run()
    assert summary["events"]["applied"] + summary["events"]["duplicate"] == len(first) + 100

    second = make_events(rng, customers, start=100, updates=8000, deletes=300)
    late = [dict(e, event_id=f"late-{i}", timestamp=stamp(-1)) for i, e in enumerate(rng.sample(first, 200))]
    drain.put([*second, *late], rng, redeliver=500)
    imports_before = drain.imports()
    if kill == "extract":
        summary = drain.run(kill="extract", poll=lambda: drain.pending() > 0)
    else:
        # Brevo takes its time over the import: the load is killed while it waits for it.
        drain.sandbox.add_fault(method="GET", path="/v3/processes/*", action="delay", ms=10_000)
        summary = drain.run(kill="load", poll=drain.import_recorded)
        assert drain.imports() == imports_before + 1  # the retry settled the import it found, sent nothing again

    model = expected([*first, *second, *late])
    members = drain.members()
    assert set(members) == {cid for cid, c in model.items() if not c["deleted"]}
    wrong = {
        cid: (members[cid]["email"], members[cid]["attributes"].get("FIRSTNAME"))
        for cid in members
        if (members[cid]["email"], members[cid]["attributes"].get("FIRSTNAME"))
        != (model[cid]["email"], model[cid]["firstName"])
    }
    assert wrong == {}
    queue = drain.queue()
    try:
        assert queue.depth() == 0
    finally:
        queue.close()
    events = summary["events"]
    assert events["claimed"] == sum(
        events[k] for k in ("applied", "duplicate", "stale", "unreadable", "dead-lettered", "ignored")
    )

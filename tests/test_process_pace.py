"""The first poll of an import process: from the body's size and the speed observed, within bounds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_brevo_hook import FakeClock  # sleep() advances monotonic()

from airflow_provider_contactsync.hooks._process_pace import MIN_FIRST_POLL, PRIOR_BYTES_PER_SECOND, ProcessPace
from airflow_provider_contactsync.hooks.brevo import DEFAULT_POLL_INTERVAL, BrevoHook

CONN_ID = "brevo_pace"


class Brevo:
    """Accepts imports (process ids from 1) and completes each ``takes`` seconds after it was accepted."""

    def __init__(self, clock: FakeClock, takes: float) -> None:
        self.clock, self.takes = clock, takes
        self.accepted: dict[int, float] = {}
        self.body_sizes: list[int] = []
        self.polls: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/contacts/import"):
            pid = len(self.accepted) + 1
            self.body_sizes.append(len(request.content))
            self.accepted[pid] = self.clock.now
            return httpx.Response(202, json={"processId": pid})
        self.polls.append(self.clock.now)
        pid = int(request.url.path.rsplit("/", 1)[1])
        done = self.clock.now >= self.accepted.get(pid, 0.0) + self.takes
        return httpx.Response(200, json={"id": pid, "name": "IMPORTUSER", "status": "completed" if done else "queued"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def hook_for(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, server: Brevo, **extra: Any) -> BrevoHook:
    conn = {"conn_type": "brevo", "host": "https://brevo.test/v3", "password": "k", "extra": json.dumps(extra)}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return BrevoHook(CONN_ID, sleep=clock.sleep, monotonic=clock.monotonic, transport=httpx.MockTransport(server))


def contacts(count: int, pad: int = 0) -> list[dict[str, Any]]:
    return [{"email": f"c{i}@example.com", "attributes": {"NOTE": "x" * pad}} for i in range(count)]


def test_a_small_import_is_polled_at_the_floor_and_found_done(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    server = Brevo(clock, takes=0.05)
    hook = hook_for(monkeypatch, clock, server)
    ids = hook.import_contacts(contacts(1_000), list_ids=[1])
    [doc] = hook.wait_for_processes(ids)
    assert doc["status"] == "completed"
    assert clock.sleeps == [MIN_FIRST_POLL]  # not the 2 s the connection allows
    assert len(server.polls) == 1


def test_a_large_import_waits_for_its_size_but_never_past_the_ceiling(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    server = Brevo(clock, takes=1.0)
    hook = hook_for(monkeypatch, clock, server)
    hook.wait_for_processes(hook.import_contacts(contacts(2_000, pad=500), list_ids=[1]))
    [size] = server.body_sizes  # ~1.1 MB: due in about half a second at the prior's speed
    assert MIN_FIRST_POLL < clock.sleeps[0] < DEFAULT_POLL_INTERVAL
    assert clock.sleeps[0] == pytest.approx(size / PRIOR_BYTES_PER_SECOND)

    capped = hook_for(monkeypatch, clock, Brevo(clock, takes=0.0), poll_interval=0.3)
    capped.wait_for_processes(capped.import_contacts(contacts(2_000, pad=500), list_ids=[1]))
    assert clock.sleeps[-1] == 0.3  # the connection's poll_interval caps the first poll


def test_the_speed_observed_sets_the_next_first_poll(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    server = Brevo(clock, takes=0.4)  # a slower account than the prior assumes for a small body
    hook = hook_for(monkeypatch, clock, server)
    hook.wait_for_processes(hook.import_contacts(contacts(1_000), list_ids=[1]))
    assert clock.sleeps[0] == MIN_FIRST_POLL and len(server.polls) > 1  # the prior was too hopeful
    learned = hook.pace.bytes_per_second
    assert learned < PRIOR_BYTES_PER_SECOND
    clock.sleeps.clear()
    before = len(server.polls)
    hook.wait_for_processes(hook.import_contacts(contacts(1_000), list_ids=[1]))
    assert clock.sleeps[0] >= 0.4  # at the speed observed, not the prior's
    assert len(server.polls) - before == 1


def test_time_already_spent_since_the_submission_counts(clock: FakeClock) -> None:
    pace = ProcessPace(ceiling=2.0)
    pace.submitted(7, at=clock.now, size=2_000_000)  # due 1 s after its submission
    assert pace.first_wait([7], clock.now + 0.25) == pytest.approx(0.75)
    assert pace.first_wait([7], clock.now + 5) == MIN_FIRST_POLL
    assert pace.first_wait([8], clock.now) is None  # not ours: the hook uses poll_interval


def test_processes_the_hook_did_not_submit_keep_the_connection_interval(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    server = Brevo(clock, takes=0.0)
    hook = hook_for(monkeypatch, clock, server)
    hook.wait_for_processes([42])
    assert clock.sleeps == [DEFAULT_POLL_INTERVAL]


def test_the_pace_is_the_hooks_own(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    make: Callable[[], BrevoHook] = lambda: hook_for(monkeypatch, clock, Brevo(clock, takes=0.0))  # noqa: E731
    first, second = make(), make()
    first.pace.bytes_per_second = 1.0
    assert second.pace.bytes_per_second == PRIOR_BYTES_PER_SECOND

"""Brevo's per-account rate limits shared through Redis (connection extra ``shared_rate_limit``).

Against a real redis-server (``redis_server``) and the sandbox. The windows are checked with an
injected clock; the two-process test counts what reached the sandbox from its request log. No test
sleeps to synchronise or asserts on elapsed time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers.processes import free_port
from servers.redis import RedisServer, start_server

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.hooks._shared_limit import (
    KEEP_MS,
    KEY_PREFIX,
    REDIS_RETRY_SECONDS,
    SharedLimitConfig,
    SharedRateLimiter,
)
from airflow_provider_contactsync.hooks.brevo import BrevoHook, BrevoRateLimitedError
from airflow_provider_contactsync.sandbox import BrevoSandbox

API_KEY = "xkeysib-shared-limit-test-0123456789abcdef"


class Clock:
    """A clock that moves only when told to (or when a hook sleeps on it)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    with redis_server.client() as client:
        client.flushall()
        yield client


def make_limiter(
    redis_server: RedisServer, clock: Callable[[], float] | None, account: str = "acct", **config: Any
) -> SharedRateLimiter:
    config = SharedLimitConfig(redis_conn_id="unused", **config)
    return SharedRateLimiter(config, account_id=account, connect=redis_server.client, clock=clock)


def busiest(times: list[float], window: float) -> int:
    """Most of ``times`` in any half-open stretch ``[t, t + window)``."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times)), default=0)


# -- the windows, with an injected clock -------------------------------------------------------


def test_a_full_window_says_how_long_until_a_place_frees(redis_client: Any, redis_server: RedisServer) -> None:
    clock = Clock()
    limiter = make_limiter(redis_server, clock, contacts_per_second=3, contacts_per_hour=None, margin_seconds=0)
    answers = []
    for step in (0.0, 0.2, 0.2, 0.1, 0.5, 0.1):
        clock.sleep(step)
        answers.append(limiter.acquire("contacts"))
    # t = 0, 0.2, 0.4 taken; 0.5: the place taken at 0 frees at 1.0; 1.0: taken; 1.1: the one of 0.2 frees at 1.2
    assert answers == [0.0, 0.0, 0.0, pytest.approx(0.5), 0.0, pytest.approx(0.1)]


def test_no_second_ever_holds_more_than_the_limit_and_the_budget_is_used(
    redis_client: Any, redis_server: RedisServer
) -> None:
    clock = Clock()
    workers = [make_limiter(redis_server, clock, contacts_per_second=10, margin_seconds=0) for _ in range(3)]
    ready_at = [clock.now] * len(workers)
    rng = random.Random(17)
    taken: list[float] = []
    while clock.now < 1_020.0:
        clock.sleep(rng.uniform(0, 0.03))
        for i, limiter in enumerate(workers):
            if clock.now < ready_at[i]:
                continue
            wait = limiter.acquire("contacts")
            if wait == 0:
                taken.append(round(clock.now, 3))  # the limiter counts in milliseconds, as Redis's clock does
            else:
                ready_at[i] = clock.now + wait
    assert busiest(taken, 1.0) == 10
    assert len(taken) >= 10 * 19  # 20 s at 10 a second, less the last second's rounding


def test_a_refused_request_takes_no_place_in_any_window(redis_client: Any, redis_server: RedisServer) -> None:
    clock = Clock()
    limiter = make_limiter(redis_server, clock, contacts_per_second=5, contacts_per_hour=6, margin_seconds=0)
    second, hour = limiter.keys("contacts")
    assert [second, hour] == [f"{KEY_PREFIX}:{{acct}}:contacts:1s", f"{KEY_PREFIX}:{{acct}}:contacts:3600s"]
    assert [limiter.acquire("contacts") for _ in range(5)] == [0.0] * 5
    assert limiter.acquire("contacts") == pytest.approx(1.0)  # the second is full...
    assert redis_client.zcard(hour) == 5  # ...and the hour did not count the refused request
    clock.sleep(1.0)
    assert limiter.acquire("contacts") == 0.0
    clock.sleep(1.0)
    assert limiter.acquire("contacts") == pytest.approx(3600 - 2.0)  # the hour is full
    assert (redis_client.zcard(second), redis_client.zcard(hour)) == (6, 6)  # the second recorded no 7th either


def test_buckets_and_accounts_do_not_share_places(redis_client: Any, redis_server: RedisServer) -> None:
    clock = Clock()
    limiter = make_limiter(redis_server, clock, contacts_per_second=1, general_per_hour=1)
    other_account = make_limiter(redis_server, clock, account="other", contacts_per_second=1, general_per_hour=1)
    assert limiter.acquire("contacts") == 0.0
    assert limiter.acquire("contacts") > 0
    assert limiter.acquire("general") == 0.0
    assert limiter.acquire("general") > 3000
    assert other_account.acquire("contacts") == 0.0 and other_account.acquire("general") == 0.0


def test_windows_expire_from_redis_when_idle(redis_client: Any, redis_server: RedisServer) -> None:
    limiter = make_limiter(redis_server, Clock())
    limiter.acquire("contacts")
    limiter.acquire("general")
    second, hour = limiter.keys("contacts")
    assert 0 < redis_client.pttl(second) <= 1_050 + KEEP_MS
    assert 3_600_000 < redis_client.pttl(hour) <= 3_600_050 + KEEP_MS


def test_connections_with_other_margins_share_one_log(redis_client: Any, redis_server: RedisServer) -> None:
    clock = Clock()
    tight = make_limiter(redis_server, clock, contacts_per_second=2, contacts_per_hour=None, margin_seconds=0)
    loose = make_limiter(redis_server, clock, contacts_per_second=2, contacts_per_hour=None, margin_seconds=0.5)
    assert tight.keys("contacts") == loose.keys("contacts")
    assert tight.acquire("contacts") == 0.0 and loose.acquire("contacts") == 0.0
    clock.sleep(1.2)  # out of the tight window, still in the loose one: each counts its own
    assert loose.acquire("contacts") == pytest.approx(0.3)
    assert tight.acquire("contacts") == 0.0
    assert loose.acquire("contacts") == pytest.approx(0.3)


def test_redis_clock_when_none_is_injected(redis_client: Any, redis_server: RedisServer) -> None:
    limiter = make_limiter(redis_server, None, contacts_per_second=2, contacts_per_hour=None)
    assert limiter.acquire("contacts") == 0.0
    ((_, score),) = redis_client.zrange(limiter.keys("contacts")[0], 0, -1, withscores=True)
    seconds, micros = redis_client.time()
    assert abs(score - (seconds * 1000 + micros // 1000)) < 60_000


# -- the connection extra -----------------------------------------------------------------------


def test_extra_defaults_are_brevos_general_tier() -> None:
    config = SharedLimitConfig.from_extra({"redis_conn_id": "redis_default"})
    assert config is not None
    assert (config.contacts_per_second, config.contacts_per_hour, config.general_per_hour) == (10, 36_000, 100)
    assert [(w.limit, w.seconds) for w in config.windows("contacts")] == [(10, 1.05), (36_000, 3600.05)]
    assert [(w.limit, w.seconds, w.span) for w in config.windows("general")] == [(100, 3600.05, 3600)]
    assert SharedLimitConfig.from_extra(None) is None and SharedLimitConfig.from_extra({}) is None
    text = '{"redis_conn_id": "r", "contacts_per_second": 20, "contacts_per_hour": null}'
    as_text = SharedLimitConfig.from_extra(text)
    assert as_text is not None and [w.limit for w in as_text.windows("contacts")] == [20]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"contacts_per_second": 10}, "redis_conn_id is required"),
        ({"redis_conn_id": "r", "contact_per_second": 10}, "unknown key(s) contact_per_second"),
        ({"redis_conn_id": "r", "contacts_per_second": 0}, "contacts_per_second must be"),
        ({"redis_conn_id": "r", "general_per_hour": 2.5}, "general_per_hour must be"),
        ({"redis_conn_id": "r", "contacts_per_hour": True}, "contacts_per_hour must be"),
        ({"redis_conn_id": "r", "margin_seconds": -1}, "margin_seconds must be"),
        ({"redis_conn_id": "r", "account": ""}, "account must be"),
        ("[1, 2]", "an object is expected"),
        ("{redis", "not valid JSON"),
    ],
)
def test_extra_mistakes_are_named(extra: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SharedLimitConfig.from_extra(extra)


def test_keys_name_a_hash_of_the_account_never_the_api_key(redis_client: Any, redis_server: RedisServer) -> None:
    config = SharedLimitConfig(redis_conn_id="r")
    url = "https://api.brevo.com/v3"
    account = config.account_id(url, API_KEY)
    assert API_KEY not in account and len(account) == 32
    assert account == config.account_id(url, API_KEY)  # two connections with one key share
    assert account != config.account_id("http://127.0.0.1:8787/v3", API_KEY)  # a sandbox is another account
    named = SharedLimitConfig(redis_conn_id="r", account="acme")
    assert named.account_id(url, API_KEY) == named.account_id(url, "xkeysib-another-key-of-acme")
    limiter = make_limiter(redis_server, Clock(), account=account)
    limiter.acquire("contacts")
    limiter.acquire("general")
    stored = [key.decode() for key in redis_client.scan_iter("*")]
    assert stored and all(key.startswith(f"{KEY_PREFIX}:{{{account}}}:") for key in stored)
    members = [m for key in stored for m in redis_client.zrange(key, 0, -1)]
    assert not any(API_KEY in key for key in stored) and not any(API_KEY.encode() in m for m in members)


# -- through BrevoHook ------------------------------------------------------------------------


def brevo_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str, sandbox: BrevoSandbox, shared: dict[str, Any] | None, **extra: Any
) -> None:
    if shared is not None:
        extra["shared_rate_limit"] = shared
    conn = {"conn_type": "brevo", "host": sandbox.url, "password": sandbox.api_key, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_without_the_extra_nothing_goes_to_redis(
    brevo_sandbox: BrevoSandbox, redis_conn_id: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    brevo_connection(monkeypatch, "brevo_alone", brevo_sandbox, None)
    with BrevoHook("brevo_alone") as hook:
        hook.get_attributes()
        assert hook.http.shared is None
    with redis_server.client() as client:
        assert client.dbsize() == 0


def test_two_hooks_take_turns_in_one_accounts_second(
    brevo_sandbox: BrevoSandbox, redis_conn_id: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = {"redis_conn_id": redis_conn_id, "contacts_per_second": 3, "contacts_per_hour": 1000, "margin_seconds": 0}
    brevo_connection(monkeypatch, "brevo_one", brevo_sandbox, shared)
    brevo_connection(monkeypatch, "brevo_two", brevo_sandbox, shared)  # another connection, the same account
    clock = Clock()
    hooks = [BrevoHook(c, sleep=clock.sleep, monotonic=clock, rand=lambda: 0.0) for c in ("brevo_one", "brevo_two")]
    for _ in range(6):
        for hook in hooks:
            hook.get_attributes()
    _, hour = hooks[0].http.shared.keys("contacts")
    with redis_server.client() as client:
        taken = [score / 1000 for _, score in client.zrange(hour, 0, -1, withscores=True)]
    assert len(taken) == 12 and busiest(taken, 1.0) == 3
    assert sum(h.stats.shared_waits for h in hooks) > 0 and sum(h.stats.rate_limited for h in hooks) == 0
    for hook in hooks:
        hook.close()


def test_a_shared_hourly_budget_used_up_defers_instead_of_collecting_429s(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
    redis_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = brevo_sandbox_factory(other_per_hour=3)
    shared = {"redis_conn_id": redis_conn_id, "general_per_hour": 3}
    brevo_connection(monkeypatch, "brevo_one", sandbox, shared)
    brevo_connection(monkeypatch, "brevo_two", sandbox, shared)
    with BrevoHook("brevo_one") as one, BrevoHook("brevo_two") as two:
        assert one.test_connection()[0] and one.test_connection()[0]  # GET /account: the general budget
        assert two.test_connection()[0]
        with pytest.raises(BrevoRateLimitedError) as info:
            two.http.request("GET", "/account", idempotent=True)
    assert info.value.bucket == "general" and info.value.resume_in > 3000
    answered = [e["status"] for e in sandbox.requests(path_prefix="/v3/account")]
    assert answered == [200, 200, 200]


def test_a_mistake_in_the_extra_is_a_configuration_error(
    brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    brevo_connection(monkeypatch, "brevo_bad", brevo_sandbox, {"redis_conn_id": "r", "contacts_per_second": "ten"})
    with pytest.raises(ConfigurationError, match="'brevo_bad', extra shared_rate_limit: contacts_per_second"):
        BrevoHook("brevo_bad").get_attributes()
    brevo_connection(monkeypatch, "brevo_bad", brevo_sandbox, {"redis_conn_id": "no_such_redis"})
    with BrevoHook("brevo_bad") as hook, pytest.raises(ConfigurationError, match="'no_such_redis' is not an Airflow"):
        hook.get_attributes()
    assert brevo_sandbox.requests() == []


def test_a_password_redis_refuses_is_a_configuration_error_not_an_outage(
    brevo_sandbox: BrevoSandbox, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = json.loads(redis_server.airflow_connection())
    wrong["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_WRONG", json.dumps(wrong))
    brevo_connection(monkeypatch, "brevo_wrong", brevo_sandbox, {"redis_conn_id": "redis_wrong"})
    with BrevoHook("brevo_wrong") as hook, pytest.raises(ConfigurationError, match="'redis_wrong' refused"):
        hook.get_attributes()
    assert brevo_sandbox.requests() == []


# -- Redis down: fail open --------------------------------------------------------------------


def test_redis_unreachable_fails_open_with_one_warning(
    brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    down = json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": free_port(), "extra": {"db": 0}})
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DOWN", down)
    brevo_connection(monkeypatch, "brevo_open", brevo_sandbox, {"redis_conn_id": "redis_down"})
    clock = Clock()
    caplog.set_level(logging.WARNING, logger="airflow_provider_contactsync.hooks.brevo.shared_limit")
    with BrevoHook("brevo_open", sleep=clock.sleep, monotonic=clock) as hook:
        for _ in range(3):
            hook.get_attributes()
        clock.sleep(REDIS_RETRY_SECONDS)  # Redis is tried again, still down: no second warning
        hook.get_attributes()
        assert hook.stats.shared_unavailable == 4 and hook.stats.shared_waits == 0
    assert [e["status"] for e in brevo_sandbox.requests()] == [200] * 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "without the shared limit" in warnings[0]


def test_redis_going_away_and_coming_back(caplog: pytest.LogCaptureFixture) -> None:
    servers = [start_server()]
    try:
        clock = Clock()
        limiter = SharedRateLimiter(
            SharedLimitConfig(redis_conn_id="unused", contacts_per_second=1),
            account_id="acct",
            connect=lambda: servers[-1].client(),
            clock=clock,
            monotonic=clock,
        )
        caplog.set_level(logging.INFO, logger=limiter.log.name)
        assert limiter.acquire("contacts") == 0.0
        servers[0].stop()
        assert limiter.acquire("contacts") is None  # a full second, but Redis is gone: open
        servers.append(start_server())  # back (an empty Redis, on another port)
        assert limiter.acquire("contacts") is None  # not asked again before the retry delay
        clock.sleep(REDIS_RETRY_SECONDS)
        assert limiter.acquire("contacts") == 0.0
        assert limiter.acquire("contacts") == pytest.approx(1.05)
        said = [r.getMessage() for r in caplog.records]
        assert len([m for m in said if "unreachable" in m]) == 1 and any("reachable again" in m for m in said)
        limiter.close()
    finally:
        for server in servers:
            server.stop()


# -- two processes, one account -----------------------------------------------------------------

LIMIT = 10  # Brevo's general tier: /contacts* requests per second
BATCHES = 15
LIST_ADDS = 8


def _sync(conn_id: str, worker: int, list_id: int, start: Any, results: Any) -> None:
    """One process's load-like traffic: batch updates and list adds, after the common start."""
    try:
        hook = BrevoHook(conn_id)
        _ = hook.http  # connection read before the start
        emails = [f"w{worker}.{i:04d}@example.com" for i in range(BATCHES * 100)]
        start.wait()
        for b in range(BATCHES):
            hook.update_contacts_batch([{"email": e, "attributes": {"LASTNAME": f"B{b}"}} for e in emails[b::BATCHES]])
            if b < LIST_ADDS:
                hook.add_to_list(list_id, emails=emails[b * 150 : (b + 1) * 150])
        results.put((worker, {"429": hook.stats.rate_limited, "waits": hook.stats.shared_waits, "error": None}))
        hook.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails with it
        results.put((worker, {"error": f"{type(exc).__name__}: {exc}"}))


def arrivals(sandbox: BrevoSandbox) -> list[float]:
    return sorted(
        dt.datetime.fromisoformat(e["time"]).timestamp() - e["duration_ms"] / 1000
        for e in sandbox.requests(path_prefix="/v3/contacts")
    )


def sandbox_seconds(times: list[float]) -> list[int]:
    """Requests per window as the sandbox counts them: the first request after a window closed opens the next."""
    counts: list[int] = []
    opened = None
    for t in times:
        if opened is None or t - opened >= 1.0:
            opened = t
            counts.append(0)
        counts[-1] += 1
    return counts


@pytest.mark.slow
def test_two_processes_stay_within_the_accounts_limit(
    brevo_sandbox: BrevoSandbox, redis_conn_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id = brevo_sandbox.create_list("both")
    brevo_connection(monkeypatch, "brevo_setup", brevo_sandbox, None)
    with BrevoHook("brevo_setup") as setup:  # the contacts exist (batch updates are all-or-nothing)
        setup.wait_for_processes(
            setup.import_contacts(
                ({"email": f"w{w}.{i:04d}@example.com"} for w in (0, 1) for i in range(BATCHES * 100)),
                list_ids=[list_id],
            ),
            first_interval=0.05,
        )
    brevo_sandbox.configure(contacts_rps=LIMIT)  # Brevo's limit from here on (its windows restart)
    brevo_sandbox.clear_requests()
    brevo_connection(monkeypatch, "brevo_shared", brevo_sandbox, {"redis_conn_id": redis_conn_id})

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each, as two workers would be
    start, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_sync, args=("brevo_shared", w, list_id, start, results)) for w in (0, 1)]
    for proc in procs:
        proc.start()
    start.wait(timeout=120)  # both have read their connection: go
    outcome = dict(results.get(timeout=300) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert all(o["error"] is None for o in outcome.values()), outcome

    log = brevo_sandbox.requests(path_prefix="/v3/contacts")
    assert len(log) == 2 * (BATCHES + LIST_ADDS)
    assert [e for e in log if e["status"] == 429] == []
    assert max(sandbox_seconds(arrivals(brevo_sandbox))) <= LIMIT
    assert sum(o["waits"] for o in outcome.values()) > 0  # they did compete for the account's places

"""Customer events, a burst: N signed webhooks through the intake into the queue, then one run into Brevo.

    python benchmarks/bench_events_burst.py [--events 100000] [--backend redis|postgres] [--concurrency 32]
    python benchmarks/bench_events_burst.py --events 2000        # a smoke run, CI-sized

1. Intake. The standalone intake (``contactsync-webhooks``: its app under uvicorn, in its own process on
   127.0.0.1, access log off) in front of a fresh queue: a redis-server with ``appendfsync always``
   (tests/servers/redis.py, what the queue asks of production) or PostgreSQL (tests/servers/postgres.py,
   fsync off as for every benchmark here). This process POSTs the burst in the custom shape, each signed
   (``X-Contactsync-Signature``) as it is sent, from asyncio with ``--concurrency`` requests in flight,
   each sender on its own keep-alive connection (HTTP/1.1 written by hand: see :func:`post_burst`).
   The burst: ~60% ``customer_created`` (distinct customers), ~30% ``customer_updated`` with ``changes``
   (one or two fields) of a customer created earlier, ~5% ``customer_deleted`` of one, ~5% redeliveries
   of an earlier delivery: half retried with the same delivery id (the intake answers ``duplicate``,
   nothing is stored), half resent under a new delivery id (stored; the sync finds the event id applied
   already). Event times increase with the sending order;
   arrival order differs a little (requests overlap). The server is warmed up first by one request to an
   unknown endpoint (404: the Airflow import and connection lookup a long-running intake has done).
2. Sync. The four operators one after another, each in its own Python process as Airflow workers run
   them (bench_sync_postgres.run_stage: XCom a JSON file, time counted inside ``execute()`` only), with
   ``max_events_per_run`` the burst's size, so one run drains it. Hard deletes, so the sandbox's contact
   count must be the customers created minus those deleted.

Prints intake events/s, request latency p50/p95/p99, the CPU seconds of client, intake and queue server,
the queue depth after the burst; per stage seconds, CPU and peak RSS; events/s end to end. Exits 1 when
the accounting is wrong: the queue depth is not the distinct deliveries; claimed is not applied +
duplicate + stale + unreadable + dead-lettered + ignored (the load summary's ``events``); applied or
duplicate is not what this burst holds; events are left waiting; the contact count is off. Speed is
printed, never asserted.

measured on a 2-core AMD EPYC VM (client, intake, queue server and sandbox share the 2 cores), Python 3.11,
Airflow 3.3, redis-py without hiredis, ``--events 100000`` (redis; 97,515 distinct deliveries):

- intake: 92.7 s, 1,079 events/s; latency p50 27 ms, p95 43 ms, p99 137 ms; CPU s: intake server 97.4
  (one process: a core, ~1 ms a request), client 7.4, redis-server 11.2; queue depth 97,515: ok.
- sync, one run: extract 7.67 s (12,712/s, peak RSS 535 MB), transform 0.73 s, map 1.54 s, load 6.34 s
  (15,371/s); 16.29 s end to end, 5,988 events/s; 55,347 contacts created = 60,321 customers - 4,974
  deleted; claimed 97,515 = applied 95,041 + duplicate 2,474. Webhook burst to Brevo: 108.9 s, 918/s.
- ``--backend postgres``: intake 848 events/s (p50 37 ms, p95 57 ms; one connection, puts take
  turns), sync 17.42 s end to end, 5,598 events/s.

Where the time goes (cProfile; ``--profile extract load`` prints the sync stages' profiles): the intake
is CPU-bound in its one process. The largest part of a request is ``resolve_endpoint``, an Airflow
connection lookup on every request (secrets backends, URI, four ``mask_secret`` calls): with it cached,
a side test went from 1.07 to 0.74 ms of server CPU a request, 991 -> 1,439 events/s. The rest is
uvicorn/Starlette, the Redis put (redis-py) and two thread-pool hops. Extract: the claim (XREADGROUP of
97,515 entries through redis-py's pure-Python RESP parser: with hiredis the stage took 6.4 s instead of
8.1 s, measured apart), then parsing, applying and serializing the per-customer state. Load: about half
settling the events (the state decoded, serialized again and saved to SQLite; XACK+XDEL of 97,515 ids),
half the Brevo import.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.redis / servers.postgres: the tests' server helpers
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_sync_postgres  # noqa: E402
from bench_sync_postgres import start_sandbox  # noqa: E402

STAGES = bench_sync_postgres.STAGES
CHUNK_SIZE = 50_000
INTEGRATION, SOURCE = "bench", "customers"
EVENT_COUNTS = ("applied", "duplicate", "stale", "unreadable", "dead-lettered", "ignored")
T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


# -- the burst -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    body: bytes


@dataclass
class Burst:
    """The deliveries in sending order, and what they hold (the expected accounting)."""

    deliveries: list[Delivery] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)  # created, updated, deleted, retried, resent
    deleted_customers: int = 0

    @property
    def distinct_deliveries(self) -> int:
        return len(self.deliveries) - self.kinds["retried"]

    @property
    def distinct_events(self) -> int:
        return self.kinds["created"] + self.kinds["updated"] + self.kinds["deleted"]

    @property
    def customers_kept(self) -> int:
        return self.kinds["created"] - self.deleted_customers


def make_burst(n: int, seed: int = 14) -> Burst:
    """``n`` deliveries of the custom shape (see the module doc for the mix); the same for the same seed."""
    rng = random.Random(seed)
    burst = Burst()
    live: list[int] = []  # customers created and not deleted
    email: dict[int, str] = {}
    originals: list[Delivery] = []
    created = 0
    for i in range(n):
        draw = rng.random()
        stamp = (T0 + dt.timedelta(milliseconds=10 * i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event: dict[str, Any] = {"event_id": f"evt-{i}", "timestamp": stamp}
        if not live or draw < 0.60:
            created += 1
            customer = created
            live.append(customer)
            email[customer] = f"Customer{customer}@Example.com"
            kind = "created"
            data = {
                "id": f"cust_{customer}",
                "email": email[customer],
                "firstName": f"First{customer}",
                "lastName": f"Last{customer % 997}",
                "phone": f"+3361{customer * 7919 % 10_000_000:07d}",  # valid French mobiles, one each
                "acceptsMarketing": customer % 3 != 0,
                "createdAt": stamp,
            }
        elif draw < 0.90:
            customer = rng.choice(live)
            kind = "updated"
            changes: dict[str, Any] = {}
            for name in rng.sample(("firstName", "lastName", "phone", "acceptsMarketing", "email"), rng.randint(1, 2)):
                new = {
                    "firstName": f"First{customer}u{i}",
                    "lastName": f"Last{i % 991}",
                    "phone": f"+3367{customer * 7919 % 10_000_000:07d}",
                    "acceptsMarketing": rng.random() < 0.5,
                    "email": f"customer{customer}.v{i}@example.net",
                }[name]
                changes[name] = {"old": email[customer] if name == "email" else None, "new": new}
            data = {"id": f"cust_{customer}", "email": email[customer], "changes": changes}
            if "email" in changes:
                email[customer] = changes["email"]["new"]
                data["email"] = email[customer]  # the customer's current email, as the sample sends
        elif draw < 0.95 and len(live) > 1:
            index = rng.randrange(len(live))
            customer, live[index] = live[index], live[-1]
            live.pop()
            burst.deleted_customers += 1
            kind = "deleted"
            data = {"id": f"cust_{customer}"}
        else:
            again = rng.choice(originals)
            if rng.random() < 0.5:
                burst.kinds["retried"] += 1
                burst.deliveries.append(again)
            else:
                burst.kinds["resent"] += 1
                burst.deliveries.append(Delivery(f"dlv-{i}", again.body))
            continue
        body = json.dumps({"event": f"customer_{kind}", **event, "data": data}, separators=(",", ":")).encode()
        burst.kinds[kind] += 1
        delivery = Delivery(f"dlv-{i}", body)
        originals.append(delivery)
        burst.deliveries.append(delivery)
    return burst


def definition(backend: str, list_id: int, max_events: int) -> dict[str, Any]:
    """A custom-shop events source on the platform preset, validated and expanded as the DAG factory does."""
    from airflow_provider_contactsync.core.spec.models import SourceDefinition

    raw = {
        "integration": INTEGRATION,
        "source": {
            "name": SOURCE,
            "type": "events",
            "platform": "custom",
            "queue": {"backend": backend, "conn_id": "bench_queue"},
            "max_events_per_run": max_events,
        },
        "transform": {"email": "email.normalizeEmail()", "phone": 'phone.normalizePhoneNumber("FR")'},
        "destination": {"conn_id": "bench_brevo", "list_ids": [list_id]},
        "deletes": {"behavior": "delete", "max_per_run": max_events},
        "alerts": {"max_error_rate": 1.0},  # rejects are counted and reported, not a failed run
    }
    return SourceDefinition.model_validate(raw).model_dump(mode="json")


# -- intake ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (a PostgreSQL server's backends)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def start_intake(env: dict[str, str], log_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``contactsync-webhooks`` (its module: the same app and uvicorn call) on a free port; its base URL."""
    import httpx
    from servers.processes import free_port

    port = free_port()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_contactsync.sources.events.intake_cli",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        time.sleep(0.1)  # polling interval
    from servers.processes import log_tail, stop_process

    stop_process(process, 10)
    raise RuntimeError(f"the intake did not start:\n{log_tail(log_file)}")


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body, and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), body, headers.get("connection", "").lower() != "close"


async def post_burst(url: str, secret: str, deliveries: Sequence[Delivery], concurrency: int) -> dict[str, Any]:
    """POST every delivery, ``concurrency`` at a time, each on its own keep-alive connection.

    HTTP/1.1 written by hand on asyncio streams: httpx's AsyncClient took ~3 ms of CPU per request here,
    twice the intake's own cost, and this client shares the 2 cores with the server it measures. A
    request whose connection the server closed before answering is sent again on a new one (counted:
    ``reconnects``); the delivery id makes that safe, as for a shop's retries.
    """
    from urllib.parse import urlsplit

    from airflow_provider_contactsync.sources.events.signatures import sign_custom

    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    path = f"/webhooks/{INTEGRATION}/{SOURCE}"
    latencies = [0.0] * len(deliveries)
    answers: Counter[str] = Counter()
    failures: list[str] = []
    todo = iter(range(len(deliveries)))

    async def sender() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        for index in todo:  # one iterator shared by the senders: each delivery is sent once
            delivery = deliveries[index]
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(delivery.body)}\r\nX-Contactsync-Delivery-Id: {delivery.delivery_id}\r\n"
                f"X-Contactsync-Signature: {sign_custom(secret, delivery.body)}\r\n\r\n"
            ).encode() + delivery.body
            for attempt in range(3):
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                writer.write(request)
                try:
                    status, body, keep = await _answer(reader)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if attempt == 2:
                        raise
                    answers["reconnects"] += 1
                    writer.close()
                    reader = writer = None
                    continue
                latencies[index] = time.perf_counter() - started
                break
            if status == 200:
                answers[json.loads(body)["status"]] += 1
            else:
                answers[f"HTTP {status}"] += 1
                if len(failures) < 5:
                    failures.append(f"{delivery.delivery_id}: {status} {body[:200]!r}")
            if not keep:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "answers": answers, "failures": failures}


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest rank."""
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` as ``env`` inside the block (this process opens the queue to read its depth)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def queue_depth(backend: str, env: dict[str, str]) -> int:
    with environment(env):
        from airflow_provider_contactsync.sources.events.backends import open_event_queue

        queue = open_event_queue(backend, "bench_queue", integration=INTEGRATION, source=SOURCE)
        try:
            return queue.depth()
        finally:
            queue.close()  # type: ignore[attr-defined]


def intake(
    burst: Burst, backend: str, concurrency: int, env: dict[str, str], state: Path, queue_pid: int
) -> dict[str, Any]:
    """Serve the intake, POST the burst, stop the intake; its figures."""
    import httpx
    from servers.processes import stop_process

    secret = secrets.token_hex(16)
    endpoint = {
        "conn_type": "generic",
        "password": secret,
        "extra": {"platform": "custom", "queue": backend, "queue_conn_id": "bench_queue"},
    }
    env = {**env, f"AIRFLOW_CONN_CONTACTSYNC_WEBHOOK__{INTEGRATION}__{SOURCE}".upper(): json.dumps(endpoint)}
    process, url = start_intake(env, state / "intake.log")
    try:
        warm = httpx.post(f"{url}/webhooks/{INTEGRATION}/warmup", content=b"{}", timeout=120)
        if warm.status_code != 404:
            raise RuntimeError(f"the intake's warm-up: expected 404, got {warm.status_code} {warm.text}")
        server_cpu = cpu_seconds(process.pid)
        queue_cpu = cpu_seconds(queue_pid)
        client_cpu = time.process_time()
        result = asyncio.run(post_burst(url, secret, burst.deliveries, concurrency))
        result["client_cpu"] = time.process_time() - client_cpu
        result["server_cpu"] = cpu_seconds(process.pid) - server_cpu
        result["queue_cpu"] = cpu_seconds(queue_pid) - queue_cpu
    finally:
        stop_process(process, 10)
    result["depth"] = queue_depth(backend, env)
    return result


# -- sync ------------------------------------------------------------------------------------------


def run_stage(stage: str, state: Path) -> None:
    """Child process: the PostgreSQL benchmark's stage runner, on this benchmark's definition.

    With ``--profile`` naming this stage, under cProfile: its 40 costliest calls (cumulative) are
    printed, and its time includes the profiler's overhead.
    """
    args = (stage, state, CHUNK_SIZE, json.loads((state / "definition.json").read_text()))
    if stage not in os.environ.get("BENCH_PROFILE", "").split(","):
        bench_sync_postgres.run_stage(*args)
        return
    import cProfile
    import pstats

    import airflow_provider_contactsync.operators  # noqa: F401 - imported before, not in the profile

    profile = cProfile.Profile()
    profile.runcall(bench_sync_postgres.run_stage, *args)
    print(f"\ncProfile of the {stage} stage (the operators' import excluded):")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


def sync(env: dict[str, str], state: Path, profile: Sequence[str] = ()) -> dict[str, Any]:
    results: dict[str, Any] = {}
    env = {**env, "BENCH_PROFILE": ",".join(profile)}
    for stage in STAGES:
        subprocess.run([sys.executable, __file__, "--stage", stage, "--state", str(state)], check=True, env=env)
        results[stage] = json.loads((state / f"{stage}.json").read_text())
    results["xcom"] = json.loads((state / "xcom.json").read_text())
    return results


# -- the whole run ---------------------------------------------------------------------------------


def bench(
    events: int, backend: str, concurrency: int, profile: Sequence[str] = ()
) -> tuple[Burst, dict[str, Any], dict[str, Any], int]:
    import httpx

    burst = make_burst(events)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="contactsync-bench-events-") as tmp:
        state = Path(tmp)
        env = dict(os.environ)
        env["AIRFLOW_HOME"] = str(state / "airflow-home")
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        if backend == "redis":
            from servers.redis import start_server

            server = stack.enter_context(start_server())
            env["AIRFLOW_CONN_BENCH_QUEUE"] = server.airflow_connection()
        else:
            from servers.postgres import start_server

            server = stack.enter_context(start_server())
            env["AIRFLOW_CONN_BENCH_QUEUE"] = server.airflow_connection(server.create_database())
        queue_pid = server.process.pid if server.process else 0
        api_key = secrets.token_hex(8)
        sandbox, url = start_sandbox(state, api_key)
        try:
            answer = httpx.post(
                f"{url}/contacts/lists", json={"name": "shop customers", "folderId": 1}, headers={"api-key": api_key}
            )
            answer.raise_for_status()
            spec = definition(backend, int(answer.json()["id"]), max(events, 1))
            (state / "definition.json").write_text(json.dumps(spec))
            env["AIRFLOW_CONN_BENCH_BREVO"] = json.dumps(
                {"conn_type": "brevo", "host": url, "password": api_key, "extra": json.dumps({"poll_interval": 0.5})}
            )
            taken = intake(burst, backend, concurrency, env, state, queue_pid)
            synced = sync(env, state, profile)
            error_report = Path(str((synced["xcom"]["load"] or {}).get("error report", "")).removeprefix("file://"))
            if error_report.is_file():  # shown when a check fails (the folder is gone by then)
                synced["error report head"] = error_report.read_text().splitlines()[:8]
            contacts = httpx.get(f"{url}/contacts", params={"limit": 1}, headers={"api-key": api_key}).json()["count"]
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    return burst, taken, synced, contacts


def report(
    burst: Burst, backend: str, concurrency: int, taken: dict[str, Any], synced: dict[str, Any], contacts: int
) -> list[str]:
    """Print the figures; return what is wrong with the accounting (empty: all accounted for)."""
    wrong: list[str] = []

    def check(ok: bool, text: str) -> None:
        print(f"  {text}: {'ok' if ok else 'WRONG'}")
        if not ok:
            wrong.append(text)

    n = len(burst.deliveries)
    kinds = burst.kinds
    print(
        f"\n{n:,} webhooks, {backend} queue: {kinds['created']:,} created, {kinds['updated']:,} updated, "
        f"{kinds['deleted']:,} deleted, {kinds['retried']:,} retried (same delivery id), "
        f"{kinds['resent']:,} resent (new delivery id)"
    )
    latencies = sorted(taken["latencies"])
    cores = os.cpu_count() or 1
    seconds = taken["seconds"]
    answers = taken["answers"]
    print(f"  intake ({concurrency} in flight): {seconds:.2f} s, {n / seconds:,.0f} events/s accepted")
    ms = {share: percentile(latencies, share) * 1000 for share in (0.50, 0.95, 0.99)}
    ms[1.0] = latencies[-1] * 1000
    print(f"  request latency ms: p50 {ms[0.50]:.1f}, p95 {ms[0.95]:.1f}, p99 {ms[0.99]:.1f}, max {ms[1.0]:.1f}")
    print(
        f"  CPU s: client {taken['client_cpu']:.1f}, intake server {taken['server_cpu']:.1f}, "
        f"{backend} {taken['queue_cpu']:.1f} (of {cores * seconds:.1f} core-seconds on {cores} cores)"
    )
    print("  answers: " + ", ".join(f"{name} {count:,}" for name, count in sorted(answers.items())))
    for failure in taken["failures"]:
        print(f"    {failure}")
    distinct, queued, duplicate = burst.distinct_deliveries, answers["queued"], answers["duplicate"]
    text = f"answers queued {queued:,} = distinct deliveries {distinct:,}, duplicate {duplicate:,}"
    check(queued == distinct and duplicate == kinds["retried"], f"{text} = retried {kinds['retried']:,}")
    check(
        taken["depth"] == distinct, f"queue depth after the burst {taken['depth']:,} = distinct deliveries {distinct:,}"
    )

    total = sum(synced[stage]["seconds"] for stage in STAGES)
    summary = synced["xcom"]["load"] or {}
    events = summary.get("events") or {}
    claimed = events.get("claimed", 0)
    print(f"  sync, one run (max_events_per_run {n:,}):")
    print(f"    {'stage':<10} {'seconds':>8} {'CPU s':>7} {'events/s':>10} {'peak RSS MB':>12} {'worker peak MB':>15}")
    for stage in STAGES:
        r = synced[stage]
        print(
            f"    {stage:<10} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {claimed / r['seconds']:10,.0f}"
            f" {r['peak_rss_mb']:12.0f} {r['worker_peak_rss_mb']:15.0f}"
        )
    print(f"    {'end to end':<10} {total:8.2f} {'':>7} {claimed / total if total else 0:10,.0f}")
    print(f"  webhook burst to Brevo: {seconds + total:.2f} s, {n / (seconds + total):,.0f} webhooks/s")
    counts = ", ".join(
        f"{name} {summary[name]:,}"
        for name in (
            "created",
            "updated",
            "unchanged",
            "deleted",
            "deleted in source",
            "rejected",
            "identity conflicts",
            "refused",
        )
        if name in summary
    )
    print(f"  customers staged {events.get('customers', 0):,}; load: {counts}")
    print(
        f"  event latency (webhook accepted -> settled) p50 {summary.get('event latency p50 s', '-')} s, "
        f"p95 {summary.get('event latency p95 s', '-')} s; requests {summary.get('brevo requests', '-')}"
    )
    parts = " + ".join(f"{name} {events.get(name, 0):,}" for name in EVENT_COUNTS)
    check(
        claimed > 0 and claimed == sum(events.get(name, 0) for name in EVENT_COUNTS),
        f"accounting: claimed {claimed:,} = {parts}",
    )
    check(claimed == distinct, f"claimed {claimed:,} = distinct deliveries {distinct:,}")
    applied, duplicate = events.get("applied", 0), events.get("duplicate", 0)
    text = f"applied {applied:,} = distinct events {burst.distinct_events:,}, duplicate {duplicate:,}"
    check(applied == burst.distinct_events and duplicate == kinds["resent"], f"{text} = resent {kinds['resent']:,}")
    check(summary.get("events waiting") == 0, f"events waiting after the load {summary.get('events waiting')}")
    kept = f"customers created {kinds['created']:,} - deleted {burst.deleted_customers:,} = {burst.customers_kept:,}"
    check(contacts == burst.customers_kept, f"contacts in sandbox {contacts:,} = {kept}")
    if wrong and synced.get("error report head"):
        print("  the error report begins:\n    " + "\n    ".join(synced["error report head"]))
    return wrong


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="webhooks in the burst (default 100,000)")
    parser.add_argument("--backend", choices=("redis", "postgres"), default="redis")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument(
        "--profile", nargs="+", choices=STAGES, default=[], help="sync stages to run under cProfile (top calls printed)"
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        run_stage(args.stage, args.state)
        return 0
    if not 1 <= args.events <= 1_000_000:
        parser.error("--events: from 1 to 1,000,000 (one run's max_events_per_run)")
    burst, taken, synced, contacts = bench(args.events, args.backend, args.concurrency, args.profile)
    wrong = report(burst, args.backend, args.concurrency, taken, synced, contacts)
    if wrong:
        print(f"\naccounting is wrong: {len(wrong)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two syncs into one Brevo account at once: 429s with and without the shared rate limit (Redis).

Two worker processes, each a BrevoHook doing what a load does (attributes and lists read, bulk
imports, the import processes polled, batch updates, list adds), start together against one
sandbox with Brevo's general-tier limits (10 requests/s on /contacts*, 100/hour elsewhere). First
each on its own (today's behaviour: paced by Brevo's headers, 429s waited out), then with the
connection extra ``shared_rate_limit`` pointing both at one redis-server. Requests, 429s and the
busiest second are counted from the sandbox's request log, so they are what reached the server.

    .venv/bin/python benchmarks/bench_shared_rate_limit.py [--workers 2] [--rounds 30] [--rps 10]

Needs ``redis-server`` (``bash scripts/install-servers.sh``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Airflow reads its home at import time: isolate it before anything imports airflow.sdk.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="contactsync-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.redis: the tests' redis-server helper

API_KEY = "xkeysib-bench-shared-0000000000000000"
BREVO_CONN = "brevo_bench_shared"
REDIS_CONN = "redis_bench_shared"
BATCH = 100  # contacts per POST /contacts/batch (BrevoHook's default)
LIST_CHUNK = 150  # contacts per list add (Brevo's maximum)


def worker(index: int, rounds: int, list_id: int) -> int:
    """One sync: wait for "go" on stdin, run the load-like request pattern, print the hook's stats as JSON."""
    from airflow_provider_contactsync.hooks.brevo import BrevoHook

    emails = [f"w{index}.c{i:05d}@example.com" for i in range(rounds * BATCH)]
    hook = BrevoHook(BREVO_CONN)
    _ = hook.http  # resolve the connection before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    hook.get_attributes()
    hook.get_lists()
    contacts = ({"email": e, "attributes": {"FIRSTNAME": f"W{index}"}} for e in emails)
    imported = hook.import_contacts(contacts, list_ids=[list_id], max_contacts_per_body=len(emails) // 4 + 1)
    hook.wait_for_processes(imported, first_interval=0.5, max_interval=2.0)
    for r in range(rounds):
        chunk = emails[r * BATCH : (r + 1) * BATCH]
        hook.update_contacts_batch([{"email": e, "attributes": {"LASTNAME": f"R{r}"}} for e in chunk])
        if r % 2 == 0:  # a list add per 150 contacts: about one every other batch
            hook.add_to_list(list_id, emails=emails[r * BATCH : r * BATCH + LIST_CHUNK])
    elapsed = time.perf_counter() - started
    stats = hook.stats
    print(
        json.dumps(
            {
                "requests": stats.total_requests,
                "rate_limited": stats.rate_limited,
                "shared_waits": stats.shared_waits,
                "shared_unavailable": stats.shared_unavailable,
                "wait_seconds": round(stats.wait_seconds, 2),
                "seconds": round(elapsed, 2),
            }
        ),
        flush=True,
    )
    hook.close()
    return 0


def busiest_second(log: list[dict[str, Any]]) -> int:
    """Most /v3/contacts* requests (429s included) in one of the sandbox's 1 s windows, as it opens them:
    with the first request after the previous one closed. Arrival = logged time - duration."""
    arrivals = sorted(
        dt.datetime.fromisoformat(e["time"]).timestamp() - e["duration_ms"] / 1000
        for e in log
        if e["path"].startswith("/v3/contacts")
    )
    busiest, opened, count = 0, None, 0
    for t in arrivals:
        if opened is None or t - opened >= 1.0:
            opened, count = t, 0
        count += 1
        busiest = max(busiest, count)
    return busiest


def run(
    mode: str, args: argparse.Namespace, sandbox: Any, env: dict[str, str], list_id: int, tmp: str
) -> dict[str, Any]:
    extra: dict[str, Any] = {"poll_interval": 0.5}
    if mode == "shared":
        extra["shared_rate_limit"] = {"redis_conn_id": REDIS_CONN, "contacts_per_second": args.rps}
        if args.margin is not None:
            extra["shared_rate_limit"]["margin_seconds"] = args.margin
    env = {
        **env,
        f"AIRFLOW_CONN_{BREVO_CONN.upper()}": json.dumps(
            {"conn_type": "brevo", "host": sandbox.url, "password": API_KEY, "extra": extra}
        ),
    }
    sandbox.configure(contacts_rps=args.rps, other_per_hour=100, import_delay=0.0)  # windows restart
    sandbox.clear_requests()
    logs = [Path(tmp) / f"{mode}-worker-{i}.log" for i in range(args.workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(i), "--rounds", str(args.rounds), "--list-id", str(list_id)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),  # a file: a full pipe would stall the worker
            text=True,
            env=env,
        )
        for i, log in enumerate(logs)
    ]
    for proc in procs:  # every worker has imported Airflow and read its connection
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a worker failed to start"
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    stats, failed = [], []
    for proc, log in zip(procs, logs, strict=True):  # every worker ends before the sandbox is stopped
        out, _ = proc.communicate(timeout=3600)
        if proc.returncode == 0:
            stats.append(json.loads(out.strip().splitlines()[-1]))
        else:  # a sync that gave up (e.g. still rate limited after max_rate_limit_retries waits)
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            failed.append(lines[-1] if lines else f"exit {proc.returncode}")
    elapsed = time.perf_counter() - started
    log = sandbox.requests()
    return {
        "mode": mode,
        "requests": len(log),
        "429s": sum(1 for e in log if e["status"] == 429),
        "seconds": elapsed,
        "busiest second": busiest_second(log),
        "shared waits": sum(s["shared_waits"] for s in stats),
        "failed": failed,
        "workers": stats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="concurrent syncs (processes)")
    parser.add_argument("--rounds", type=int, default=30, help=f"batch updates of {BATCH} contacts per worker")
    parser.add_argument("--rps", type=int, default=10, help="the account's /contacts* requests per second")
    parser.add_argument("--margin", type=float, default=None, help="shared_rate_limit margin_seconds (default 0.05)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--list-id", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.rounds, args.list_id)

    from servers.redis import start_server

    from airflow_provider_contactsync.sandbox import BrevoSandbox
    from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

    with (
        tempfile.TemporaryDirectory(prefix="contactsync-bench-shared-") as tmp,
        start_server() as redis_server,
        BrevoSandbox(os.path.join(tmp, "brevo.db"), API_KEY, **FAST_SETTINGS) as sandbox,
    ):
        list_id = int(sandbox.create_list("bench"))
        env = {**os.environ, f"AIRFLOW_CONN_{REDIS_CONN.upper()}": redis_server.airflow_connection()}
        results = [run(mode, args, sandbox, env, list_id, tmp) for mode in ("alone", "shared")]

    print(
        f"{args.workers} syncs at once into one account limited to {args.rps} /contacts* requests/s "
        f"(each: {args.rounds} batch updates of {BATCH}, {(args.rounds + 1) // 2} list adds, 4 imports and their polls)"
    )
    header = f"{'limit':<24}{'requests':>9}{'429s':>6}{'time (s)':>10}{'busiest second':>16}{'shared waits':>14}"
    print(header + f"{'failed syncs':>14}")
    for r in results:
        label = "per process (today)" if r["mode"] == "alone" else "shared through Redis"
        print(
            f"{label:<24}{r['requests']:>9}{r['429s']:>6}{r['seconds']:>10.1f}"
            f"{r['busiest second']:>16}{r['shared waits']:>14}{len(r['failed']):>14}"
        )
    for r in results:
        print(f"  {r['mode']}: " + "; ".join(json.dumps(w) for w in r["workers"]))
        for failure in r["failed"]:
            print(f"  {r['mode']}: a sync failed: {failure}")
    alone, shared = results
    return 0 if shared["429s"] <= alone["429s"] and not shared["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

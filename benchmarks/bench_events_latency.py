"""Realtime customer events: latency from webhook accepted to contact visible in Brevo (the sandbox).

    python benchmarks/bench_events_latency.py [--events 20]

Starts, on 127.0.0.1: PostgreSQL (Airflow's metadata DB), redis-server (the events queue and the
wake-ups), the Brevo sandbox, and real Airflow processes with LocalExecutor (dag-processor, scheduler,
triggerer, api-server; tests/servers/airflow_services.py) over a DAGs folder holding the shipped
one-line DAG file and one ``sync_mode: realtime`` definition. The signed intake app runs in this
process. Each event is a new customer, posted once the previous one is visible (each measures the
whole path: wake-up, trigger, scheduler, four tasks); then a burst of events posted 1 s apart
(events arriving while a run is going wait for the next).

Per event: webhook 200 -> contact visible (GET /v3/contacts/<email> answers 200). Where the time goes,
from the metadata DB: webhook -> run created (wake, triggerer, scheduler), run created -> extract
started (scheduler, executor, task process start), each task's run time, the gaps between tasks
(scheduling and process start of the next), load end -> visible.

Airflow's processes run as this environment does (PYTHONDONTWRITEBYTECODE=1, no .pyc in the venv).
LocalExecutor forks each task from a process that already imported Airflow, so a task's start costs
little here (run created -> extract started: 0.07 s); other executors pay the imports per task.

Measured on the 2-core machine (shared), 2026-11-27, 20 events per series, the hook's default poll:

    one at a time:   p50 10.5 s, p95 15.5 s (first, cold: 13.7 s)
      webhook -> run created 2.5 s (wake 0-0.25 s, trigger poll <= 0.5 s, triggerer -> DB, scheduler loop)
      extract 0.8, transform 0.7, map 0.9, load 5.2 s (2.0 s of it the first poll's sleep before asking
      Brevo about the import: issue 18), gaps between tasks 0.3-0.5 s each
    one per second:  p50 19.0 s, p95 31.0 s: an event arriving during a run waits for it to end, then
      for the next run (max_active_runs=1), which drains everything queued meanwhile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

INTEGRATION, SOURCE = "rtbench", "customers"
DAG_ID = f"contactsync__{INTEGRATION}__{SOURCE}"
SECRET = "whsec-latency-bench"
TASKS = ("extract", "transform", "map", "load")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


class Bench:
    def __init__(self, folder: Path) -> None:
        from servers.postgres import start_server as start_postgres
        from servers.redis import start_server as start_redis

        from airflow_provider_contactsync.sandbox import BrevoSandbox

        self.folder = folder
        self.postgres = start_postgres()
        self.redis = start_redis()
        self.sandbox = BrevoSandbox(folder / "brevo.sqlite3", "xkeysib-bench").start()
        self.list_id = self.sandbox.create_list("shop customers")
        self.services: Any = None

    def start_airflow(self) -> None:
        from servers.airflow_services import start_airflow

        dags = self.folder / "dags"
        (dags / "definitions").mkdir(parents=True)
        (dags / "contactsync_dags.py").write_text((ROOT / "example_dags" / "contactsync_dags.py").read_text())
        (dags / "definitions" / "rtbench.yaml").write_text(
            textwrap.dedent(
                f"""\
                integration: {INTEGRATION}
                source:
                  name: {SOURCE}
                  type: events
                  platform: custom
                  sync_mode: realtime
                  queue: {{backend: redis, conn_id: bench_redis}}
                destination: {{conn_id: bench_brevo, list_ids: [{self.list_id}]}}
                """
            )
        )
        env = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30"}  # Airflow's default
        (self.folder / "airflow-home").mkdir()
        dbname = self.postgres.create_database()
        url = self.postgres.conn_uri(dbname).replace("postgresql://", "postgresql+psycopg2://", 1)
        brevo = {"conn_type": "brevo", "host": self.sandbox.url, "password": self.sandbox.api_key}
        self.services = start_airflow(
            dags,
            url,
            connections={"bench_redis": json.loads(self.redis.airflow_connection()), "bench_brevo": brevo},
            env=env,
            home=self.folder / "airflow-home",
        )
        self.services.wait_for(lambda: DAG_ID in self.services.dag_ids(), timeout=180)
        self.services.unpause(DAG_ID)
        channel = f"contactsync:wake:{INTEGRATION}:{SOURCE}".encode()
        client = self.redis.client()
        self.services.wait_for(lambda: dict(client.pubsub_numsub(channel)).get(channel, 0) >= 1, timeout=180)

    def intake(self) -> Any:
        from fastapi.testclient import TestClient

        from airflow_provider_contactsync.sources.events.intake import endpoint_conn_id
        from airflow_provider_contactsync.sources.events.intake_cli import create_app

        os.environ["AIRFLOW_CONN_BENCH_REDIS"] = self.redis.airflow_connection()
        endpoint = {"conn_type": "generic", "password": SECRET,
                    "extra": {"platform": "custom", "queue": "redis", "queue_conn_id": "bench_redis",
                              "wake_conn_id": "bench_redis"}}  # fmt: skip
        os.environ[f"AIRFLOW_CONN_{endpoint_conn_id(INTEGRATION, SOURCE).upper()}"] = json.dumps(endpoint)
        return TestClient(create_app())

    def post(self, client: Any, customer: int) -> float:
        """Post one created customer; the time the 200 came back (time.time())."""
        from airflow_provider_contactsync.sources.events.signatures import sign_custom

        body = json.dumps(
            {"event": "customer_created", "event_id": f"e-{customer}",
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "data": {"id": customer, "email": f"c{customer}@example.com", "firstName": f"F{customer}"}}
        ).encode()  # fmt: skip
        answer = client.post(
            f"/webhooks/{INTEGRATION}/{SOURCE}",
            content=body,
            headers={"X-Contactsync-Signature": sign_custom(SECRET, body)},
        )
        assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text
        return time.time()

    def visible(self, customer: int) -> bool:
        import httpx

        answer = httpx.get(
            f"{self.sandbox.url}/contacts/c{customer}@example.com", headers={"api-key": self.sandbox.api_key}
        )
        return answer.status_code == 200

    def runs(self) -> list[dict[str, Any]]:
        rows = self.services.query(
            "SELECT run_id, run_type, state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = %s "
            "ORDER BY id",
            DAG_ID,
        )
        keys = ("run_id", "run_type", "state", "queued_at", "start_date", "end_date")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def tasks(self, run_id: str) -> dict[str, tuple[float, float]]:
        rows = self.services.query(
            "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s",
            DAG_ID,
            run_id,
        )
        return {t: (s.timestamp(), e.timestamp()) for t, s, e in rows if s and e}

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
        self.sandbox.stop()
        self.redis.stop()
        self.postgres.stop()


def measure(bench: Bench, client: Any, customers: list[int], *, spacing: float | None) -> list[dict[str, Any]]:
    """Post each customer (one after another becomes visible, or ``spacing`` s apart); time each."""
    results = []
    pending: list[tuple[int, float]] = []
    for customer in customers:
        accepted = bench.post(client, customer)
        if spacing is None:
            bench.services.wait_for(lambda c=customer: bench.visible(c), timeout=300, interval=0.05)
            results.append({"customer": customer, "accepted": accepted, "visible": time.time()})
        else:
            pending.append((customer, accepted))
            deadline = time.time() + spacing
            while time.time() < deadline:  # watch the earlier ones while waiting to post the next
                _collect(bench, pending, results)
    while pending:
        _collect(bench, pending, results)
    return results


def _collect(bench: Bench, pending: list[tuple[int, float]], results: list[dict[str, Any]]) -> None:
    for customer, accepted in list(pending):
        if bench.visible(customer):
            results.append({"customer": customer, "accepted": accepted, "visible": time.time()})
            pending.remove((customer, accepted))


def breakdown(bench: Bench, results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per event, the segments of the run that made it visible (the first run created after its webhook)."""
    runs = [r for r in bench.runs() if r["run_type"] == "asset_triggered" and r["end_date"]]
    segments: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        segments.setdefault(name, []).append(value)

    started = {r["run_id"]: bench.tasks(r["run_id"]) for r in runs}
    for result in results:
        # the event's run: the first whose extract started (and claimed) after the event was queued
        run = next((r for r in runs if "extract" in started[r["run_id"]]
                    and started[r["run_id"]]["extract"][0] >= result["accepted"]), None)  # fmt: skip
        if run is None:
            continue
        tasks = started[run["run_id"]]
        if set(TASKS) - set(tasks):
            continue
        created = run["queued_at"].timestamp()
        add("webhook -> run created", created - result["accepted"])
        add("run created -> extract started", tasks["extract"][0] - created)
        previous_end = None
        for task in TASKS:
            start, end = tasks[task]
            if previous_end is not None:
                add(f"gap before {task}", start - previous_end)
            add(f"{task} ran", end - start)
            previous_end = end
        add("load end -> visible", result["visible"] - previous_end)
    return segments


def report(title: str, results: list[dict[str, Any]], segments: dict[str, list[float]]) -> None:
    latencies = [r["visible"] - r["accepted"] for r in results]
    print(f"\n{title}: {len(latencies)} events")
    print(f"  latency p50 {statistics.median(latencies):.1f} s, p95 {percentile(latencies, 0.95):.1f} s, "
          f"max {max(latencies):.1f} s")  # fmt: skip
    for name, values in segments.items():
        print(f"    {name:<34} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")


def main() -> None:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20, help="events of each series")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contactsync-latency-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start_airflow()
            with bench.intake() as client:
                warm = measure(bench, client, [0], spacing=None)  # the first run warms caches
                print(f"\nfirst event (cold): {warm[0]['visible'] - warm[0]['accepted']:.1f} s")
                one = measure(bench, client, list(range(1, args.events + 1)), spacing=None)
                report("one at a time", one, breakdown(bench, one))
                burst = measure(bench, client, list(range(1001, 1001 + args.events)), spacing=1.0)
                report("one per second", burst, breakdown(bench, burst))
        finally:
            bench.stop()


if __name__ == "__main__":
    main()

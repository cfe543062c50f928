"""The 1M-row PostgreSQL sync through a real Celery deployment: one worker versus two.

    python benchmarks/bench_celery_workers.py [--rows 1000000] [--sources 1 2] [--concurrency 1] [--repeat 1]

The crm-like definition of bench_sync_postgres.py (five formulas, six mapped attributes) over a
``--rows`` table, run by Airflow 3.3 itself: the deployment of tests/servers/airflow_celery.py
(scheduler, dag-processor, triggerer, api-server, PostgreSQL metadata database and Celery result
backend, Redis broker, workers that share nothing on disk), staging on S3 (moto's server). Each
measurement triggers the run(s) and waits for them; its time is from the trigger to the last run's
end (the metadata database's ``end_date``), so it includes what Airflow adds: queueing, each task's
start-up and DAG parse on its worker, the hops between tasks.

``--sources 1``: one DAG over the whole table. ``--sources 2``: the same rows as two tables of half
the size, two DAGs triggered together (what more workers can run side by side). Each is measured
with worker ``celery-a`` alone, then with ``celery-a`` and ``celery-b`` (``--concurrency`` task slots
each, default 1: a worker per slot, as small machines); ``--repeat`` runs the pair again in the other
order. Every measurement has its own integration (so a full read, an empty ledger) and a fresh Brevo
sandbox in its own process.

The figures are only as good as the machine: on the 2-core development machine every process above
shares the same two cores, so a second worker adds task slots, not CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.*: the tests' server helpers
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sync_postgres import DEFINITION, start_sandbox  # noqa: E402

WORKERS = ("celery-a", "celery-b")
RUN_TIMEOUT = 3600.0
S3_CONN = "aws_s3_bench"
WARMUP_ROWS = 2_000
COUNTS = ("rows read", "created", "rejected", "identity conflicts", "refused")


@dataclass
class Measurement:
    sources: int  # DAGs sharing the rows
    workers: int  # Celery workers running
    tag: str  # unique per measurement: integration and connection names
    rows: int  # in all its sources together

    @property
    def dag_ids(self) -> list[str]:
        return [f"contactsync__{self.tag}s{i}__customers" for i in range(self.sources)]

    @property
    def conn_id(self) -> str:
        return f"brevo_{self.tag}"

    seconds: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def fill(server: Any, dbname: str, table: str, first: int, rows: int) -> None:
    """bench_sync_postgres.fill's customers, ids ``first`` .. ``first + rows - 1``, in ``table``."""
    with server.connect(dbname) as conn:
        conn.execute(
            f"CREATE TABLE public.{table} (id bigint PRIMARY KEY, email text, phone text, firstname text,"
            " lastname text, age text, updated_at timestamptz)"
        )
        conn.execute(
            f"INSERT INTO public.{table} SELECT i, ' User' || i || '@Example.com ',"
            " '06 ' || lpad(((i::bigint * 7919) % 100000000)::text, 8, '1'), 'First' || i, 'Last' || (i % 997),"
            " (18 + i % 70)::text, '2026-01-01 00:00:00+00'::timestamptz + (i / 10) * interval '1 second'"
            f" FROM generate_series({first}, {first + rows - 1}) AS i"
        )
        conn.execute(f"CREATE INDEX ON public.{table} (updated_at, id)")
        conn.execute(f"VACUUM ANALYZE public.{table}")


def definition(tag: str, index: int, table: str, conn_id: str) -> str:
    """The benchmark definition (JSON is YAML) for one table, under its own integration, manual."""
    spec = json.loads(json.dumps(DEFINITION))
    spec["integration"] = f"{tag}s{index}"
    spec["source"]["table"] = f"public.{table}"
    spec["destination"]["conn_id"] = conn_id
    spec["schedule"] = "manual"
    return json.dumps(spec, indent=2)


def plan(rows: int, sources: list[int], repeat: int) -> list[Measurement]:
    """A small warm-up run first (the workers' first tasks read Airflow's files from disk), then the pairs."""
    measurements = [Measurement(1, 2, "warmup", WARMUP_ROWS)]
    for round_ in range(repeat):
        for n in sources:
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            measurements += [Measurement(n, workers, f"b{round_}n{n}w{workers}", rows) for workers in order]
    return measurements


def measure(airflow: Any, m: Measurement, folder: Path) -> None:
    import httpx

    services = airflow.services
    wanted = set(WORKERS[: m.workers])
    for name in airflow.running_workers():
        if name not in wanted:
            airflow.stop_worker(name)
    for name in sorted(wanted - set(airflow.running_workers())):
        airflow.start_worker(name)
    api_key = secrets.token_hex(8)
    (folder / m.tag).mkdir()
    sandbox, url = start_sandbox(folder / m.tag, api_key)  # a fresh account each time
    try:
        for name, kind in (("AGE", "float"), ("INCOMPLETE", "boolean")):
            httpx.post(f"{url}/contacts/attributes/normal/{name}", json={"type": kind}, headers={"api-key": api_key})
        services.api(
            "POST",
            "/connections",
            json={
                "connection_id": m.conn_id,
                "conn_type": "brevo",
                "host": url,
                "password": api_key,
                "extra": json.dumps({"poll_interval": 0.5}),
            },
        )
        for dag_id in m.dag_ids:
            services.unpause(dag_id)
        started = dt.datetime.now(dt.timezone.utc)
        triggered = [(dag_id, services.trigger(dag_id)) for dag_id in m.dag_ids]
        for dag_id, run_id in triggered:
            state = services.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
            if state != "success":
                raise RuntimeError(f"{dag_id} {run_id} ended {state}: {services.task_states(dag_id, run_id)}")
        ends = []
        for dag_id, run_id in triggered:
            (end,) = services.query("SELECT end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id)[0]
            ends.append(end)
            tasks = services.query(
                "SELECT task_id, hostname, start_date, end_date, queued_dttm FROM task_instance"
                " WHERE dag_id = %s AND run_id = %s ORDER BY start_date",
                dag_id,
                run_id,
            )
            summary = services.xcom(dag_id, run_id, "load")
            m.runs.append({"dag_id": dag_id, "tasks": tasks, "summary": summary})
        m.seconds = (max(ends) - started).total_seconds()
        contacts = httpx.get(f"{url}/contacts", params={"limit": 1}, headers={"api-key": api_key}).json()["count"]
        read = sum(run["summary"]["rows read"] for run in m.runs)
        created = sum(run["summary"]["created"] for run in m.runs)
        if read != m.rows or contacts != created:
            raise RuntimeError(f"{m.tag}: {read:,} rows read of {m.rows:,}; {created:,} created, {contacts:,} in Brevo")
        m.counts = {name: sum(run["summary"].get(name, 0) for run in m.runs) for name in COUNTS}
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)


def report(m: Measurement) -> None:
    rows = m.rows // m.sources
    print(f"\n{m.sources} source(s) of {rows:,} rows, {m.workers} worker(s): {m.seconds:.1f} s end to end")
    print("  " + ", ".join(f"{name} {count:,}" for name, count in m.counts.items()))
    print(f"  {'dag':<34} {'task':<10} {'worker':<9} {'queued s':>8} {'run s':>7}")
    for run in m.runs:
        for task_id, hostname, start, end, queued in run["tasks"]:
            wait = (start - queued).total_seconds() if start and queued else float("nan")
            took = (end - start).total_seconds()
            print(f"  {run['dag_id']:<34} {task_id:<10} {hostname or '-':<9} {wait:8.1f} {took:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 2], choices=(1, 2))
    parser.add_argument("--concurrency", type=int, default=1, help="task slots per worker")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each round after the first swaps the order")
    args = parser.parse_args()

    from servers import s3
    from servers.airflow_celery import start_celery_airflow
    from servers.postgres import start_server
    from servers.processes import stop_process

    measurements = plan(args.rows, args.sources, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="contactsync-bench-celery-"))
    pg = start_server(settings={"shared_buffers": "256MB", "max_connections": "100"})
    moto = None
    airflow = None
    try:
        moto = s3.start_server(work)
        bucket = moto.create_bucket()
        source_db = pg.create_database()
        tables = {(0, 0): "customers_warmup"}
        loading = time.perf_counter()
        fill(pg, source_db, "customers_warmup", 1, WARMUP_ROWS)
        for n in sorted(set(args.sources)):
            size = args.rows // n
            for i in range(n):
                tables[(n, i)] = f"customers_{n}_{i}"
                fill(pg, source_db, tables[(n, i)], 1 + i * size, size)
        with pg.connect(source_db) as conn:  # read once, so no measurement pays for a cold cache
            for table in tables.values():
                conn.execute(f"SELECT sum(length(email)) FROM public.{table}").fetchall()
        print(f"source tables filled in {time.perf_counter() - loading:.0f} s")
        dags = work / "dags"
        (dags / "definitions").mkdir(parents=True)
        shutil.copy(ROOT / "example_dags" / "contactsync_dags.py", dags / "contactsync_dags.py")
        for m in measurements:
            for i in range(m.sources):
                text = definition(m.tag, i, tables[(m.sources if m.tag != "warmup" else 0, i)], m.conn_id)
                (dags / "definitions" / f"{m.tag}s{i}.yaml").write_text(text)
        (work / "control").mkdir()
        metadata_db = pg.create_database()
        starting = time.perf_counter()
        airflow = start_celery_airflow(
            dags,
            pg.conn_uri(metadata_db).replace("postgresql://", "postgresql+psycopg2://", 1),
            start_workers=WORKERS[:1],
            concurrency=args.concurrency,
            connections={
                "bench_pg": json.loads(pg.airflow_connection(source_db)),
                S3_CONN: json.loads(moto.connection()),
            },
            env={"AIRFLOW__CONTACTSYNC__STAGING": f"s3://{S3_CONN}@{bucket}/staging"},
            home=work / "control",
        )
        every = {dag_id for m in measurements for dag_id in m.dag_ids}
        airflow.services.wait_for(lambda: every <= airflow.services.dag_ids(), timeout=300)
        print(f"deployment up in {time.perf_counter() - starting:.0f} s (hidden folders: {airflow.isolated})")
        for m in measurements:
            measure(airflow, m, work)
            if m.tag != "warmup":
                report(m)
        print(f"\n{args.rows:,} rows, staging on S3 (moto), {args.concurrency} task slot(s) per worker")
        for n in sorted(set(args.sources)):
            timed = [m for m in measurements if m.sources == n and m.tag != "warmup"]
            one = [m.seconds for m in timed if m.workers == 1]
            two = [m.seconds for m in timed if m.workers == 2]
            best_one, best_two = min(one), min(two)
            print(
                f"  {n} source(s): 1 worker {best_one:6.1f} s, 2 workers {best_two:6.1f} s, "
                f"ratio (1 worker / 2 workers) {best_one / best_two:.2f}"
                + (f"  (all: {one} vs {two})" if len(one) > 1 else "")
            )
    finally:
        if airflow is not None:
            airflow.stop()
        if moto is not None:
            stop_process(moto.process, 5.0)
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""End-to-end sync benchmark: a PostgreSQL table -> five formulas -> mapping -> Brevo sandbox.

    python benchmarks/bench_sync_postgres.py [--rows 100000 1000000] [--chunk-size 50000]
    python benchmarks/bench_sync_postgres.py --rows 1000000 --mode mirror --runs 2   # mirror: run 2 reads 1M again

``--runs 2`` runs the DAG a second time on the same table, nothing changed: an upsert run then reads
nothing new; a mirror run reads the whole table again and checks 1M delivered contacts for deletions.

For each size: a fresh table in a temporary PostgreSQL server, a fresh Brevo sandbox in its own
process (Brevo is remote: its work must not share our CPU budget... but on this 2-core machine it
does, which makes these figures conservative), then the four operators run one after another,
each in its own Python process as Airflow workers would run them, so the peak RSS reported is that
task's alone. XCom is stood in for by a JSON file; the cursor store by a dict persisted the same
way. Each stage's time counts only its ``execute()`` (interpreter and Airflow imports excluded);
the load stage includes waiting until the sandbox has finished the imports.

Prints seconds, rows/s and peak RSS per stage, and end-to-end rows/s (rows / sum of stage times).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.postgres: the tests' server helper

STAGES = ("extract", "transform", "map", "load")
DEFINITION = {
    "integration": "bench",
    "source": {
        "name": "customers",
        "type": "postgres",
        "conn_id": "bench_pg",
        "table": "public.customers",
        "fields": ["id", "email", "phone", "firstname", "lastname", "age", "updated_at"],
        "updated_field": "updated_at",
        "key": "id",
    },
    "transform": {
        "email": "email.normalizeEmail()",
        "phone": 'phone.normalizePhoneNumber("FR")',
        "full_name": "(firstname + ' ' + lastname).trim()",
        "incomplete": "email.isNull() || phone.isNull()",
        "age": "age.asInt()",
    },
    "mapping": {
        "email": "EMAIL",
        "phone": "SMS",
        "id": "EXT_ID",
        "full_name": "FIRSTNAME",
        "incomplete": "INCOMPLETE",
        "age": "AGE",
    },
    "destination": {"conn_id": "bench_brevo", "list_ids": [2]},
    "alerts": {"max_error_rate": 1.0},
}


def fill(server: Any, dbname: str, rows: int) -> None:
    """Customers with mostly-unique French mobile numbers, ages as text, and cursor ties."""
    with server.connect(dbname) as conn:
        conn.execute(
            "CREATE TABLE public.customers (id bigint PRIMARY KEY, email text, phone text, firstname text,"
            " lastname text, age text, updated_at timestamptz)"
        )
        conn.execute(
            "INSERT INTO public.customers SELECT i, ' User' || i || '@Example.com ',"
            " '06 ' || lpad(((i::bigint * 7919) % 100000000)::text, 8, '1'), 'First' || i, 'Last' || (i % 997),"
            " (18 + i % 70)::text, '2026-01-01 00:00:00+00'::timestamptz + (i / 10) * interval '1 second'"
            f" FROM generate_series(1, {rows}) AS i"
        )
        conn.execute("CREATE INDEX ON public.customers (updated_at, id)")
        conn.execute("VACUUM ANALYZE public.customers")


def run_stage(stage: str, state: Path, chunk_size: int, definition: dict[str, Any] | None = None) -> None:
    """Child process: run one operator's execute() with a stand-in context; record time and RSS."""
    from servers.stage_process import FileStateStore, FileXcomTI

    from airflow_provider_contactsync import operators

    classes = {
        "extract": operators.ContactsyncExtractOperator,
        "transform": operators.ContactsyncTransformOperator,
        "map": operators.ContactsyncMapOperator,
        "load": operators.ContactsyncLoadOperator,
    }
    definition = definition or DEFINITION
    mode = os.environ.get("BENCH_MODE", "upsert")
    if mode != "upsert":
        definition = {**definition, "destination": {**definition["destination"], "mode": mode}}
    kwargs: dict[str, Any] = {
        "task_id": stage,
        "definition": definition,
        "staging": f"file://{state}/staging",
    }
    if stage == "extract":
        kwargs["chunk_size"] = chunk_size
    operator = classes[stage](**kwargs)
    xcom_file = state / "xcom.json"
    xcoms = json.loads(xcom_file.read_text()) if xcom_file.exists() else {}
    context = {
        "ti": FileXcomTI(xcoms),
        "run_id": os.environ.get("BENCH_RUN_ID", "bench"),
        "params": {"full_refresh": False},
        "asset_state_store": FileStateStore(state / "asset_state.json"),
    }
    started, cpu_started = time.perf_counter(), time.process_time()
    result = operator.execute(context)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    xcoms[stage] = result
    xcom_file.write_text(json.dumps(xcoms, default=str))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_mb = children.ru_maxrss / 1024  # largest worker process
    cpu_seconds += children.ru_utime + children.ru_stime  # the stage's worker processes
    (state / f"{stage}.json").write_text(
        json.dumps(
            {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb, "worker_peak_rss_mb": workers_mb}
        )
    )


def start_sandbox(folder: Path, api_key: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "contactsync-sandbox"),
            "--port",
            "0",
            "--db",
            str(folder / "sandbox.db"),
            "--api-key",
            api_key,
            "--import-delay",
            "0",
            "--contacts-rps",
            "1000",
            "--other-per-hour",
            "100000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "http://" in line:
            url = line[line.index("http://") :].split()[0]
            return process, url if url.endswith("/v3") else url.rstrip("/") + "/v3"
    raise RuntimeError("the sandbox did not start")


def bench(rows: int, chunk_size: int, server: Any, mode: str = "upsert", runs: int = 1) -> list[dict[str, Any]]:
    import httpx

    dbname = server.create_database()
    fill(server, dbname, rows)
    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        state = Path(tmp)
        api_key = secrets.token_hex(8)
        sandbox, url = start_sandbox(state, api_key)
        try:
            for name, kind in (("AGE", "float"), ("INCOMPLETE", "boolean")):
                httpx.post(
                    f"{url}/contacts/attributes/normal/{name}", json={"type": kind}, headers={"api-key": api_key}
                )
            env = dict(os.environ)
            env["AIRFLOW_HOME"] = str(state / "airflow-home")
            env["AIRFLOW_CONN_BENCH_PG"] = server.airflow_connection(dbname)
            env["AIRFLOW_CONN_BENCH_BREVO"] = json.dumps(
                {"conn_type": "brevo", "host": url, "password": api_key, "extra": json.dumps({"poll_interval": 0.5})}
            )
            env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
            env["BENCH_MODE"] = mode
            every: list[dict[str, Any]] = []
            for run in range(runs):
                env["BENCH_RUN_ID"] = f"bench-{run}"
                (state / "xcom.json").unlink(missing_ok=True)
                results: dict[str, Any] = {}
                for stage in STAGES:
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--stage",
                            stage,
                            "--state",
                            str(state),
                            "--chunk-size",
                            str(chunk_size),
                        ],
                        check=True,
                        env=env,
                    )
                    results[stage] = json.loads((state / f"{stage}.json").read_text())
                xcoms = json.loads((state / "xcom.json").read_text())
                results["summary"] = xcoms["load"]
                contacts = httpx.get(f"{url}/contacts", params={"limit": 1}, headers={"api-key": api_key}).json()
                results["contacts_in_sandbox"] = contacts["count"]
                every.append(results)
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    return every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--mode", choices=("upsert", "mirror"), default="upsert")
    parser.add_argument("--runs", type=int, default=1, help="DAG runs on the same table (nothing changes between)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.state, args.chunk_size)
        return
    from servers.postgres import start_server

    server = start_server()
    try:
        for rows in args.rows:
            for run, results in enumerate(bench(rows, args.chunk_size, server, args.mode, args.runs), start=1):
                report(rows, args.chunk_size, args.mode, run, results)
    finally:
        server.stop()


def report(rows: int, chunk_size: int, mode: str, run: int, results: dict[str, Any]) -> None:
    total = sum(results[s]["seconds"] for s in STAGES)
    print(f"\n{rows:,} rows (chunk size {chunk_size:,}), mode {mode}, run {run}")
    print(f"  {'stage':<10} {'seconds':>8} {'CPU s':>7} {'rows/s':>10} {'peak RSS MB':>12} {'worker peak MB':>15}")
    for stage in STAGES:
        r = results[stage]
        print(
            f"  {stage:<10} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {rows / r['seconds']:10,.0f}"
            f" {r['peak_rss_mb']:12.0f} {r['worker_peak_rss_mb']:15.0f}"
        )
    print(f"  {'end to end':<10} {total:8.2f} {rows / total:10,.0f}")
    summary = results["summary"]
    counts = ", ".join(
        f"{name} {summary[name]:,}"
        for name in ("created", "updated", "unchanged", "deleted", "rejected", "identity conflicts", "refused")
        if name in summary
    )
    print(f"  {counts}, contacts in sandbox {results['contacts_in_sandbox']:,}")
    print(f"  requests {summary['brevo requests']}; load steps (s): {summary.get('load seconds', '-')}")


if __name__ == "__main__":
    main()

"""Extract throughput and memory of PostgresSource.read against a temporary PostgreSQL server.

Starts a throw-away server with tests/servers/postgres.py, fills a table of 100,000 rows and one of
``--rows`` rows (default 1,000,000) of contact-like data, then reads each, incrementally
((updated_at, id) order through the server-side cursor), in a fresh Python process so the peak
RSS (getrusage ru_maxrss) belongs to that read alone. Prints rows/s, the RSS after imports and
the peak RSS: a constant-memory read has the same peak at 100k and 1M rows.

    .venv/bin/python benchmarks/bench_extract_postgres.py --rows 1000000 --chunk-size 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.postgres: the tests' server helper, usable outside pytest

CONN_ID = "pg_bench"
FIELDS = ["id", "email", "first_name", "last_name", "phone", "updated_at"]


def fill(server: object, dbname: str, table: str, rows: int) -> float:
    """Create ``table`` with ``rows`` rows (ties: 10 rows per second of updated_at); return seconds."""
    started = time.perf_counter()
    with server.connect(dbname) as conn:  # type: ignore[attr-defined]
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text, first_name text, last_name text,"
            " phone text, updated_at timestamptz)"
        )
        conn.execute(
            f"INSERT INTO {table} SELECT i, 'contact.' || i || '@example.com', 'First' || i,"
            " 'Last' || (i % 9973), '+3361234' || lpad((i % 10000)::text, 4, '0'),"
            " '2024-01-01 00:00:00+00'::timestamptz + (i / 10) * interval '1 second'"
            f" FROM generate_series(1, {rows}) AS i"
        )
        conn.execute(f"CREATE INDEX ON {table} (updated_at, id)")
        conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def measure(table: str, chunk_size: int) -> dict[str, float]:
    """In the child process: read the whole table once; report rows, seconds and RSS."""
    from airflow_provider_contactsync.core.spec.models import SqlSource
    from airflow_provider_contactsync.sources import ReadWindow, open_source

    spec = SqlSource(
        type="postgres",
        name="bench",
        conn_id=CONN_ID,
        table=f"public.{table}",
        fields=FIELDS,
        updated_field="updated_at",
        key="id",
    )
    source = open_source(spec)
    source.discover()  # warm-up: import Airflow and the hook, resolve the connection (not timed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = chunks = 0
    started = time.perf_counter()
    for chunk in source.read(ReadWindow(), chunk_size=chunk_size):
        rows += len(chunk)
        chunks += 1
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "chunks": chunks, "seconds": seconds, "rss_before_kib": before, "peak_rss_kib": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", "-n", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--measure", metavar="TABLE", help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)

    if args.measure:
        print(json.dumps(measure(args.measure, args.chunk_size)))
        return 0

    from servers.postgres import start_server

    sizes = sorted({min(100_000, args.rows), args.rows})
    with start_server(settings={"shared_buffers": "256MB"}) as server:
        dbname = server.create_database("bench")
        env = dict(os.environ)
        env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="contactsync-bench-airflow-"))
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = server.airflow_connection(dbname)
        print(f"PostgreSQL on {server.host}:{server.port}; chunk_size {args.chunk_size}; fields {FIELDS}")
        print(f"{'rows':>10} {'fill s':>7} {'read s':>7} {'rows/s':>10} {'RSS before read':>16} {'peak RSS':>9}")
        for size in sizes:
            table = f"customers_{size}"
            filled = fill(server, dbname, table, size)
            child = subprocess.run(
                [sys.executable, __file__, "--measure", table, "--chunk-size", str(args.chunk_size)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            assert result["rows"] == size, result
            print(
                f"{size:>10,} {filled:>7.1f} {result['seconds']:>7.2f} {size / result['seconds']:>10,.0f}"
                f" {result['rss_before_kib'] / 1024:>12.0f} MiB {result['peak_rss_kib'] / 1024:>5.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

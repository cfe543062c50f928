"""Database sources side by side: read rows/s and peak RSS of PostgreSQL, MongoDB, BigQuery and Snowflake.

    python benchmarks/bench_db_sources.py [--rows 50000 200000] [--chunk-size 10000] [--only postgres mongo ...]

Each source holds the same contacts (id, email, first name, a nested address, a tags array, an
updated_at timestamp with ten rows per second, so the cursor has ties) and is read the way a run
reads it: ``Source.read`` of an incremental definition (``address.city`` dotted field, ``(updated_at,
id)`` order), in a fresh Python process per read so the RSS figures are that read's alone.

- PostgreSQL: the tests' real server (tests/servers/postgres.py), jsonb address, text[] tags.
- MongoDB: mongomock (no mongod installs here) in the reading process itself, so the collection's
  memory is in that process: the table shows the RSS before the read and the read's own growth.
- BigQuery: the bqemulator process (tests/servers/bigquery.py), driven by google-cloud-bigquery.
- Snowflake: fakesnow's HTTP server (DuckDB) in this process, the real snowflake connector in the reader.

The emulators' figures measure the emulators as much as our code (fakesnow answers from DuckDB in
one Arrow batch; bqemulator serves JSON pages); PostgreSQL is the one real server. What the table
shows for every source is the memory: a constant-memory read has the same peak at every size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' server helpers, usable outside pytest

KINDS = ("postgres", "mongo", "bigquery", "snowflake")
FIELDS = ["id", "email", "first_name", "address.city", "tags", "updated_at"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def spec_for(kind: str, rows: int) -> dict[str, Any]:
    """The source definition each reader uses (the same fields, cursor and key for every kind)."""
    spec: dict[str, Any] = {
        "name": "bench",
        "type": kind,
        "conn_id": f"bench_{kind}",
        "fields": list(FIELDS),
        "updated_field": "updated_at",
        "key": "id",
    }
    if kind == "mongo":
        spec.update(collection=f"users_{rows}", fields=["_id" if f == "id" else f for f in FIELDS], key="_id")
    elif kind == "postgres":
        spec["table"] = f"public.users_{rows}"
    elif kind == "bigquery":
        spec["table"] = f"bench.users_{rows}"
    else:
        spec["table"] = f"USERS_{rows}"
    return spec


# -- the reader (child process) -------------------------------------------------------------------


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


def _mongo_client(rows: int) -> Any:
    """mongomock holds the collection in the reading process; documents match the SQL tables' rows.

    mongomock's cursor re-slices its whole result list on every ``next()`` (quadratic: 200,000
    documents take minutes); its ``__next__`` is replaced by a plain index for reads without
    skip/limit, so the figure measures our reading and mongomock's query evaluation, not that slice.
    """
    import mongomock
    import mongomock.collection

    slicing_next = mongomock.collection.Cursor.__next__

    def indexed_next(cursor: Any) -> Any:
        if cursor._skip or cursor._limit:  # noqa: SLF001 - mongomock internals, see above
            return slicing_next(cursor)
        results = cursor._compute_results()  # noqa: SLF001
        if cursor._emitted >= len(results):  # noqa: SLF001
            raise StopIteration
        cursor._emitted += 1  # noqa: SLF001
        return results[cursor._emitted - 1]  # noqa: SLF001

    mongomock.collection.Cursor.__next__ = indexed_next  # type: ignore[method-assign]

    client = mongomock.MongoClient()
    collection = client["bench"][f"users_{rows}"]
    for start in range(0, rows, 10_000):
        collection.insert_many(
            {
                "_id": i,
                "email": f"user{i}@example.com",
                "first_name": f"First{i}",
                "address": {"city": f"City{i % 100}", "zip": f"75{i % 1000:03d}"},
                "tags": ["news", "vip"],
                "updated_at": (T0 + dt.timedelta(seconds=i // 10)).replace(tzinfo=None),
            }
            for i in range(start + 1, min(start + 10_000, rows) + 1)
        )
    return client


def measure(kind: str, rows: int, chunk_size: int) -> dict[str, Any]:
    """Read the whole source once, incrementally; rows, seconds and memory of this process."""
    from airflow_provider_contactsync.core.spec.models import SourceDefinition
    from airflow_provider_contactsync.sources import ReadWindow, open_source

    definition = SourceDefinition.model_validate(
        {
            "integration": "bench",
            "source": spec_for(kind, rows),
            "mapping": {"email": "EMAIL"},
            "destination": {"list_ids": [2]},
        }
    )
    source: Any = open_source(definition.source)
    if kind == "mongo":
        from airflow_provider_contactsync.sources.mongo import MongoSource

        client = _mongo_client(rows)
        hook = type("Hook", (), {"get_conn": lambda self: client, "connection": type("C", (), {"schema": "bench"})()})
        source = MongoSource(definition.source, hook=hook())  # type: ignore[arg-type]
    if kind == "snowflake":
        import snowflake.connector.connection

        # fakesnow serves plain HTTP; SnowflakeHook does not pass the protocol extra on (see the tests).
        snowflake.connector.connection.DEFAULT_CONFIGURATION["protocol"] = ("http", str)
    source.discover()  # warm-up: imports, connection, first request (not timed)
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS count for the read alone
    before = _status_kib("VmRSS")
    count = chunks = 0
    window = ReadWindow(until=dt.datetime.now(dt.timezone.utc))
    started = time.perf_counter()
    for chunk in source.read(window, chunk_size=chunk_size):
        count += len(chunk)
        chunks += 1
    seconds = time.perf_counter() - started
    return {
        "rows": count,
        "chunks": chunks,
        "seconds": seconds,
        "rss_before_kib": before,
        "peak_kib": _status_kib("VmHWM"),
    }


# -- the sources (this process) -------------------------------------------------------------------


@contextlib.contextmanager
def postgres(sizes: list[int]) -> Iterator[dict[str, str]]:
    from servers.postgres import start_server

    with start_server(settings={"shared_buffers": "256MB"}) as server:
        dbname = server.create_database("bench")
        with server.connect(dbname) as conn:
            for rows in sizes:
                conn.execute(
                    f"CREATE TABLE public.users_{rows} (id bigint PRIMARY KEY, email text, first_name text,"
                    " address jsonb, tags text[], updated_at timestamptz)"
                )
                conn.execute(
                    f"INSERT INTO public.users_{rows} SELECT i, 'user' || i || '@example.com', 'First' || i,"
                    " jsonb_build_object('city', 'City' || (i %% 100), 'zip', '75' || lpad((i %% 1000)::text, 3, '0')),"
                    " ARRAY['news', 'vip'], %s::timestamptz + (i / 10) * interval '1 second'"
                    f" FROM generate_series(1, {rows}) AS i",
                    (T0,),
                )
                conn.execute(f"CREATE INDEX ON public.users_{rows} (updated_at, id)")
                conn.execute(f"VACUUM ANALYZE public.users_{rows}")
        yield {"AIRFLOW_CONN_BENCH_POSTGRES": server.airflow_connection(dbname)}


@contextlib.contextmanager
def mongo(sizes: list[int]) -> Iterator[dict[str, str]]:
    yield {}  # mongomock lives in the reader: it seeds its own collection


@contextlib.contextmanager
def snowflake(sizes: list[int]) -> Iterator[dict[str, str]]:
    import fakesnow
    import snowflake.connector

    with fakesnow.server() as server:
        conn = snowflake.connector.connect(**{**server, "network_timeout": 600}, database="BENCH", schema="PUBLIC")
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS BENCH")
        cur.execute("CREATE SCHEMA IF NOT EXISTS BENCH.PUBLIC")
        for rows in sizes:
            cur.execute(
                f"CREATE TABLE BENCH.PUBLIC.USERS_{rows} (ID INT, EMAIL TEXT, FIRST_NAME TEXT, ADDRESS OBJECT,"
                " TAGS ARRAY, UPDATED_AT TIMESTAMP_TZ)"
            )
            cur.execute(
                f"INSERT INTO BENCH.PUBLIC.USERS_{rows} SELECT seq4() + 1, 'user' || (seq4() + 1) || '@example.com',"
                " 'First' || (seq4() + 1),"
                ' PARSE_JSON(\'{"city": "City\' || ((seq4() + 1) % 100) || \'", "zip": "75\' || ((seq4() + 1) % 1000)'
                ' || \'"}\'), PARSE_JSON(\'["news", "vip"]\'),'
                " DATEADD(second, FLOOR((seq4() + 1) / 10), '2026-01-01T00:00:00+00:00'::TIMESTAMP_TZ)"
                f" FROM TABLE(GENERATOR(ROWCOUNT => {rows}))"
            )
        conn.close()
        extra = {
            "account": "fakesnow",
            "database": "BENCH",
            "host": server["host"],
            "port": server["port"],
            "session_parameters": {
                "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
                "nop_regexes": ["^ALTER SESSION SET "],
            },
        }
        connection = {"conn_type": "snowflake", "login": "fake", "password": "snow", "schema": "PUBLIC", "extra": extra}
        yield {"AIRFLOW_CONN_BENCH_SNOWFLAKE": json.dumps(connection)}


@contextlib.contextmanager
def bigquery(sizes: list[int]) -> Iterator[dict[str, str]]:
    from servers.bigquery import start_emulator

    with start_emulator() as emulator:
        client = emulator.client()
        client.create_dataset("bench", exists_ok=True)
        for rows in sizes:
            client.query(
                f"CREATE TABLE bench.users_{rows} AS SELECT i AS id, CONCAT('user', CAST(i AS STRING), '@example.com')"
                " AS email, CONCAT('First', CAST(i AS STRING)) AS first_name,"
                " STRUCT(CONCAT('City', CAST(MOD(i, 100) AS STRING)) AS city,"
                " CONCAT('75', CAST(MOD(i, 1000) AS STRING)) AS zip) AS address, ['news', 'vip'] AS tags,"
                " TIMESTAMP_ADD(TIMESTAMP '2026-01-01 00:00:00+00', INTERVAL DIV(i, 10) SECOND) AS updated_at"
                f" FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS i"
            ).result()
        yield {"AIRFLOW_CONN_BENCH_BIGQUERY": emulator.airflow_connection()}


SETUPS = {"postgres": postgres, "mongo": mongo, "bigquery": bigquery, "snowflake": snowflake}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.rows[0], args.chunk_size)))
        return 0

    home = tempfile.mkdtemp(prefix="contactsync-bench-airflow-")
    base_env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    results: dict[str, dict[int, dict[str, Any]]] = {}
    print(f"chunk_size {args.chunk_size:,}; fields {FIELDS}; incremental on (updated_at, id)\n")
    header = ("source", "rows", "read s", "rows/s", "vs PG", "RSS before", "peak RSS", "growth")
    print("{:<10} {:>9} {:>7} {:>9} {:>6} {:>11} {:>9} {:>7}".format(*header))
    for kind in args.only:
        with SETUPS[kind](args.rows) as env:
            for rows in args.rows:
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--measure",
                        kind,
                        "--rows",
                        str(rows),
                        "--chunk-size",
                        str(args.chunk_size),
                    ],
                    env={**base_env, **env},
                    capture_output=True,
                    text=True,
                )
                if child.returncode:
                    raise SystemExit(f"{kind} reader failed:\n{child.stderr[-3000:]}")
                result = json.loads(child.stdout.strip().splitlines()[-1])
                assert result["rows"] == rows, (kind, result)
                results.setdefault(kind, {})[rows] = result
                speed = rows / result["seconds"]
                baseline = results.get("postgres", {}).get(rows)
                ratio = f"{speed / (rows / baseline['seconds']):5.2f}x" if baseline else "     -"
                before, peak = result["rss_before_kib"] / 1024, result["peak_kib"] / 1024
                print(
                    f"{kind:<10} {rows:>9,} {result['seconds']:>7.2f} {speed:>9,.0f} {ratio:>6} {before:>7.0f} MiB"
                    f" {peak:>5.0f} MiB {peak - before:>3.0f} MiB"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

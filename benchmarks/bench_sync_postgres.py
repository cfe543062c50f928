"""End-to-end sync benchmark: a PostgreSQL table -> five formulas -> mapping -> Brevo sandbox.

    python benchmarks/bench_sync_postgres.py [--rows 100000 1000000] [--chunk-size 50000]
    python benchmarks/bench_sync_postgres.py --rows 1000000 --mode mirror --runs 2   # mirror: run 2 reads 1M again

``--runs 2`` runs the DAG a second time on the same table, nothing changed: an upsert run then reads
nothing new; a mirror run reads the whole table again and checks 1M delivered contacts for deletions.
``--runs 2 --change 1000`` changes 1,000 rows before the second run: the hourly incremental run.

For each size: a fresh table in a temporary PostgreSQL server, a fresh Brevo sandbox in its own
process (Brevo is remote: its work must not share our CPU budget... but on this 2-core machine it
does, which makes these figures conservative), then the four operators run one after another,
each in its own Python process as Airflow workers would run them, so the peak RSS reported is that
task's alone. XCom is stood in for by a JSON file; the cursor store by a dict persisted the same
way. Each stage's time counts only its ``execute()`` (interpreter and Airflow imports excluded);
the load stage includes waiting until the sandbox has finished the imports.

Prints seconds, rows/s and peak RSS per stage, and end-to-end rows/s (rows / sum of stage times).
Also, in the same run:

- each task process's start-up: interpreter start, imports (Airflow, the provider) and the exit,
  around its ``execute()`` (so the cost of four task processes shows beside the work);
- the sandbox's share of the load: the sandbox process's CPU time during the load (its import
  processing stands for Brevo's; on this machine it shares our cores) and the load's wait for it;
- the floor: the same table read by a bare psycopg server-side cursor and the same five formulas
  written by hand (``bench_formulas.handwritten``), one process, no staging; and the ratio of the
  pipeline's own throughput (extract + transform + map + the load's own CPU) to the floor's;
- what the floor leaves out, written by hand in the same process (``HandwrittenRest``: the mapping
  checks, identities and digests, the import bodies, a SQLite ledger row per contact), and the ratio
  of the pipeline's own throughput to the floor plus it.

The Brevo connection uses the hook's default poll interval (``--poll-interval`` to change it).
``--profile load,map`` runs those stages under cProfile (``benchmarks/results/<stage>.prof``).
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


def update(server: Any, dbname: str, rows: int, change: int) -> None:
    """Change ``change`` rows spread over the table (a new first name, a newer cursor value)."""
    step = max(1, rows // change)
    with server.connect(dbname) as conn:
        conn.execute(
            "UPDATE public.customers SET firstname = firstname || 'x', updated_at = now()"
            " WHERE id IN (SELECT generate_series(1, %s, %s) LIMIT %s)",
            (rows, step, change),
        )


def run_stage(stage: str, state: Path, chunk_size: int, definition: dict[str, Any] | None = None) -> None:
    """Child process: run one operator's execute() with a stand-in context; record time and RSS."""
    main_started = time.time()
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
    execute_started = time.time()
    profile_to = os.environ.get("BENCH_PROFILE")
    profiler = None
    if profile_to and stage in profile_to.split(","):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = operator.execute(context)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(ROOT / "benchmarks" / "results" / f"{stage}.prof"))
    execute_ended = time.time()
    xcoms[stage] = result
    xcom_file.write_text(json.dumps(xcoms, default=str))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_mb = children.ru_maxrss / 1024  # largest worker process
    cpu_seconds += children.ru_utime + children.ru_stime  # the stage's worker processes
    (state / f"{stage}.json").write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_rss_mb": peak_mb,
                "worker_peak_rss_mb": workers_mb,
                "main_started": main_started,
                "execute_started": execute_started,
                "execute_ended": execute_ended,
            }
        )
    )


def run_floor(table: str, chunk_size: int) -> None:
    """Child process: the floor, a bare server-side read of the table and the hand-written formulas."""
    import psycopg
    from bench_formulas import handwritten

    from airflow_provider_contactsync.core.formulas.contactsync import normalize_phone_number

    normalize_phone_number.cache_clear()  # as in bench_formulas: no head start from another run
    fields = DEFINITION["source"]["fields"]
    started = time.perf_counter()
    rows = rejected = 0
    read_seconds = 0.0
    rest = HandwrittenRest()
    with psycopg.connect(os.environ["BENCH_FLOOR_DSN"]) as conn, conn.cursor(name="floor") as cursor:
        cursor.itersize = chunk_size
        cursor.execute(f"SELECT {', '.join(fields)} FROM {table} ORDER BY updated_at, id")  # noqa: S608 - constants
        while True:
            before = time.perf_counter()
            batch = cursor.fetchmany(chunk_size)
            read_seconds += time.perf_counter() - before
            if not batch:
                break
            passed = []
            for values in batch:
                out, errors = handwritten(dict(zip(fields, values, strict=True)))
                rows += 1
                rejected += bool(errors)
                if not errors:
                    passed.append(out)
            rest.chunk(passed)  # outside the floor's clock: rest keeps its own
    seconds = time.perf_counter() - started - sum(rest.seconds.values())
    rest.finish()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "read_seconds": read_seconds,
                "rows": rows,
                "rejected": rejected,
                "rest": rest.seconds,
                "rest_contacts": rest.contacts,
            }
        )
    )


class HandwrittenRest:
    """The work the floor leaves out, written by hand as plainly as it can be: what a hand-made
    sync of the same table would still have to do after the formulas, timed step by step.

    - map: the checks Brevo needs (email pattern, E.164 and possible length, text limits, a float)
      and the import item;
    - identities and digests: each contact's identity and the fingerprint that spares sending it
      unchanged next time;
    - Brevo bodies: the ``POST /contacts/import`` JSON of each chunk;
    - ledger: one SQLite row per contact (identity, identifiers, digest) and the identifier indexes,
      what makes a sync exactly-once across runs and crashes.
    """

    def __init__(self) -> None:
        import hashlib
        import sqlite3

        import msgspec

        from airflow_provider_contactsync.core.attributes import E164_PATTERN, EMAIL_PATTERN, possible_phone

        self.seconds = {"map": 0.0, "identities and digests": 0.0, "Brevo bodies": 0.0, "ledger": 0.0}
        self.contacts = 0
        self._email, self._e164, self._possible = EMAIL_PATTERN.match, E164_PATTERN.match, possible_phone
        self._blake2b, self._canonical = hashlib.blake2b, msgspec.json.Encoder(order="sorted").encode
        self._body = msgspec.json.Encoder().encode
        self._folder = tempfile.TemporaryDirectory(prefix="bench-ledger-")
        self._db = sqlite3.connect(os.path.join(self._folder.name, "ledger.sqlite"))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.execute(
            "CREATE TABLE delivered (identity TEXT PRIMARY KEY, email TEXT, ext_id TEXT, sms TEXT,"
            " digest TEXT NOT NULL) WITHOUT ROWID"
        )

    def chunk(self, rows: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        items = []
        for row in rows:
            email, sms, first, age = row.get("email"), row.get("phone"), row.get("full_name"), row.get("age")
            if email is not None and (len(email) > 254 or not self._email(email)):
                continue
            if sms is not None and (not self._e164(sms) or not self._possible(sms[1:])):
                continue
            if first is not None and (len(first) > 2000 or "\x00" in first):
                continue
            attributes = {"EXT_ID": str(row["id"]), "INCOMPLETE": row["missing"]}
            if sms is not None:
                attributes["SMS"] = sms
            if first is not None:
                attributes["FIRSTNAME"] = first
            if age is not None:
                attributes["AGE"] = float(age)
            items.append(
                {"attributes": attributes, "email": email} if email is not None else {"attributes": attributes}
            )
        mapped = time.perf_counter()
        facts = []
        for item in items:
            email, attributes = item.get("email"), item["attributes"]
            sms = attributes.get("SMS")
            facts.append(
                (
                    "K:" + attributes["EXT_ID"],  # the row key (EXT_ID is the id as text)
                    email.strip().lower() if email else None,
                    attributes["EXT_ID"],
                    sms[1:] if sms else None,
                    self._blake2b(self._canonical(item), digest_size=16).hexdigest(),
                )
            )
        identified = time.perf_counter()
        self._body({"jsonBody": items, "listIds": [2], "updateExistingContacts": True})
        bodied = time.perf_counter()
        with self._db:
            self._db.executemany("INSERT INTO delivered VALUES (?, ?, ?, ?, ?)", facts)
        ledgered = time.perf_counter()
        self.contacts += len(items)
        for step, (start, end) in {
            "map": (started, mapped),
            "identities and digests": (mapped, identified),
            "Brevo bodies": (identified, bodied),
            "ledger": (bodied, ledgered),
        }.items():
            self.seconds[step] += end - start

    def finish(self) -> None:
        started = time.perf_counter()
        for column in ("email", "ext_id", "sms"):
            self._db.execute(f"CREATE INDEX delivered_{column} ON delivered({column})")
        self.seconds["ledger"] += time.perf_counter() - started
        self._db.close()
        self._folder.cleanup()


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


def bench(
    rows: int,
    chunk_size: int,
    server: Any,
    mode: str = "upsert",
    runs: int = 1,
    poll_interval: float | None = None,
    change: int = 0,
) -> list[dict[str, Any]]:
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
            extra = {} if poll_interval is None else {"poll_interval": poll_interval}
            env["AIRFLOW_CONN_BENCH_BREVO"] = json.dumps(
                {"conn_type": "brevo", "host": url, "password": api_key, "extra": json.dumps(extra)}
            )
            env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
            env["BENCH_MODE"] = mode
            every: list[dict[str, Any]] = []
            for run in range(runs):
                if run and change:
                    update(server, dbname, rows, change)
                env["BENCH_RUN_ID"] = f"bench-{run}"
                (state / "xcom.json").unlink(missing_ok=True)
                results: dict[str, Any] = {}
                for stage in STAGES:
                    sandbox_cpu = _cpu_seconds(sandbox.pid)
                    launched = time.time()
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
                    exited = time.time()
                    results[stage] = json.loads((state / f"{stage}.json").read_text())
                    results[stage].update(
                        launched=launched, exited=exited, sandbox_cpu_seconds=_cpu_seconds(sandbox.pid) - sandbox_cpu
                    )
                xcoms = json.loads((state / "xcom.json").read_text())
                results["summary"] = xcoms["load"]
                contacts = httpx.get(f"{url}/contacts", params={"limit": 1}, headers={"api-key": api_key}).json()
                results["contacts_in_sandbox"] = contacts["count"]
                every.append(results)
            floor = subprocess.run(
                [sys.executable, __file__, "--floor", "public.customers", "--chunk-size", str(chunk_size)],
                check=True,
                env=dict(env, BENCH_FLOOR_DSN=server.conn_uri(dbname)),
                capture_output=True,
                text=True,
            )
            for results in every:
                results["floor"] = json.loads(floor.stdout.strip().splitlines()[-1])
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    return every


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (the sandbox's work)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--mode", choices=("upsert", "mirror"), default="upsert")
    parser.add_argument("--runs", type=int, default=1, help="DAG runs on the same table (nothing changes between)")
    parser.add_argument("--change", type=int, default=0, help="rows changed before each run after the first")
    parser.add_argument(
        "--poll-interval", type=float, help="the Brevo connection's poll_interval (default: the hook's)"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated stages to run under cProfile (benchmarks/results/<stage>.prof; slower)",
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", metavar="TABLE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.state, args.chunk_size)
        return
    if args.floor:
        run_floor(args.floor, args.chunk_size)
        return
    from servers.postgres import start_server

    if args.profile:
        os.environ["BENCH_PROFILE"] = args.profile
        (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)

    server = start_server()
    try:
        for rows in args.rows:
            measured = bench(rows, args.chunk_size, server, args.mode, args.runs, args.poll_interval, args.change)
            for run, results in enumerate(measured, start=1):
                report(rows, args.chunk_size, args.mode, run, results)
    finally:
        server.stop()


def report(table_rows: int, chunk_size: int, mode: str, run: int, results: dict[str, Any]) -> None:
    total = sum(results[s]["seconds"] for s in STAGES)
    rows = max(1, results["summary"].get("rows read", table_rows))  # rows/s of the rows this run read
    print(f"\n{table_rows:,} rows (chunk size {chunk_size:,}), mode {mode}, run {run}: {rows:,} rows read")
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

    print(f"  {'process':<10} {'start s':>8} {'imports s':>10} {'execute s':>10} {'exit s':>7}")
    overhead = 0.0
    for stage in STAGES:
        r = results[stage]
        start = r["main_started"] - r["launched"]
        imports = r["execute_started"] - r["main_started"]
        leave = r["exited"] - r["execute_ended"]
        overhead += start + imports + leave
        print(f"  {stage:<10} {start:8.2f} {imports:10.2f} {r['seconds']:10.2f} {leave:7.2f}")
    print(
        f"  four task processes' own start-up and exit: {overhead:.2f} s ({overhead / total:.0%} of the stages' time)"
    )

    load = results["load"]
    waited = (summary.get("load seconds") or {}).get("waiting for Brevo", 0.0)
    print(
        f"  load {load['seconds']:.2f} s: its own CPU {load['cpu_seconds']:.2f} s; sandbox CPU during it"
        f" {load['sandbox_cpu_seconds']:.2f} s; waiting for the imports to finish {waited:.2f} s"
    )
    own = sum(results[s]["seconds"] for s in ("extract", "transform", "map")) + load["cpu_seconds"]
    floor = results["floor"]
    if rows < floor["rows"]:  # an incremental run: its fixed costs, not its rows, make its time
        print(
            f"  floor: not compared (this run read {rows:,} of the table's {floor['rows']:,} rows; the floor is"
            " a whole-table read); the load above against its own CPU is this run's measure"
        )
        return
    own_rate, floor_rate = rows / own, floor["rows"] / floor["seconds"]
    print(
        f"  floor (bare server-side read {floor['read_seconds']:.2f} s + hand-written formulas, one process):"
        f" {floor['seconds']:.2f} s = {floor_rate:,.0f} rows/s"
    )
    print(
        f"  pipeline's own throughput (extract + transform + map + load CPU = {own:.2f} s): {own_rate:,.0f} rows/s"
        f" = {own_rate / floor_rate:.2f} x the floor"
    )
    rest = floor.get("rest") or {}
    if rest:
        rest_seconds = sum(rest.values())
        steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in rest.items())
        whole = floor["seconds"] + rest_seconds
        print(
            f"  what the floor leaves out, hand-written in its process ({floor.get('rest_contacts', 0):,} contacts):"
            f" {steps} = {rest_seconds:.2f} s"
        )
        print(
            f"  floor with it: {whole:.2f} s = {floor['rows'] / whole:,.0f} rows/s; the pipeline's own throughput"
            f" = {own_rate / (floor['rows'] / whole):.2f} x that"
        )


if __name__ == "__main__":
    main()

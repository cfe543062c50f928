"""Sandbox import throughput: one ``POST /v3/contacts/import`` of N contacts, end to end.

    .venv/bin/python benchmarks/bench_sandbox_import.py [--contacts 50000] [--existing 1000000]

Scenarios, each on a fresh sandbox process (import_delay 0, limits off), two imports in a row:
  empty      N new contacts into an empty account (then N more)
  1M/new     N new contacts into an account already holding ``--existing`` contacts
  1M/update  N contacts that all exist already (same email, ext_id and SMS): updates

Emails and phone numbers are scattered (not in index order), as real ones are. The big account is
filled once with plain SQL (so it does not depend on the code measured) and copied per scenario.
The first import of a process runs on a cold SQLite page cache; the next one is what a sync's
following imports see. "end to end" is from sending the request to reading ``completed`` (HTTP,
body parsing, queueing, the import); "run_import" is the worker's import alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from airflow_provider_contactsync.sandbox import BrevoSandbox, imports  # noqa: E402
from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS  # noqa: E402

API_KEY = "xkeysib-bench-0000000000000000"


def email(i: int) -> str:
    """Unique, and in no particular order (real emails do not arrive sorted: index inserts scatter)."""
    return f"c{(i * 2654435761) % 4294967296:010d}.{i}@example.com"


def phone(i: int) -> str:
    """Unique for i < 10**8 (48271 is prime to 10**8), scattered like email."""
    return f"336{(i * 48271) % 100_000_000:08d}"


def contact(i: int) -> dict[str, Any]:
    """The shape the end-to-end sync sends: email, SMS, EXT_ID (the source key) and three more."""
    return {
        "email": email(i),
        "attributes": {
            "FIRSTNAME": f"First{i} Last{i % 9973}",
            "SMS": "+" + phone(i),
            "EXT_ID": str(i),
            "AGE": float(18 + i % 60),
            "INCOMPLETE": False,
        },
    }


def prepare(db_path: str, existing: int) -> None:
    """A sandbox account with the benchmark's attributes and ``existing`` contacts (plain SQL)."""
    with BrevoSandbox(db_path, API_KEY, **FAST_SETTINGS) as sandbox:
        sandbox.create_attribute("AGE", "float")
        sandbox.create_attribute("INCOMPLETE", "boolean")
    if not existing:
        return
    db = sqlite3.connect(db_path)
    stamp = int(time.time() * 1000)
    with db:
        db.executemany(
            "INSERT INTO contacts(id, email, ext_id, sms, attributes, created_at, modified_at) VALUES (?,?,?,?,?,?,?)",
            (
                (
                    i + 1,
                    email(i),
                    str(i),
                    phone(i),
                    json.dumps({"FIRSTNAME": f"First{i}", "AGE": 30, "INCOMPLETE": False}),
                    stamp,
                    stamp,
                )
                for i in range(existing)
            ),
        )
        db.executemany("INSERT INTO list_members VALUES (2, ?)", ((i + 1,) for i in range(existing)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def serve(db_path: str, timings_path: str) -> None:
    """Child process: the sandbox, with each run_import's seconds appended to ``timings_path``."""
    original = imports.run_import

    def timed(db: sqlite3.Connection, payload: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return original(db, payload)
        finally:
            with open(timings_path, "a") as out:
                out.write(f"{time.perf_counter() - started}\n")

    imports.run_import = timed
    with BrevoSandbox(db_path, API_KEY, **FAST_SETTINGS) as sandbox:
        print(sandbox.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def run(db_path: str, batches: list[list[dict[str, Any]]]) -> list[tuple[float, float, dict[str, Any]]]:
    """(seconds end to end, seconds inside run_import, info.import) per import, one after another
    into one sandbox process of its own (the sandbox must not share this process' GIL)."""
    timings_path = db_path + ".timings"
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", db_path, timings_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    out = []
    try:
        url = child.stdout.readline().strip()
        with httpx.Client(base_url=url, headers={"api-key": API_KEY}, timeout=120) as client:
            for rows in batches:
                body = json.dumps({"jsonBody": rows, "listIds": [2], "updateExistingContacts": True}).encode()
                started = time.perf_counter()
                response = client.post("/contacts/import", content=body, headers={"Content-Type": "application/json"})
                response.raise_for_status()
                pid = response.json()["processId"]
                while (process := client.get(f"/processes/{pid}").json())["status"] not in ("completed", "failed"):
                    time.sleep(0.01)
                elapsed = time.perf_counter() - started
                if process["status"] != "completed":
                    raise RuntimeError(f"import failed: {process}")
                inside = float(Path(timings_path).read_text().split()[-1])
                out.append((elapsed, inside, process["info"]["import"]))
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", "-n", type=int, default=50_000)
    parser.add_argument("--existing", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    n, existing = args.contacts, args.existing
    step = max(existing // (2 * n), 1)

    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        empty = os.path.join(tmp, "empty.db")
        big = os.path.join(tmp, "big.db")
        started = time.perf_counter()
        prepare(empty, 0)
        prepare(big, existing)
        print(f"prepared an account of {existing:,} contacts in {time.perf_counter() - started:.1f}s")
        print("each scenario: two imports of N contacts in one sandbox process, the first on a cold page cache")
        big_label = f"{existing // 1000}k" if existing < 1_000_000 else f"{existing / 1e6:g}M"
        scenarios = [
            ("empty", empty, [[contact(existing + k * n + i) for i in range(n)] for k in range(2)]),
            (f"{big_label}/new", big, [[contact(existing + k * n + i) for i in range(n)] for k in range(2)]),
            (f"{big_label}/update", big, [[contact(2 * i * step + k * step) for i in range(n)] for k in range(2)]),
        ]
        for label, source, batches in scenarios:
            target = os.path.join(tmp, "run.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(target + suffix):
                    os.remove(target + suffix)
            shutil.copyfile(source, target)
            for k, (elapsed, inside, info) in enumerate(run(target, batches)):
                counters = {key: v for key, v in info.items() if v}
                print(
                    f"{label:<11} {('first', 'next')[k]:<5} {n:>7,} contacts"
                    f"   end to end {elapsed:5.2f}s {n / elapsed:>8,.0f}/s"
                    f"   run_import {inside:5.2f}s {n / inside:>8,.0f}/s   {counters or ''}"
                )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(main())

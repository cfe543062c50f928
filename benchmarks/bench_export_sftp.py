"""Export benchmark (issue 16): N contacts from the Brevo sandbox to a real sshd, gzip + OpenPGP, two-step.

    .venv/bin/python benchmarks/bench_export_sftp.py [--contacts 1000000]

The export's two operators (build_file, deliver) run in a child process of their own, so its peak RSS
is the export's alone (the sandbox serves from this process; gpg's peak is the child's children).
Prints the time of each step (from the execution record), the file's size, and the time of a plain
``cp`` of a file of the same size on this machine, with the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FIELDS = ["EXT_ID", "EMAIL", "FIRSTNAME", "LASTNAME", "MODIFIED_TIME"]


def seed(sandbox: Any, contacts: int, list_id: int) -> None:
    """Write the contacts straight into the sandbox's store (seeding is not what is measured)."""
    now = int(time.time() * 1000)
    with sandbox.store.transaction() as db:
        batch = []
        for n in range(1, contacts + 1):
            attributes = json.dumps({"FIRSTNAME": f"First{n}", "LASTNAME": f"Last{n}"})
            batch.append((f"contact{n}@example.com", f"C{n:08d}", int(n % 10 == 0), attributes, now, now + n))
            if len(batch) == 50_000:
                _insert(db, batch, list_id)
                batch = []
        if batch:
            _insert(db, batch, list_id)


def _insert(db: Any, batch: list[tuple[Any, ...]], list_id: int) -> None:
    db.executemany(
        "INSERT INTO contacts(email, ext_id, email_blacklisted, attributes, created_at, modified_at)"
        " VALUES (?,?,?,?,?,?)",
        batch,
    )
    db.execute(
        "INSERT INTO list_members SELECT ?, id FROM contacts WHERE id > (SELECT COALESCE(MAX(contact_id), 0)"
        " FROM list_members WHERE list_id = ?)",
        (list_id, list_id),
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory since it was exec'd (``VmHWM``).

    Not ``ru_maxrss``: Linux carries it across exec, so a child forked from a big parent (this benchmark
    holds the sandbox's million contacts) would report the parent's size.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(spec_path: str, staging: str) -> None:
    """Run build_file then deliver in this process; print timings and peak RSS as JSON."""
    from airflow_provider_contactsync.core.spec.loader import load_definition
    from airflow_provider_contactsync.exports import history
    from airflow_provider_contactsync.operators.export import (
        ContactsyncExportDeliverOperator,
        ContactsyncExportOperator,
    )

    definition = load_definition(spec_path)
    spec = definition.model_dump(mode="json")
    results: dict[str, Any] = {}

    class TI:
        def xcom_pull(self, task_ids: str) -> Any:
            return results[task_ids]

    context = {"run_id": "bench", "params": {}, "logical_date": dt.datetime.now(dt.timezone.utc), "ti": TI()}
    started = time.perf_counter()
    build = ContactsyncExportOperator(task_id="build_file", definition=spec, staging=staging)
    results["build_file"] = build.run_task(context)
    built = time.perf_counter()
    deliver = ContactsyncExportDeliverOperator(task_id="deliver", definition=spec, staging=staging)
    results["deliver"] = deliver.run_task(context)
    done = time.perf_counter()
    record = history.read_record(staging, definition.dag_id, "bench")
    assert record is not None
    print(
        json.dumps(
            {
                "build_s": built - started,
                "deliver_s": done - built,
                "total_s": done - started,
                "rows": record.rows,
                "size": record.size,
                "steps": [(s.name, s.seconds) for s in record.steps],
                "peak_rss_mb": peak_rss_mb(),
                "delivered": results["deliver"]["location"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from pgp_keys import dispose_keypair, generate_keypair
    from servers.sftp import start_server

    from airflow_provider_contactsync.sandbox import BrevoSandbox

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    sandbox = BrevoSandbox(work / "brevo.sqlite", "bench-key").start()
    sandbox.configure(import_delay=0.0)
    sftp = start_server()
    pair = generate_keypair("bench")
    try:
        list_id = sandbox.create_list("newsletter")
        t0 = time.perf_counter()
        seed(sandbox, args.contacts, list_id)
        print(f"seeded {args.contacts:,} contacts in {time.perf_counter() - t0:.1f} s (not measured)")
        folder = sftp.remote_path("bench-out")
        definition = work / "export.yaml"
        definition.write_text(
            f"""
kind: export
integration: bench
name: newsletter
brevo_conn_id: bench_brevo
content:
  contacts: list
  list_id: {list_id}
  read: export
  fields: [{", ".join(FIELDS)}]
file: {{name: "newsletter_{{date:%Y%m%d}}", compression: gzip, encryption: {{recipients: [{{conn_id: bench_pgp}}]}}}}
destination: {{type: sftp, conn_id: bench_sftp, folder: {folder}, two_step: true}}
confirmation: {{format: json}}
"""
        )
        env = {
            **os.environ,
            "AIRFLOW_CONN_BENCH_BREVO": json.dumps(
                {"conn_type": "brevo", "host": sandbox.url, "password": "bench-key", "extra": {"poll_interval": 0.2}}
            ),
            "AIRFLOW_CONN_BENCH_SFTP": sftp.airflow_connection(),
            "AIRFLOW_CONN_BENCH_PGP": json.dumps({"conn_type": "generic", "extra": {"public_key": pair.public}}),
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(definition), f"file://{work}/staging"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-5000:])
            raise SystemExit(out.returncode)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        size = result["size"]
        sample = work / "same-size.bin"
        with open(sample, "wb") as stream:
            stream.write(os.urandom(size))
        t0 = time.perf_counter()
        subprocess.run(["cp", str(sample), str(work / "copy.bin")], check=True)
        subprocess.run(["sync"], check=False)
        cp_s = time.perf_counter() - t0
        print(f"export of {result['rows']:,} contacts (gzip + OpenPGP, SFTP two-step, confirmation file):")
        for name, seconds in result["steps"]:
            print(f"  {seconds:8.2f} s  {name}")
        print(
            f"  build_file {result['build_s']:.2f} s, deliver {result['deliver_s']:.2f} s, "
            f"total {result['total_s']:.2f} s"
        )
        print(f"  file {size / 1e6:.1f} MB at {result['delivered']}")
        print(f"  peak RSS of the export process: {result['peak_rss_mb']:.0f} MB (gpg beside it: ADR 0013)")
        print(f"plain cp of a {size / 1e6:.1f} MB file: {cp_s:.2f} s; export/cp = {result['total_s'] / cp_s:.0f}x")
    finally:
        dispose_keypair(pair)
        sftp.stop() if hasattr(sftp, "stop") else None
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

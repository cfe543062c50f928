"""File sources: extract rows/s from a local folder, SFTP (sshd) and FTP (pyftpdlib) side by side, then
a full sync of a large CSV from SFTP with the peak RSS of each task.

    python benchmarks/bench_file_sources.py [--compare-mb 200] [--big-mb 1024]

The CSV has ~1 KB rows (an id, email, phone, names and a long notes column that is not imported),
as wide contact exports are. Every stage runs ``execute()`` of the real operator in its own
process (as Airflow workers would), so each peak RSS is that task's alone. The servers are the
tests' own (tests/servers): real sshd and a pyftpdlib server on 127.0.0.1, sharing the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_sync_postgres  # noqa: E402
from bench_sync_postgres import start_sandbox  # noqa: E402

STAGES = ("extract", "transform", "map", "load")
NOTES = "x" * 900


def write_csv(path: Path, megabytes: int) -> int:
    """A CSV of about ``megabytes`` MB; returns its row count."""
    target = megabytes * 1024 * 1024
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,email,phone,first_name,last_name,notes\n")
        size = 0
        while size < target:
            lines = []
            for i in range(rows + 1, rows + 10_001):
                lines.append(
                    f"{i}, User{i}@Example.com ,06{(i * 7919) % 100_000_000:08d},First{i},Last{i % 997},{NOTES}\n"
                )
            block = "".join(lines)
            out.write(block)
            size += len(block)
            rows += 10_000
    return rows


def definition(kind: str, path: str, conn_id: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {
        "name": "drop",
        "type": kind,
        "path": path,
        "pattern": "*.csv",
        "fields": ["id", "email", "phone", "first_name", "last_name"],
        "key": "id",
    }
    if conn_id:
        source["conn_id"] = conn_id
    return {
        "integration": f"bench{kind}",
        "source": source,
        "transform": {"email": "email.normalizeEmail()", "phone": 'phone.normalizePhoneNumber("FR")'},
        "mapping": {
            "email": "EMAIL",
            "phone": "SMS",
            "id": "EXT_ID",
            "first_name": "FIRSTNAME",
            "last_name": "LASTNAME",
        },
        "destination": {"conn_id": "bench_brevo", "list_ids": [2]},
        "alerts": {"max_error_rate": 1.0},
    }


def run_stage(stage: str, state: Path) -> None:
    """Child process: the PostgreSQL benchmark's stage runner, on this benchmark's definition."""
    bench_sync_postgres.run_stage(stage, state, 50_000, json.loads((state / "definition.json").read_text()))


def stages(spec: dict[str, Any], env: dict[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="contactsync-bench-files-") as tmp:
        state = Path(tmp)
        (state / "definition.json").write_text(json.dumps(spec))
        results: dict[str, Any] = {}
        for stage in names:
            subprocess.run([sys.executable, __file__, "--stage", stage, "--state", str(state)], check=True, env=env)
            results[stage] = json.loads((state / f"{stage}.json").read_text())
        results["xcom"] = json.loads((state / "xcom.json").read_text())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-mb", type=int, default=200, help="file size for the side-by-side extract")
    parser.add_argument("--big-mb", type=int, default=1024, help="file size for the full sync from SFTP (0: skip)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.state)
        return
    from servers import ftp, sftp

    sftp_server = sftp.start_server()
    ftp_base = Path(tempfile.mkdtemp(prefix="contactsync-bench-ftp-"))
    ftp_server = ftp.start_server(ftp_base)
    local = Path(tempfile.mkdtemp(prefix="contactsync-bench-local-"))
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = str(local / "airflow-home")
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    env["AIRFLOW_CONN_BENCH_SFTP"] = sftp_server.airflow_connection()
    env["AIRFLOW_CONN_BENCH_FTP"] = ftp_server.airflow_connection()
    try:
        data = local / "inbox" / "contacts.csv"
        data.parent.mkdir()
        rows = write_csv(data, args.compare_mb)
        size_mb = data.stat().st_size / 1024 / 1024
        sftp_server.put("compare/contacts.csv", data.read_bytes())
        ftp_server.put("compare/contacts.csv", data.read_bytes())
        print(f"\nExtract of one {size_mb:,.0f} MB CSV ({rows:,} rows), same file on each source")
        print(f"  {'source':<8} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>12}")
        local_rate = None
        for kind, path, conn in (
            ("file", str(data.parent), None),
            ("sftp", sftp_server.remote_path("compare"), "bench_sftp"),
            ("ftp", ftp_server.remote_path("compare"), "bench_ftp"),
        ):
            r = stages(definition(kind, path, conn), env, ("extract",))["extract"]
            rate = rows / r["seconds"]
            local_rate = local_rate or rate
            print(
                f"  {kind:<8} {r['seconds']:8.2f} {rate:10,.0f} {size_mb / r['seconds']:7.1f} {r['peak_rss_mb']:12.0f}"
                f"   ({rate / local_rate:.2f}x local)"
            )
        data.unlink()
        if args.big_mb:
            big = local / "big.csv"
            rows = write_csv(big, args.big_mb)
            size_mb = big.stat().st_size / 1024 / 1024
            os.replace(big, sftp_server._parent("big/contacts.csv"))
            sftp_server._own(sftp_server.path("big/contacts.csv"))
            api_key = secrets.token_hex(8)
            sandbox, url = start_sandbox(local, api_key)
            try:
                env["AIRFLOW_CONN_BENCH_BREVO"] = json.dumps(
                    {
                        "conn_type": "brevo",
                        "host": url,
                        "password": api_key,
                        "extra": json.dumps({"poll_interval": 0.5}),
                    }
                )
                results = stages(definition("sftp", sftp_server.remote_path("big"), "bench_sftp"), env, STAGES)
            finally:
                sandbox.terminate()
                sandbox.wait(timeout=30)
            print(f"\nFull sync of a {size_mb:,.0f} MB CSV ({rows:,} rows) from SFTP into the sandbox")
            print(f"  {'stage':<10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'worker peak MB':>15}")
            for stage in STAGES:
                r = results[stage]
                print(
                    f"  {stage:<10} {r['seconds']:8.2f} {rows / r['seconds']:10,.0f} {r['peak_rss_mb']:12.0f}"
                    f" {r['worker_peak_rss_mb']:15.0f}"
                )
            total = sum(results[s]["seconds"] for s in STAGES)
            summary = results["xcom"]["load"]
            print(f"  {'end to end':<10} {total:8.2f} {rows / total:10,.0f}")
            print(f"  created {summary['created']:,}, rejected {summary['rejected']:,}, failed {summary['failed']:,}")
    finally:
        sftp_server.stop()
        ftp.stop_server(ftp_server.process)


if __name__ == "__main__":
    main()

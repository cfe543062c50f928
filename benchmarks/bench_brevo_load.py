"""Bulk-load N contacts into the sandbox through BrevoHook.import_contacts + wait_for_processes.

Prints requests per 1,000 contacts (from the sandbox's own request log, so it counts what really
reached the server), import bodies sent, and contacts/s. Target: at most 1 request per 1,000
contacts, polling aside.

    .venv/bin/python benchmarks/bench_brevo_load.py --contacts 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Airflow reads its home at import time: isolate it before the hook module imports airflow.sdk.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="contactsync-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

API_KEY = "xkeysib-bench-0000000000000000"
CONN_ID = "brevo_bench"


def contacts(n: int) -> Iterator[dict[str, Any]]:
    """Realistic-ish contacts: an email, two names, a phone-less SMS-free payload of ~120 bytes."""
    for i in range(n):
        yield {
            "email": f"bench.contact.{i:08d}@example.com",
            "attributes": {"FIRSTNAME": f"First{i}", "LASTNAME": f"Last{i % 9973}", "EXT_ID": f"ext-{i}"},
        }


def _path(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("path") or entry.get("url") or "")
    return str(getattr(entry, "path", entry))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", "-n", type=int, default=100_000)
    parser.add_argument("--max-body-bytes", type=int, default=8_000_000)
    parser.add_argument("--import-delay", type=float, default=None, help="sandbox import_delay (s)")
    args = parser.parse_args(argv)

    from airflow_provider_contactsync.hooks.brevo import BrevoHook
    from airflow_provider_contactsync.sandbox import BrevoSandbox

    settings: dict[str, Any] = {}
    if args.import_delay is not None:
        settings["import_delay"] = args.import_delay
    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        sandbox = BrevoSandbox(os.path.join(tmp, "brevo.db"), API_KEY, **settings)
        with sandbox:
            list_id = _list_id(sandbox.create_list("bench"))
            for name in ("FIRSTNAME", "LASTNAME", "EXT_ID"):
                try:
                    sandbox.create_attribute(name, "text")
                except Exception:  # noqa: BLE001 - may already exist (EXT_ID is built in at Brevo)
                    pass
            sandbox.clear_requests()
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
                {"conn_type": "brevo", "host": sandbox.url, "password": API_KEY}
            )
            hook = BrevoHook(CONN_ID)
            n = args.contacts
            started = time.perf_counter()
            process_ids = hook.import_contacts(contacts(n), list_ids=[list_id], max_body_bytes=args.max_body_bytes)
            uploaded = time.perf_counter()
            docs = hook.wait_for_processes(process_ids)
            finished = time.perf_counter()
            hook.close()

            time.sleep(0.2)  # the sandbox logs a request just after answering it
            log = sandbox.requests()
            by_path = Counter(_path(e).split("?", 1)[0] for e in log)
            polls = sum(c for p, c in by_path.items() if "/processes" in p)
            total = sum(by_path.values())
            stored = len(sandbox.contacts())

    not_polling = total - polls
    print(f"contacts loaded         : {n:,} (sandbox now holds {stored:,})")
    print(f"import bodies sent      : {hook.stats.import_bodies} (limit {args.max_body_bytes:,} bytes)")
    print(f"processes               : {len(docs)} completed")
    print(f"requests (sandbox log)  : {total} total, {not_polling} excluding {polls} /processes polls")
    per_k, per_k_all = 1000 * not_polling / n, 1000 * total / n
    print(f"requests / 1,000        : {per_k:.4f} (polling aside), {per_k_all:.4f} (all)")
    print(f"upload                  : {uploaded - started:.2f} s, {n / (uploaded - started):,.0f} contacts/s")
    print(f"end to end (completed)  : {finished - started:.2f} s, {n / (finished - started):,.0f} contacts/s")
    print(
        f"hook stats              : {dict(hook.stats.requests)}, retries={hook.stats.retries}, "
        f"429s={hook.stats.rate_limited}, waited={hook.stats.wait_seconds:.1f} s"
    )
    ok = stored >= n and 1000 * not_polling / n <= 1
    return 0 if ok else 1


def _list_id(created: Any) -> int:
    if isinstance(created, dict):
        return int(created["id"])
    return int(created)


if __name__ == "__main__":
    raise SystemExit(main())

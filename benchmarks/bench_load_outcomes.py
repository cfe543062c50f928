"""What accounting for every contact costs in requests: the load with and without refusals.

    .venv/bin/python benchmarks/bench_load_outcomes.py [--contacts 100000] [--refused 10] [--changes 1000]

Runs the real :class:`ContactLoader` (pre-flight, ledger, imports, settling) against the Brevo
sandbox, counting every request the sandbox received, by endpoint family:

(a) a first load of N new contacts, no refusal;
(b) the same N contacts into a fresh account where ``--refused`` of them have an EXT_ID that another
    contact already holds (Brevo refuses them; the loader reads back and names each holder);
(c) an incremental run of (b)'s ledger where ``--changes`` contacts changed their email on a known
    EXT_ID (each one given its new email before the import) and the refused ones are retried.

Prints requests per 1,000 contacts: the import itself (bodies and process polls) and what finding
out what Brevo did adds (contact counts, read-back pages, lookups, identity changes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="contactsync-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

API_KEY = "xkeysib-bench-0000000000000000"
CONN_ID = "brevo_bench_outcomes"
CHUNK = 50_000


def rows(n: int, *, email_prefix: str = "user") -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, {"email": f"{email_prefix}.{i:08d}@example.com", "attributes": {"EXT_ID": str(i), "FIRSTNAME": f"F{i}"}})
        for i in range(n)
    ]


def load(hook: Any, ledger_path: str, contacts: list[tuple[int, dict[str, Any]]]) -> Any:
    from airflow_provider_contactsync.core.spec import Destination
    from airflow_provider_contactsync.load import ContactLedger, ContactLoader

    chunks = {f"c{i}": contacts[i : i + CHUNK] for i in range(0, len(contacts), CHUNK)}
    ledger = ContactLedger(ledger_path)
    try:
        loader = ContactLoader(
            hook, ledger, Destination(list_ids=[2]), full_refresh=False, keyed=True, read_chunk=chunks.__getitem__
        )
        return loader.run(list(chunks))
    finally:
        ledger.close()


def families(sandbox: Any) -> Counter[str]:
    counted: Counter[str] = Counter()
    for entry in sandbox.requests():
        path, query = entry["path"], entry.get("query") or {}
        if path.startswith("/v3/processes"):
            counted["process polls"] += 1
        elif path == "/v3/contacts/import":
            counted["import bodies"] += 1
        elif path == "/v3/contacts" and entry["method"] == "GET":
            counted["read-back pages" if "modifiedSince" in query else "contact counts"] += 1
        elif path.startswith("/v3/contacts/batch") or entry["method"] == "PUT":
            counted["identity changes"] += 1
        elif path.startswith("/v3/contacts/") and entry["method"] == "GET":
            counted["holder lookups"] += 1
        else:
            counted[f"{entry['method']} {path}"] += 1
    return counted


def report(title: str, sandbox: Any, n: int, result: Any, elapsed: float) -> None:
    time.sleep(0.2)  # the sandbox logs a request just after answering it
    counted = families(sandbox)
    base = counted["import bodies"] + counted["process polls"]
    extra = sum(counted.values()) - base
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counted.items()))
    outcome = {k: v for k, v in result.counts.items() if v}
    print(f"\n{title}\n  contacts {n:,}; outcome {outcome}; load seconds {result.seconds}; {elapsed:.1f} s in all")
    print(f"  requests: {shown}")
    print(f"  per 1,000 contacts: import {1000 * base / n:.3f}, finding out what Brevo did {1000 * extra / n:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", "-n", type=int, default=100_000)
    parser.add_argument("--refused", type=int, default=10)
    parser.add_argument("--changes", type=int, default=1000)
    args = parser.parse_args(argv)

    import httpx

    from airflow_provider_contactsync.hooks.brevo import BrevoHook
    from airflow_provider_contactsync.sandbox import BrevoSandbox
    from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

    n = args.contacts
    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        for case in ("clean", "refused"):
            sandbox = BrevoSandbox(os.path.join(tmp, f"{case}.db"), API_KEY, **FAST_SETTINGS)
            with sandbox:
                os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
                    {"conn_type": "brevo", "host": sandbox.url, "password": API_KEY, "extra": {"poll_interval": 0.5}}
                )
                step = max(1, n // max(1, args.refused))
                if case == "refused":
                    for i in range(0, n, step)[: args.refused]:
                        httpx.post(
                            f"{sandbox.url}/contacts",
                            json={"email": f"holder{i}@example.com", "attributes": {"EXT_ID": str(i)}},
                            headers={"api-key": API_KEY},
                        ).raise_for_status()
                sandbox.clear_requests()
                ledger = os.path.join(tmp, f"{case}.sqlite")
                with BrevoHook(CONN_ID) as hook:
                    started = time.perf_counter()
                    result = load(hook, ledger, rows(n))
                    report(
                        f"({'a' if case == 'clean' else 'b'}) first load, {case}",
                        sandbox,
                        n,
                        result,
                        time.perf_counter() - started,
                    )
                    if case == "refused":
                        changed = rows(n)
                        for i in range(1, n, max(1, n // max(1, args.changes)))[: args.changes]:
                            changed[i][1]["email"] = f"moved.{i:08d}@example.com"
                        sandbox.clear_requests()
                        started = time.perf_counter()
                        result = load(
                            hook, ledger, [changed[i] for i in range(n) if changed[i][1]["email"].startswith("moved")]
                        )
                        report(
                            f"(c) {args.changes} email changes + {args.refused} retries",
                            sandbox,
                            args.changes,
                            result,
                            time.perf_counter() - started,
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

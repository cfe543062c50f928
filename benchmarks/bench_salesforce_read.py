"""Salesforce reads and write-backs: rows/s and API calls per 10,000 contacts, both directions.

    python benchmarks/bench_salesforce_read.py [--contacts 200000] [--modes bulk rest] [--writeback 10000]

Seeds the Salesforce sandbox (HTTPS on 127.0.0.1, in this process's threads) with N Contacts, then
reads them through the salesforce source as a run's extract does (SalesforceHook from an Airflow
connection, ``read: bulk`` or ``rest``), counting rows, seconds and the API calls the sandbox saw.
The sandbox's own work (SQLite, CSV, JSON) runs on the same 2 cores as the reader, so the figures
are a floor of what a real org would allow; Salesforce's own job processing time is not modelled.

Measured on the 2-core machine, 2026-11-27, 200,000 contacts:

    bulk: 16,128 rows/s (12.4 s), 7 API calls = 0.35 per 10,000 contacts (one job, 4 result pages);
          about 5 s of it is simple-salesforce's job-status poll interval, paid once per run
    rest: 27,274 rows/s (7.3 s), 101 API calls = 5.0 per 10,000 contacts (queryAll + 99 queryMore)

    writeback (Brevo -> Salesforce), 10,000 linked contacts changed: 100 API calls = 100 per 10,000
          (one SOQL read of 200 records' current values + one composite update of 200), 7,290 records/s

Bulk costs 14x fewer API calls (Salesforce's daily API limit) at a fixed few seconds per run: hence
``read: auto`` goes bulk above ``bulk_threshold`` (10,000) records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--modes", nargs="+", default=["bulk", "rest"], choices=["bulk", "rest"])
    parser.add_argument("--writeback", type=int, default=10_000, help="Brevo changes written back (0: none)")
    args = parser.parse_args(argv)

    from airflow_provider_contactsync.core.spec import SourceDefinition
    from airflow_provider_contactsync.salesforce_sandbox import SalesforceSandbox
    from airflow_provider_contactsync.sources import open_source
    from airflow_provider_contactsync.sources.base import ReadWindow

    with tempfile.TemporaryDirectory(prefix="contactsync-sf-bench-") as tmp:
        sandbox = SalesforceSandbox(Path(tmp) / "org.sqlite3").start()
        try:
            os.environ.update(sandbox.environ("bench_sf"))
            started = time.perf_counter()
            for start in range(0, args.contacts, 50_000):
                sandbox.seed(
                    "Contact",
                    [
                        {"FirstName": f"F{n}", "LastName": f"L{n}", "Email": f"p{n}@example.com",
                         "SystemModstamp": (T0 + dt.timedelta(seconds=n // 3)).isoformat()}
                        for n in range(start, min(args.contacts, start + 50_000))
                    ],
                )  # fmt: skip
            print(f"seeded {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s")
            for mode in args.modes:
                definition = SourceDefinition.model_validate(
                    {"integration": "bench", "consent": {"opt_in_confirmed": True},
                     "source": {"type": "salesforce", "name": "contacts", "conn_id": "bench_sf", "object": "Contact",
                                "read": mode},
                     "destination": {"list_ids": [2]}}
                )  # fmt: skip
                source = open_source(definition.source)
                sandbox.clear_calls()
                started = time.perf_counter()
                rows = sum(len(chunk) for chunk in source.read(ReadWindow(), chunk_size=50_000))
                seconds = time.perf_counter() - started
                calls = sandbox.calls()
                total = calls.pop("total")
                per_10k = total * 10_000 / max(rows, 1)
                print(
                    f"{mode:>4}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s; "
                    f"{total} API calls ({per_10k:.1f} per 10,000 contacts): "
                    + ", ".join(f"{kind} {n}" for kind, n in calls.items() if n)
                )
            if args.writeback:
                writeback(sandbox, definition, min(args.writeback, args.contacts))
        finally:
            sandbox.stop()


def writeback(sandbox: Any, definition: Any, count: int) -> None:
    """The Brevo -> Salesforce direction: ``count`` linked contacts changed in Brevo, written back."""
    from collections import Counter

    from airflow_provider_contactsync.operators.salesforce_writeback import (
        BATCH,
        ContactsyncSalesforceWritebackOperator,
    )
    from airflow_provider_contactsync.sources import open_source

    records = sandbox.records("Contact")[:count]
    contacts = [
        {"email": r["Email"], "attributes": {"EXT_ID": r["Id"], "FIRSTNAME": f"Changed {n}", "LASTNAME": r["LastName"]},
         "modifiedAt": "2030-01-01T00:00:00.000+00:00"}
        for n, r in enumerate(records)
    ]  # fmt: skip
    spec = definition.model_dump(mode="json")
    operator = ContactsyncSalesforceWritebackOperator(task_id="writeback", definition=spec)
    source = open_source(definition.source)
    reverse = {attribute: field for field, attribute in definition.mapping.items()}
    _ = source.describe  # one call, as a run makes
    sandbox.clear_calls()
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    written = sum(
        operator._write(source, contacts[i : i + BATCH], reverse, outcomes, Counter())
        for i in range(0, len(contacts), BATCH)
    )
    seconds = time.perf_counter() - started
    calls = sandbox.calls()
    total = calls.pop("total")
    print(
        f"writeback: {written:,} records written in {seconds:.1f} s = {written / seconds:,.0f} records/s; "
        f"{total} API calls ({total * 10_000 / max(written, 1):.1f} per 10,000 contacts): "
        + ", ".join(f"{kind} {n}" for kind, n in calls.items() if n)
    )


if __name__ == "__main__":
    main()

"""Sync semantics benchmark: HTTP requests per 1,000 removed or re-listed contacts, and what
deletion detection adds to a mirror run over a million delivered contacts.

    .venv/bin/python benchmarks/bench_mirror.py [--contacts 1000] [--delivered 1000000]

1. Requests: 1,000 contacts are imported into a Brevo sandbox and recorded as this source's, then
   removed with each ``deletes.behavior`` (unlink, blacklist, delete) and moved between lists (join
   one list, leave another, as a conditional list does). The sandbox's request log gives the count.
2. Detection: a contact ledger holding ``--delivered`` contacts (keyed, owned); a mirror run's work
   on top of an upsert run is writing the chunks' row keys beside them (``.sync`` sidecars, 50,000
   keys each), reading them back, the anti-join of the ledger against them, and the plan. Timed
   with nothing missing (the steady state) and with 1% missing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def requests_per_1000(count: int) -> dict[str, float]:
    from airflow_provider_contactsync.core.spec import Deletes
    from airflow_provider_contactsync.hooks.brevo import BrevoHook
    from airflow_provider_contactsync.load.bulk import change_lists
    from airflow_provider_contactsync.load.identity import ContactIds
    from airflow_provider_contactsync.load.ledger import ContactLedger, LedgerContact
    from airflow_provider_contactsync.load.removal import Removal, remove
    from airflow_provider_contactsync.sandbox import BrevoSandbox
    from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        api_key = secrets.token_hex(8)
        sandbox = BrevoSandbox(Path(tmp) / "brevo.sqlite", api_key, **FAST_SETTINGS).start()
        os.environ["AIRFLOW_CONN_BENCH_BREVO"] = json.dumps(
            {"conn_type": "brevo", "host": sandbox.url, "password": api_key, "extra": {"poll_interval": 0.01}}
        )
        try:
            source_list, other_list = sandbox.create_list("source"), sandbox.create_list("gold")
            with BrevoHook("bench_brevo") as hook:
                for behavior in ("unlink", "blacklist", "delete"):
                    ledger = ContactLedger(str(Path(tmp) / f"{behavior}.sqlite"))
                    items = [
                        {"email": f"{behavior}{n}@example.com", "attributes": {"EXT_ID": f"{behavior}-{n}"}}
                        for n in range(count)
                    ]
                    hook.wait_for_processes(hook.import_contacts(items, list_ids=[source_list]))
                    removals = [
                        Removal(
                            LedgerContact(f"K:{n}", ContactIds(item["email"], f"{behavior}-{n}"), 1, (), None),
                            "bench",
                        )
                        for n, item in enumerate(items)
                    ]
                    sandbox.clear_requests()
                    remove(hook, ledger, Deletes(behavior=behavior), removals, [source_list])
                    figures[behavior] = len(sandbox.requests()) * 1000 / count
                    ledger.close()
                members = [ContactIds(f"unlink{n}@example.com") for n in range(count)]
                sandbox.clear_requests()
                change_lists(hook, other_list, "add", members)
                change_lists(hook, source_list, "remove", members)
                figures["re-listed (join one list, leave one)"] = len(sandbox.requests()) * 1000 / count
        finally:
            sandbox.stop()
    return figures


def detection(delivered: int, chunk: int = 50_000) -> dict[str, float]:
    from airflow_provider_contactsync.core.spec import Deletes
    from airflow_provider_contactsync.load.ledger import ContactLedger
    from airflow_provider_contactsync.load.removal import plan_removals
    from airflow_provider_contactsync.staging import decode, encode

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        ledger = ContactLedger(str(Path(tmp) / "ledger.sqlite"))
        with ledger._db:  # a ledger as a million-contact source leaves it
            ledger._db.executemany(
                "INSERT INTO delivered (identity, email, ext_id, sms, digest, owned) VALUES (?, ?, ?, NULL, 'd', 1)",
                ((f"K:{n}", f"user{n}@example.com", str(n)) for n in range(delivered)),
            )
        for label, missing_share in (("nothing missing", 0.0), ("1% missing", 0.01)):
            present = [n for n in range(delivered) if not (missing_share and n % 100 == 0)]
            started = time.perf_counter()
            sidecars = []
            for start in range(0, len(present), chunk):
                keys = [str(n) for n in present[start : start + chunk]]
                sidecars.append(encode({"deleted": [], "keys": keys, "unkeyed": 0}))
            written = time.perf_counter()
            ledger.begin_seen()
            for data in sidecars:
                ledger.add_seen(f"K:{key}" for key in decode(data)["keys"])
            seen = time.perf_counter()
            plan = plan_removals(ledger, Deletes(max_per_run="100%"), [], mirror=True)
            planned = time.perf_counter()
            figures[f"{label}: sidecars written (map) s"] = round(written - started, 2)
            figures[f"{label}: keys read and recorded (load) s"] = round(seen - written, 2)
            figures[f"{label}: anti-join and plan s"] = round(planned - seen, 2)
            figures[f"{label}: total s"] = round(planned - started, 2)
            figures[f"{label}: removals planned"] = len(plan.removals)
        ledger.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--delivered", type=int, default=1_000_000)
    args = parser.parse_args()
    for name, value in requests_per_1000(args.contacts).items():
        print(f"requests per 1,000 contacts, {name}: {value:.1f}")
    for name, value in detection(args.delivered).items():
        print(f"mirror detection over {args.delivered:,} delivered, {name}: {value}")


if __name__ == "__main__":
    main()

"""What earlier runs applied per customer (:class:`~.apply.CustomerState`), kept between runs.

One SQLite file per DAG next to the contact ledger (``<staging>/<dag_id>/state/events-state.sqlite``),
one row per customer: a run looks up only the customers its events name, so the cost follows the run,
not the shop's size. The extract reads it; the load writes the run's new states once the contacts
are settled, then acknowledges the events (state first: a crash in between leaves events that the next
run recognises as applied, never an applied event forgotten).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_contactsync.sources.events.apply import CustomerState, state_from_json, state_to_json
from airflow_provider_contactsync.staging import local_copy

STATE_FILE = "events-state.sqlite"
_LOOKUP_BATCH = 900  # SQLite's bound-parameter limit is 999


class EventStateStore:
    """Per-customer applied state in one SQLite file.

    :param path: a local file path (see :func:`open_event_state`).
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID"
        )

    def lookup(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """The stored state of these customers (those never seen are absent)."""
        ids = list(dict.fromkeys(customer_ids))
        found: dict[str, Any] = {}
        for start in range(0, len(ids), _LOOKUP_BATCH):
            part = ids[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            for customer_id, text in self._db.execute(
                f"SELECT id, state FROM customers WHERE id IN ({marks})",  # noqa: S608 - placeholders only
                part,
            ):
                found[customer_id] = json.loads(text)
        return state_from_json({"version": 1, "customers": found})

    def save(self, states: Mapping[str, CustomerState]) -> int:
        """Store these customers' states (replacing theirs); returns how many."""
        entries = state_to_json(states)["customers"]
        with self._db:
            self._db.executemany(
                "INSERT INTO customers (id, state) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                ((customer_id, json.dumps(entry, separators=(",", ":"))) for customer_id, entry in entries.items()),
            )
        return len(entries)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM customers").fetchone()[0])

    def close(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


@contextlib.contextmanager
def open_event_state(dag_root: Any) -> Iterator[EventStateStore]:
    """The DAG's events state under the staging base (a remote file is copied in and back out)."""
    with local_copy(dag_root / "state" / STATE_FILE) as path:
        store = EventStateStore(path)
        try:
            yield store
        finally:
            store.close()

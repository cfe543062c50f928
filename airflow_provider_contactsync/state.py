"""State kept between runs: the cursor, and what was last sent for each contact.

The cursor lives in Airflow's asset state store (Airflow >= 3.3), keyed by the source's asset,
because XCom cannot give the right answer across manual runs, backfills and cleared tasks (see
docs/adr/0001-cursor-storage.md). On older Airflow it falls back to a Variable. It only moves
forward, and only after a successful load.

The sent-contact digests live in a small SQLite file in the staging store: they tell created
from updated from unchanged, let a run skip contacts that did not change, and let a retried load
skip what a crashed attempt already delivered.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from airflow_provider_contactsync.core.cursor import Cursor

CURSOR_KEY = "cursor"


def source_asset(integration: str, source: str) -> Any:
    """The Airflow asset standing for one source's contacts in Brevo (inlet and outlet of the DAG)."""
    from airflow.sdk import Asset

    return Asset(name=f"contactsync/{integration}/{source}", uri=f"contactsync://{integration}/{source}")


class SourceState:
    """A source's small persistent state (JSON values by key): the asset state store, else Variables.

    :param context: the task context (its ``asset_state_store`` is used when present).
    :param asset: the source's asset (must be an inlet or outlet of the task).
    """

    def __init__(self, context: Any, asset: Any) -> None:
        self._accessor = None
        store = context.get("asset_state_store") if hasattr(context, "get") else None
        if store is not None:
            self._accessor = store[asset]
        self._variable_prefix = f"contactsync__{asset.name.replace('/', '__')}__"

    @property
    def backend(self) -> str:
        return "asset_state_store" if self._accessor is not None else "variable"

    def get(self, key: str) -> Any:
        if self._accessor is not None:
            return self._accessor.get(key)
        from airflow.sdk import Variable

        raw = Variable.get(self._variable_prefix + key, default=None)
        return json.loads(raw) if raw else None

    def set(self, key: str, value: Any) -> None:
        if self._accessor is not None:
            self._accessor.set(key, value)
            return
        from airflow.sdk import Variable

        Variable.set(self._variable_prefix + key, json.dumps(value))

    def delete(self, key: str) -> None:
        if self._accessor is not None:
            self._accessor.delete(key)
            return
        from airflow.sdk import Variable

        Variable.delete(self._variable_prefix + key)


class CursorStore:
    """Read and advance one source's cursor from inside a task (it never moves backwards).

    :param context: the task context.
    :param asset: the source's asset (must be an inlet or outlet of the task).
    """

    def __init__(self, context: Any, asset: Any) -> None:
        self._state = SourceState(context, asset)

    @property
    def backend(self) -> str:
        return self._state.backend

    def get(self) -> Cursor | None:
        return Cursor.from_json(self._state.get(CURSOR_KEY))

    def advance(self, cursor: Cursor | None) -> Cursor | None:
        """Store ``cursor`` unless the stored one is already later; return the stored cursor."""
        current = self.get()
        if cursor is None:
            return current
        new = cursor.max(current)
        if new == current:
            return current
        self._state.set(CURSOR_KEY, new.to_json())
        return new

    def reset(self) -> None:
        self._state.delete(CURSOR_KEY)


def contact_digest(item: dict[str, Any]) -> str:
    """A stable fingerprint of what would be sent for a contact (key order does not matter)."""
    return hashlib.blake2b(_CANONICAL_JSON.encode(item), digest_size=16).hexdigest()


_CANONICAL_JSON = msgspec.json.Encoder(order="sorted", enc_hook=str)


class DigestStore:
    """Identity -> digest of the contact last delivered, in SQLite (on disk: constant memory).

    :param path: local SQLite file path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS sent (identity TEXT PRIMARY KEY, digest TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, process_ids TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS pending (batch INTEGER NOT NULL, identity TEXT NOT NULL, digest TEXT NOT NULL);
            """
        )

    def lookup(self, identities: Iterable[str]) -> dict[str, str]:
        """Digests of those identities that were sent before (one query per batch)."""
        ids = list(identities)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            batch = ids[start : start + 900]
            marks = ",".join("?" * len(batch))
            found.update(self._db.execute(f"SELECT identity, digest FROM sent WHERE identity IN ({marks})", batch))
        return found

    def record(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember what was delivered (after Brevo finished the import that carried it)."""
        with self._db:
            self._db.executemany(
                "INSERT INTO sent (identity, digest) VALUES (?, ?) "
                "ON CONFLICT(identity) DO UPDATE SET digest = excluded.digest",
                pairs,
            )

    def add_pending(self, process_ids: list[int], pairs: list[tuple[str, str]]) -> int:
        """Remember contacts sent in not-yet-finished imports, so a crashed load can be resumed."""
        with self._db:
            batch = self._db.execute(
                "INSERT INTO batches (process_ids) VALUES (?)", (json.dumps(process_ids),)
            ).lastrowid
            self._db.executemany(
                "INSERT INTO pending (batch, identity, digest) VALUES (?, ?, ?)",
                ((batch, identity, digest) for identity, digest in pairs),
            )
        return int(batch)

    def pending_batches(self) -> list[tuple[int, list[int]]]:
        return [(batch, json.loads(ids)) for batch, ids in self._db.execute("SELECT batch, process_ids FROM batches")]

    def settle(self, batch: int, *, delivered: bool) -> int:
        """Promote a finished batch's contacts to sent (or drop them if the import failed); return their count."""
        with self._db:
            count = self._db.execute("SELECT count(*) FROM pending WHERE batch = ?", (batch,)).fetchone()[0]
            if delivered:
                self._db.execute(
                    "INSERT INTO sent (identity, digest) SELECT identity, digest FROM pending WHERE batch = ? "
                    "ON CONFLICT(identity) DO UPDATE SET digest = excluded.digest",
                    (batch,),
                )
            self._db.execute("DELETE FROM pending WHERE batch = ?", (batch,))
            self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))
        return int(count)

    def close(self) -> None:
        self._db.close()


@contextlib.contextmanager
def open_digest_store(dag_root: Any) -> Iterator[DigestStore]:
    """Open the DAG's digest store under the staging base; remote stores are copied in and back out."""
    target = dag_root / "state" / "sent-contacts.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.protocol == "file":
        store = DigestStore(target.path)
        try:
            yield store
        finally:
            store.close()
        return
    workdir = tempfile.mkdtemp(prefix="contactsync-digests-")
    local = os.path.join(workdir, "sent-contacts.sqlite")
    try:
        if target.exists():
            with target.open("rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        store = DigestStore(local)
        try:
            yield store
        finally:
            # Upload even after a failure: what was recorded was delivered (or is pending recovery).
            store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.close()
            with open(local, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

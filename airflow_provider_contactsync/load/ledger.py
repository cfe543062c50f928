"""The contact ledger: what each source last delivered to Brevo, what is in flight, what to retry.

One SQLite file per DAG under the staging base (on disk: constant memory however many contacts):

- ``delivered``: per contact identity, the identifiers (EMAIL, EXT_ID, SMS) and the digest of what
  Brevo last accepted. Unchanged contacts are not sent again; a changed identifier is recognised
  as the same contact changing (see :mod:`.identity`). Like Brevo, an identifier belongs to one
  contact at a time: recording a contact takes its identifiers away from any other.
- ``batches`` / ``pending``: contacts of imports not yet settled, so a load retried after a crash
  settles them instead of sending them twice.
- ``retry``: contacts Brevo refused, with the import item, so the next run sends them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_provider_contactsync.load.identity import ContactIds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
  identity TEXT PRIMARY KEY, email TEXT, ext_id TEXT, sms TEXT, digest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS delivered_email ON delivered(email);
CREATE INDEX IF NOT EXISTS delivered_ext_id ON delivered(ext_id);
CREATE INDEX IF NOT EXISTS delivered_sms ON delivered(sms);
CREATE TABLE IF NOT EXISTS batches (
  batch INTEGER PRIMARY KEY, process_ids TEXT NOT NULL, run_id TEXT, chunk_url TEXT, submitted_at TEXT);
CREATE TABLE IF NOT EXISTS pending (
  batch INTEGER NOT NULL, seq INTEGER NOT NULL, pos INTEGER, row_key, identity TEXT NOT NULL,
  previous TEXT, email TEXT, ext_id TEXT, sms TEXT, digest TEXT NOT NULL, fresh INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS pending_batch ON pending(batch);
CREATE TABLE IF NOT EXISTS retry (
  identity TEXT PRIMARY KEY, row_key BLOB, item BLOB NOT NULL, reason TEXT NOT NULL,
  first_refused_at TEXT NOT NULL, attempts INTEGER NOT NULL);
"""

_BATCH = 900  # SQLite's bound-parameter limit is 999
CACHE_MB = 64


def contact_digest(item: dict[str, Any]) -> str:
    """A stable fingerprint of what would be sent for a contact (key order does not matter)."""
    return hashlib.blake2b(_CANONICAL_JSON.encode(item), digest_size=16).hexdigest()


_CANONICAL_JSON = msgspec.json.Encoder(order="sorted", enc_hook=str)
_ITEM_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)
_ITEM_DECODER = msgspec.msgpack.Decoder()


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a contact was when Brevo last accepted it."""

    identity: str
    ids: ContactIds
    digest: str


@dataclass(frozen=True, slots=True)
class PendingContact:
    """A contact sent in an import not yet settled.

    :param seq: its place in the run (row order; negative for retried contacts).
    :param pos: its position in the batch's chunk file (None for retried contacts).
    :param previous: the identity it was last delivered under, when that differs (identity change).
    :param fresh: its identifiers are not what the ledger holds for it (new contact, or changed), so
        recording it may take them from other contacts.
    """

    batch: int
    seq: int
    pos: int | None
    row_key: Any
    identity: str
    previous: str | None
    ids: ContactIds
    digest: str
    fresh: bool = True


@dataclass(frozen=True, slots=True)
class Batch:
    """One chunk's imports: their process ids, where its items are staged, when Brevo received them."""

    batch: int
    process_ids: list[int]
    run_id: str | None
    chunk_url: str | None
    submitted_at: str | None


@dataclass(frozen=True, slots=True)
class RetryEntry:
    """A contact Brevo refused in an earlier run, to be sent again."""

    identity: str
    row_key: Any
    item: dict[str, Any]
    reason: str
    first_refused_at: str
    attempts: int


class ContactLedger:
    """The ledger of one DAG (see the module docstring).

    :param path: local SQLite file path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Four indexes over a million contacts: a page cache that holds them spares re-reading pages.
        self._db.execute(f"PRAGMA cache_size=-{CACHE_MB * 1024}")
        old = self._old_store()
        self._db.executescript(_SCHEMA)
        if old is not None:
            self._migrate(old)

    def _old_store(self) -> list[tuple[str, str]] | None:
        """Stores written before identities were tracked held ``sent(identity, digest)`` only, and
        batches/pending tables of another shape: read what they delivered, then drop them."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "sent" not in tables:
            return None
        sent = self._db.execute("SELECT identity, digest FROM sent").fetchall()
        with self._db:
            for table in ("sent", "batches", "pending"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
        return sent

    def _migrate(self, sent: list[tuple[str, str]]) -> None:
        with self._db:
            for identity, digest in sent:
                kind, _, value = identity.partition(":")
                column = {"EMAIL": "email", "EXT_ID": "ext_id", "SMS": "sms"}.get(kind)
                if column is not None:
                    self._db.execute(
                        f"INSERT OR IGNORE INTO delivered (identity, {column}, digest) VALUES (?, ?, ?)",
                        (identity, value, digest),
                    )

    # -- delivered contacts -----------------------------------------------------------------------

    def lookup(self, identities: Sequence[str]) -> dict[str, Delivered]:
        """Delivered contacts by identity (one query per 900)."""
        found: dict[str, Delivered] = {}
        for start in range(0, len(identities), _BATCH):
            part = identities[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for identity, email, ext_id, sms, digest in self._db.execute(
                f"SELECT identity, email, ext_id, sms, digest FROM delivered WHERE identity IN ({marks})", part
            ):
                found[identity] = Delivered(identity, ContactIds(email, ext_id, sms), digest)
        return found

    def holders(self, kind: str, values: Sequence[str]) -> dict[str, Delivered]:
        """Delivered contacts holding each of ``values`` as identifier ``kind`` (EMAIL, EXT_ID or SMS)."""
        column = _column(kind)
        found: dict[str, Delivered] = {}
        for start in range(0, len(values), _BATCH):
            part = values[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for identity, email, ext_id, sms, digest in self._db.execute(
                f"SELECT identity, email, ext_id, sms, digest FROM delivered WHERE {column} IN ({marks})", part
            ):
                delivered = Delivered(identity, ContactIds(email, ext_id, sms), digest)
                found[str(delivered.ids.get(kind))] = delivered
        return found

    def delivered_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM delivered").fetchone()[0])

    # -- pending imports --------------------------------------------------------------------------

    def add_pending(
        self,
        process_ids: list[int],
        contacts: Iterable[PendingContact],
        *,
        run_id: str | None,
        chunk_url: str | None,
        submitted_at: str | None,
    ) -> int:
        """Remember contacts sent in not-yet-settled imports; returns the batch number."""
        with self._db:
            batch = int(
                self._db.execute(
                    "INSERT INTO batches (process_ids, run_id, chunk_url, submitted_at) VALUES (?, ?, ?, ?)",
                    (json.dumps(process_ids), run_id, chunk_url, submitted_at),
                ).lastrowid
                or 0
            )
            self._db.executemany(
                "INSERT INTO pending (batch, seq, pos, row_key, identity, previous, email, ext_id, sms, digest, fresh)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        batch,
                        c.seq,
                        c.pos,
                        _key_text(c.row_key),
                        c.identity,
                        c.previous,
                        c.ids.email,
                        c.ids.ext_id,
                        c.ids.sms,
                        c.digest,
                        int(c.fresh),
                    )
                    for c in contacts
                ),
            )
        return batch

    def batches(self) -> list[Batch]:
        return [
            Batch(batch, json.loads(ids), run_id, chunk_url, submitted_at)
            for batch, ids, run_id, chunk_url, submitted_at in self._db.execute(
                "SELECT batch, process_ids, run_id, chunk_url, submitted_at FROM batches ORDER BY batch"
            )
        ]

    def pending(self, batch: int) -> Iterator[PendingContact]:
        """The contacts of one batch, in send order (streamed)."""
        cursor = self._db.execute(
            "SELECT batch, seq, pos, row_key, identity, previous, email, ext_id, sms, digest, fresh FROM pending"
            " WHERE batch = ? ORDER BY seq",
            (batch,),
        )
        for batch_, seq, pos, row_key, identity, previous, email, ext_id, sms, digest, fresh in cursor:
            ids = ContactIds(email, ext_id, sms)
            yield PendingContact(batch_, seq, pos, row_key, identity, previous, ids, digest, bool(fresh))

    def settle(self, batch: int, *, refused: Iterable[int] = ()) -> int:
        """Record a finished batch's contacts as delivered, except the ``refused`` seqs; forget the batch.

        Recording a contact takes its identifiers from any other delivered contact (Brevo keeps each
        identifier on one contact) and replaces the identity it was delivered under before, if any.
        Returns the number of contacts recorded.
        """
        with self._db:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS refused_seq (seq INTEGER PRIMARY KEY)")
            self._db.execute("DELETE FROM refused_seq")
            self._db.executemany("INSERT OR IGNORE INTO refused_seq VALUES (?)", ((s,) for s in refused))
            accepted = "batch = :b AND seq NOT IN (SELECT seq FROM refused_seq)"
            self._db.execute(
                f"DELETE FROM delivered WHERE identity IN (SELECT previous FROM pending WHERE {accepted}"
                " AND previous IS NOT NULL AND previous != identity)",
                {"b": batch},
            )
            for column in ("email", "ext_id", "sms"):
                self._db.execute(
                    f"UPDATE delivered SET {column} = NULL WHERE {column} IN "
                    f"(SELECT {column} FROM pending WHERE {accepted} AND fresh AND {column} IS NOT NULL)"
                    f" AND identity NOT IN (SELECT identity FROM pending WHERE {accepted} AND fresh)",
                    {"b": batch},
                )
            recorded = self._db.execute(
                "INSERT INTO delivered (identity, email, ext_id, sms, digest)"
                f" SELECT identity, email, ext_id, sms, digest FROM pending WHERE {accepted}"
                " ON CONFLICT(identity) DO UPDATE SET email = excluded.email, ext_id = excluded.ext_id,"
                " sms = excluded.sms, digest = excluded.digest",
                {"b": batch},
            ).rowcount
            self._db.execute(
                f"DELETE FROM retry WHERE identity IN (SELECT identity FROM pending WHERE {accepted})", {"b": batch}
            )
            self._db.execute("DELETE FROM pending WHERE batch = ?", (batch,))
            self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))
        return int(recorded)

    def forget(self, batch: int) -> None:
        """Drop a batch whose imports failed: nothing of it was delivered."""
        with self._db:
            self._db.execute("DELETE FROM pending WHERE batch = ?", (batch,))
            self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))

    # -- retry queue ------------------------------------------------------------------------------

    def retries(self) -> list[RetryEntry]:
        """Contacts to send again, oldest refusal first."""
        return [
            RetryEntry(identity, _ITEM_DECODER.decode(key)[0], _ITEM_DECODER.decode(item), reason, first, attempts)
            for identity, key, item, reason, first, attempts in self._db.execute(
                "SELECT identity, row_key, item, reason, first_refused_at, attempts FROM retry"
                " ORDER BY first_refused_at, identity"
            )
        ]

    def retry_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM retry").fetchone()[0])

    def queue_retry(self, identity: str, row_key: Any, item: dict[str, Any], reason: str, now: str) -> None:
        """Keep a refused contact for the next run (a newer refusal of the same contact replaces it)."""
        with self._db:
            self._db.execute(
                "INSERT INTO retry (identity, row_key, item, reason, first_refused_at, attempts)"
                " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT(identity) DO UPDATE SET row_key = excluded.row_key,"
                " item = excluded.item, reason = excluded.reason, attempts = retry.attempts + 1",
                (identity, _ITEM_ENCODER.encode([row_key]), _ITEM_ENCODER.encode(item), reason, now),
            )

    def drop_retry(self, identities: Iterable[str]) -> None:
        """Forget retries a newer row of the run replaced (or that conflict with one)."""
        with self._db:
            self._db.executemany("DELETE FROM retry WHERE identity = ?", ((i,) for i in identities))

    def close(self) -> None:
        self._db.close()


def _column(kind: str) -> str:
    try:
        return {"EMAIL": "email", "EXT_ID": "ext_id", "SMS": "sms"}[kind]
    except KeyError:
        raise ValueError(f"unknown identifier type {kind!r}") from None


def _key_text(key: Any) -> Any:
    return key if key is None or isinstance(key, (int, str)) else str(key)


def queued_retries(dag_root: Any) -> int:
    """How many refused contacts wait in the DAG's retry queue (0 when it has no ledger yet)."""
    target = dag_root / "state" / "sent-contacts.sqlite"
    if not target.exists():
        return 0
    with open_ledger(dag_root) as ledger:
        return ledger.retry_count()


@contextlib.contextmanager
def open_ledger(dag_root: Any) -> Iterator[ContactLedger]:
    """Open the DAG's ledger under the staging base; a remote ledger is copied in and back out."""
    target = dag_root / "state" / "sent-contacts.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.protocol == "file":
        ledger = ContactLedger(target.path)
        try:
            yield ledger
        finally:
            ledger.close()
        return
    workdir = tempfile.mkdtemp(prefix="contactsync-ledger-")
    local = os.path.join(workdir, "sent-contacts.sqlite")
    try:
        if target.exists():
            with target.open("rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        ledger = ContactLedger(local)
        try:
            yield ledger
        finally:
            # Upload even after a failure: what was recorded was delivered (or is pending recovery).
            ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ledger.close()
            with open(local, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

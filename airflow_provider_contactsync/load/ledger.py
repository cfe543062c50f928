"""The contact ledger: what each source last delivered to Brevo, what is in flight, what to retry.

One SQLite file per DAG under the staging base (on disk: constant memory however many contacts):

- ``delivered``: per contact identity, the identifiers (EMAIL, EXT_ID, SMS) and the digest of what
  Brevo last accepted. Unchanged contacts are not sent again; a changed identifier is recognised
  as the same contact changing (see :mod:`.identity`). Like Brevo, an identifier belongs to one
  contact at a time: recording a contact takes its identifiers away from any other.
- ``batches``: imports not yet settled. Their contacts are recorded in ``delivered`` as soon as the
  import is sent (while Brevo works on it), with what each replaced kept in the batch (one msgpack
  blob a chunk), so that settling costs nothing when Brevo accepted everything and undoing a
  refused contact (or a failed import) restores what was there. A load retried after a crash
  settles the batches it finds instead of sending them twice.
- ``retry``: contacts Brevo refused, with the import item, so the next run sends them again.
- ``settled_runs``: the runs whose load finished (their summary), so that a load retried or cleared
  after its run's staging was removed ends as it did instead of failing on missing chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import msgspec

from airflow_provider_contactsync.load.identity import ContactIds
from airflow_provider_contactsync.staging import decode, local_copy, wrap_big_ints

_INDEXES = """
CREATE INDEX IF NOT EXISTS delivered_email ON delivered(email);
CREATE INDEX IF NOT EXISTS delivered_ext_id ON delivered(ext_id);
CREATE INDEX IF NOT EXISTS delivered_sms ON delivered(sms);
"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS delivered (
  identity TEXT PRIMARY KEY, email TEXT, ext_id TEXT, sms TEXT, digest TEXT NOT NULL) WITHOUT ROWID;
{_INDEXES}
CREATE TABLE IF NOT EXISTS batches (
  batch INTEGER PRIMARY KEY, process_ids TEXT NOT NULL, run_id TEXT, chunk_url TEXT, submitted_at TEXT,
  size INTEGER NOT NULL, contacts BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS settled_runs (
  run_id TEXT PRIMARY KEY, settled_at TEXT NOT NULL, summary TEXT NOT NULL, failure TEXT);
CREATE TABLE IF NOT EXISTS deferrals (run_id TEXT NOT NULL, deferred_at TEXT NOT NULL, why TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retry (
  identity TEXT PRIMARY KEY, row_key BLOB, item BLOB NOT NULL, reason TEXT NOT NULL,
  first_refused_at TEXT NOT NULL, attempts INTEGER NOT NULL);
"""

_ADDED_COLUMNS = {"owned": "INTEGER", "lists": "TEXT", "state": "TEXT"}
"""Columns of ``delivered`` added for sync semantics (docs/adr/0006): stores from before get them empty.

- ``owned``: 1 when this source created the contact in Brevo, 0 when it existed before (or the mode
  never creates), NULL when unknown (stores from before), :data:`OWNED_PENDING` until the run that
  first delivered it settles.
- ``lists``: conditional lists (``destination.lists``) this source put the contact in, ``5,7``.
- ``state``: NULL while the contact is live; ``unlinked`` or ``blacklisted`` once a delete kept it.
"""

OWNED_PENDING = -1

_BATCH = 900  # SQLite's bound-parameter limit is 999
SETTLED_RUNS_KEPT = 1000
CACHE_MB = 64


def contact_digest(item: dict[str, Any]) -> str:
    """A stable fingerprint of what would be sent for a contact (key order does not matter)."""
    return hashlib.blake2b(_CANONICAL_JSON.encode(item), digest_size=16).hexdigest()


_CANONICAL_JSON = msgspec.json.Encoder(order="sorted", enc_hook=str)
_ITEM_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)


def _pack(value: Any) -> bytes:
    """msgpack bytes of rows and payloads; an integer outside 64 bits (a 22-digit id) is kept, not refused."""
    try:
        return _ITEM_ENCODER.encode(value)
    except OverflowError:
        return _ITEM_ENCODER.encode(wrap_big_ints(value))


def _unpack(data: bytes) -> Any:
    return decode(data)  # staging's decoder: plain msgpack, and the wrapped big integers


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a contact was when Brevo last accepted it."""

    identity: str
    ids: ContactIds
    digest: str


class LedgerContact(NamedTuple):
    """A delivered contact with what sync semantics need: who created it, its lists, its state."""

    identity: str
    ids: ContactIds
    owned: int | None
    lists: tuple[int, ...]
    state: str | None


def _ledger_contact(row: Sequence[Any]) -> LedgerContact:
    identity, email, ext_id, sms, owned, lists, state = row
    parsed = tuple(int(x) for x in lists.split(",")) if lists else ()
    return LedgerContact(identity, ContactIds(email, ext_id, sms), owned, parsed, state)


class PendingContact(NamedTuple):
    """A contact sent in an import not yet settled.

    :param seq: its place in the run (row order; negative for retried contacts).
    :param pos: its position in the batch's chunk file (None for retried contacts).
    :param prior: what the ledger held for it before (under its identity, or under another one
        when its identity changed), restored if Brevo refuses it.
    """

    batch: int
    seq: int
    pos: int | None
    row_key: Any
    identity: str
    ids: ContactIds
    digest: str
    prior: Delivered | None = None

    @property
    def fresh(self) -> bool:
        return is_fresh(self.prior, self.identity, self.ids)


def is_fresh(prior: Delivered | None, identity: str, ids: ContactIds) -> bool:
    """A sent contact's identifiers are not those recorded for it: recording it may take them from others."""
    return prior is None or prior.identity != identity or prior.ids != ids


class Recordable(Protocol):
    """What :meth:`ContactLedger.add_pending` reads of a sent contact (a :class:`PendingContact`, or
    the loader's own record of it)."""

    @property
    def seq(self) -> int: ...
    @property
    def pos(self) -> int | None: ...
    @property
    def row_key(self) -> Any: ...
    @property
    def identity(self) -> str: ...
    @property
    def ids(self) -> ContactIds: ...
    @property
    def digest(self) -> str: ...
    @property
    def prior(self) -> Delivered | None: ...
    @property
    def fresh(self) -> bool: ...


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
        _owner_only(path)  # personal data: like the error reports, readable by the owner only
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Four indexes over a million contacts: a page cache that holds them spares re-reading pages.
        self._db.execute(f"PRAGMA cache_size=-{CACHE_MB * 1024}")
        self._db.execute("PRAGMA temp_store=MEMORY")
        old = self._old_store()
        self._db.executescript(_SCHEMA)
        self._add_columns()
        if old is not None:
            self._migrate(old)
        self._may_hold_identifiers = self._has_delivered()

    def _has_delivered(self) -> bool:
        return self._db.execute("SELECT 1 FROM delivered LIMIT 1").fetchone() is not None

    @property
    def empty_at_run_start(self) -> bool:
        """Nothing was delivered before this run: no contact of it can be known, or hold an identifier."""
        return not self._may_hold_identifiers

    def begin_run(self) -> None:
        """Mark the start of a run's recording.

        Contacts of one run never share an identity or an identifier (the pre-flight check), so only
        contacts recorded before can hold an identifier that a new contact takes. On a first load
        there are none: recording skips looking for them, and the identifier indexes, which nothing
        reads then, are dropped and built once at :meth:`end_run` (sorting a million values once
        costs a fraction of keeping three indexes up to date row by row). Should the run not end, the
        next open builds them.
        """
        self._may_hold_identifiers = self._has_delivered()
        if not self._may_hold_identifiers:
            for column in ("email", "ext_id", "sms"):
                self._db.execute(f"DROP INDEX IF EXISTS delivered_{column}")

    def end_run(self) -> None:
        """The run's recording is over: make sure the identifier indexes exist."""
        self._db.executescript(_INDEXES)

    def _old_store(self) -> list[tuple[str, str]] | None:
        """Stores written before identities were tracked held ``sent(identity, digest)`` only, and
        batches/pending tables of another shape: read what they delivered, then drop them."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "batches" in tables and "size" not in {c[1] for c in self._db.execute("PRAGMA table_info(batches)")}:
            with self._db:  # in-flight imports of an earlier layout: forgotten (their rows are read again)
                self._db.execute("DROP TABLE batches")
                self._db.execute("DROP TABLE IF EXISTS pending")
        if "sent" not in tables:
            return None
        sent = self._db.execute("SELECT identity, digest FROM sent").fetchall()
        with self._db:
            for table in ("sent", "batches", "pending"):  # in-flight imports are forgotten: their rows come back
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
        return sent

    def _add_columns(self) -> None:
        present = {c[1] for c in self._db.execute("PRAGMA table_info(delivered)")}
        with self._db:
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE delivered ADD COLUMN {name} {kind}")

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
        """Delivered contacts by identity."""
        return {found.identity: found for found in self._select("identity", identities)}

    def holders(self, kind: str, values: Sequence[str]) -> dict[str, Delivered]:
        """Delivered contacts holding each of ``values`` as identifier ``kind`` (EMAIL, EXT_ID or SMS)."""
        return {str(found.ids.get(kind)): found for found in self._select(_column(kind), values)}

    def _select(self, column: str, values: Sequence[str]) -> Iterator[Delivered]:
        """Delivered contacts whose ``column`` is one of ``values`` (one query per 900)."""
        for start in range(0, len(values), _BATCH):
            part = values[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for identity, email, ext_id, sms, digest in self._db.execute(
                f"SELECT identity, email, ext_id, sms, digest FROM delivered WHERE {column} IN ({marks})", part
            ):
                yield Delivered(identity, ContactIds(email, ext_id, sms), digest)

    def delivered_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM delivered").fetchone()[0])

    # -- pending imports --------------------------------------------------------------------------

    def add_pending(
        self,
        process_ids: list[int],
        contacts: Sequence[Recordable],
        *,
        run_id: str | None,
        chunk_url: str | None,
        submitted_at: str | None,
    ) -> int:
        """Record the contacts of a sent import as delivered, keeping what they replaced; returns the batch.

        Recording a contact takes its identifiers from any other delivered contact (Brevo keeps each
        identifier on one contact) and replaces the identity it was delivered under before, if any.
        """
        rows = [
            (c.seq, c.pos, _key_text(c.row_key), c.identity, *c.ids, c.digest, *_prior_fields(c.prior))
            for c in contacts
        ]
        fresh = [c for c in contacts if c.fresh]
        moved = [(c.prior.identity,) for c in contacts if c.prior is not None and c.prior.identity != c.identity]
        with self._db:
            steals = self._take_identifiers(fresh) if fresh and self._may_hold_identifiers else []
            self._db.executemany("DELETE FROM delivered WHERE identity = ?", moved)
            self._db.executemany(
                "INSERT INTO delivered (identity, email, ext_id, sms, digest, owned)"
                f" VALUES (?, ?, ?, ?, ?, {OWNED_PENDING})"
                " ON CONFLICT(identity) DO UPDATE SET email = excluded.email, ext_id = excluded.ext_id,"
                " sms = excluded.sms, digest = excluded.digest, state = NULL",
                ((c.identity, *c.ids, c.digest) for c in contacts),
            )
            cursor = self._db.execute(
                "INSERT INTO batches (process_ids, run_id, chunk_url, submitted_at, size, contacts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    json.dumps(process_ids),
                    run_id,
                    chunk_url,
                    submitted_at,
                    len(rows),
                    _pack([rows, steals]),
                ),
            )
        return int(cursor.lastrowid or 0)

    def _take_identifiers(self, fresh: Sequence[Recordable]) -> list[tuple[str, str, str, str]]:
        """Clear the identifiers that contacts being recorded take from others; return (victim, thief,
        column, value) for each, so that undoing a contact gives them back."""
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS settling (identity TEXT, previous TEXT, email TEXT, ext_id TEXT, sms TEXT)"
        )
        self._db.execute("DELETE FROM temp.settling")
        self._db.executemany(
            "INSERT INTO temp.settling VALUES (?, ?, ?, ?, ?)",
            ((c.identity, c.prior.identity if c.prior is not None else None, *c.ids) for c in fresh),
        )
        steals: list[tuple[str, str, str, str]] = []
        for column in ("email", "ext_id", "sms"):
            found = self._db.execute(
                f"SELECT d.identity, s.identity, d.{column} FROM temp.settling s JOIN delivered d"
                f" ON d.{column} = s.{column} WHERE s.{column} IS NOT NULL AND d.identity != s.identity"
                " AND d.identity NOT IN (SELECT previous FROM temp.settling WHERE previous IS NOT NULL)"
            ).fetchall()
            self._db.executemany(
                f"UPDATE delivered SET {column} = NULL WHERE identity = ?", ((victim,) for victim, _, _ in found)
            )
            steals += [(victim, thief, column, value) for victim, thief, value in found]
        self._db.execute("DELETE FROM temp.settling")
        return steals

    def batches(self) -> list[Batch]:
        return [
            Batch(batch, json.loads(ids), run_id, chunk_url, submitted_at)
            for batch, ids, run_id, chunk_url, submitted_at in self._db.execute(
                "SELECT batch, process_ids, run_id, chunk_url, submitted_at FROM batches ORDER BY batch"
            )
        ]

    def pending(self, batch: int) -> list[PendingContact]:
        """The contacts of one batch, in send order."""
        rows, _ = self._batch_contents(batch)
        return [_pending(batch, row) for row in rows]

    def _batch_contents(self, batch: int) -> tuple[list[Any], list[Any]]:
        found = self._db.execute("SELECT contacts FROM batches WHERE batch = ?", (batch,)).fetchone()
        if found is None:
            return [], []
        rows, steals = _unpack(found[0])
        return rows, steals

    def settle(self, batch: int, *, refused: Iterable[int] = ()) -> int:
        """Brevo finished the batch: keep its contacts recorded, except the ``refused`` seqs (undone).

        Returns the number of contacts that stay recorded.
        """
        skip = set(refused)
        if not skip and not self._has_retries():  # the common case: nothing to undo, nothing to read
            with self._db:
                found = self._db.execute("SELECT size FROM batches WHERE batch = ?", (batch,)).fetchone()
                self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))
            return int(found[0]) if found else 0
        rows, steals = self._batch_contents(batch)
        with self._db:
            if skip:
                self._undo([row for row in rows if row[0] in skip], steals)
            if self._has_retries():  # accepted now: no longer waiting to be sent again
                self._db.executemany(
                    "DELETE FROM retry WHERE identity = ?", ((row[3],) for row in rows if row[0] not in skip)
                )
            self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))
        return sum(1 for row in rows if row[0] not in skip)

    def forget(self, batch: int) -> None:
        """Brevo failed the batch: nothing of it was delivered; restore what its contacts replaced."""
        rows, steals = self._batch_contents(batch)
        with self._db:
            self._undo(rows, steals)
            self._db.execute("DELETE FROM batches WHERE batch = ?", (batch,))

    def _undo(self, rows: list[Any], steals: list[Any]) -> None:
        undone = set()
        for row in rows:
            contact = _pending(0, row)
            undone.add(contact.identity)
            if contact.prior is not None and contact.prior.identity == contact.identity:
                # Same contact, as it was: what the ledger knows besides (ownership, lists) stays.
                self._db.execute(
                    "UPDATE delivered SET email = ?, ext_id = ?, sms = ?, digest = ? WHERE identity = ?",
                    (*contact.prior.ids, contact.prior.digest, contact.identity),
                )
                continue
            self._db.execute("DELETE FROM delivered WHERE identity = ?", (contact.identity,))
            if contact.prior is not None:
                prior = contact.prior
                self._db.execute(
                    "INSERT OR REPLACE INTO delivered (identity, email, ext_id, sms, digest) VALUES (?, ?, ?, ?, ?)",
                    (prior.identity, *prior.ids, prior.digest),
                )
        for victim, thief, column, value in steals:
            if thief in undone:
                name = _column_name(column)
                self._db.execute(
                    f"UPDATE delivered SET {name} = ? WHERE identity = ? AND {name} IS NULL", (value, victim)
                )

    # -- ownership, lists and removals (sync semantics) ------------------------------------------

    def settle_ownership(self, *, created: bool | None = None, created_identities: Iterable[str] = ()) -> int:
        """Decide who created the contacts first delivered in this run: all (``created`` True), none
        (False), or those named (the rest were there before). Returns how many this source owns now."""
        with self._db:
            if created is None:
                self._db.executemany(
                    f"UPDATE delivered SET owned = 1 WHERE identity = ? AND owned = {OWNED_PENDING}",
                    ((identity,) for identity in created_identities),
                )
                created = False
            self._db.execute(f"UPDATE delivered SET owned = ? WHERE owned = {OWNED_PENDING}", (int(created),))
        return self.owned_count("created")

    def awaiting_count(self) -> int:
        """How many contacts first delivered in this run wait for their creator to be decided."""
        found = self._db.execute(f"SELECT count(*) FROM delivered WHERE owned = {OWNED_PENDING}").fetchone()
        return int(found[0])

    def awaiting_ownership(self) -> Iterator[Delivered]:
        """Contacts first delivered in this run, whose creator is not decided yet."""
        for identity, email, ext_id, sms, digest in self._db.execute(
            f"SELECT identity, email, ext_id, sms, digest FROM delivered WHERE owned = {OWNED_PENDING}"
        ):
            yield Delivered(identity, ContactIds(email, ext_id, sms), digest)

    def owned_count(self, ownership: str) -> int:
        """Live contacts this source may remove: those it created, or (``delivered``) all it delivered."""
        condition = "owned = 1" if ownership == "created" else "1"
        return int(
            self._db.execute(f"SELECT count(*) FROM delivered WHERE state IS NULL AND {condition}").fetchone()[0]
        )

    def contacts(self, identities: Sequence[str]) -> dict[str, LedgerContact]:
        """Everything the ledger knows of these contacts (live or kept after a delete)."""
        found: dict[str, LedgerContact] = {}
        for start in range(0, len(identities), _BATCH):
            part = list(identities[start : start + _BATCH])
            marks = ",".join("?" * len(part))
            for row in self._db.execute(
                f"SELECT identity, email, ext_id, sms, owned, lists, state FROM delivered WHERE identity IN ({marks})",
                part,
            ):
                found[row[0]] = _ledger_contact(row)
        return found

    def begin_seen(self) -> None:
        """Start collecting the identities a full read returns (mirror mode)."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (identity TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("DELETE FROM temp.seen")

    def add_seen(self, identities: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO temp.seen VALUES (?)", ((i,) for i in identities))

    def missing(self) -> Iterator[LedgerContact]:
        """Live delivered contacts the full read did not return (after :meth:`begin_seen`/:meth:`add_seen`)."""
        for row in self._db.execute(
            "SELECT identity, email, ext_id, sms, owned, lists, state FROM delivered d WHERE state IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.identity = d.identity) ORDER BY identity"
        ):
            yield _ledger_contact(row)

    def set_lists(self, lists: Iterable[tuple[str, Sequence[int]]]) -> None:
        """Record the conditional lists this source put each contact in."""
        with self._db:
            self._db.executemany(
                "UPDATE delivered SET lists = ? WHERE identity = ?",
                ((",".join(map(str, sorted(ids))) or None, identity) for identity, ids in lists),
            )

    def forget_digests(self, identities: Iterable[str]) -> None:
        """Make these contacts count as changed, so the next run sends (and decides) them again."""
        with self._db:
            self._db.executemany("UPDATE delivered SET digest = '' WHERE identity = ?", ((i,) for i in identities))

    def live_ext_ids(self) -> list[tuple[str, str]]:
        """(identity, EXT_ID) of the contacts delivered with an EXT_ID and not removed since."""
        return self._db.execute(
            "SELECT identity, ext_id FROM delivered WHERE ext_id IS NOT NULL AND state IS NULL"
        ).fetchall()

    def mark_removed(self, identities: Iterable[str], state: str) -> None:
        """A delete was done: ``deleted`` forgets the contacts; ``unlinked``/``blacklisted`` keep them,
        changed (digest cleared), so that a contact coming back to the source is sent again. A
        blacklisted contact stays in its conditional lists, so the ledger keeps them."""
        with self._db:
            if state == "deleted":
                self._db.executemany("DELETE FROM delivered WHERE identity = ?", ((i,) for i in identities))
            elif state == "unlinked":  # out of every list this source put it in
                self._db.executemany(
                    "UPDATE delivered SET state = ?, digest = '', lists = NULL WHERE identity = ?",
                    ((state, i) for i in identities),
                )
            else:  # blacklisted: still in its lists, which the ledger must keep knowing
                self._db.executemany(
                    "UPDATE delivered SET state = ?, digest = '' WHERE identity = ?", ((state, i) for i in identities)
                )

    def _has_retries(self) -> bool:
        return self._db.execute("SELECT 1 FROM retry LIMIT 1").fetchone() is not None

    # -- finished runs ----------------------------------------------------------------------------

    def mark_settled(self, run_id: str, summary: dict[str, Any], failure: str | None) -> None:
        """Record that a run's load finished (keeping the last :data:`SETTLED_RUNS_KEPT` runs)."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO settled_runs VALUES (?, ?, ?, ?)",
                (run_id, _now(), json.dumps(summary, default=str), failure),
            )
            self._db.execute("DELETE FROM deferrals WHERE run_id = ?", (run_id,))
            self._db.execute(
                "DELETE FROM settled_runs WHERE run_id NOT IN"
                " (SELECT run_id FROM settled_runs ORDER BY settled_at DESC LIMIT ?)",
                (SETTLED_RUNS_KEPT,),
            )

    def add_deferral(self, run_id: str, why: str) -> None:
        """Remember that a run's load stopped to wait (for Brevo's rate limit), for its summary."""
        with self._db:
            self._db.execute("INSERT INTO deferrals VALUES (?, ?, ?)", (run_id, _now(), why))

    def deferrals(self, run_id: str) -> list[str]:
        return [why for (why,) in self._db.execute("SELECT why FROM deferrals WHERE run_id = ? ORDER BY 1", (run_id,))]

    def settled_run(self, run_id: str) -> tuple[dict[str, Any], str | None] | None:
        """The summary and failure of a run whose load finished, or None."""
        found = self._db.execute("SELECT summary, failure FROM settled_runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if found is None else (json.loads(found[0]), found[1])

    # -- retry queue ------------------------------------------------------------------------------

    def retries(self) -> list[RetryEntry]:
        """Contacts to send again, oldest refusal first."""
        return [
            RetryEntry(identity, _unpack(key)[0], _unpack(item), reason, first, attempts)
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
                (identity, _pack([row_key]), _pack(item), reason, now),
            )

    def drop_retry(self, identities: Iterable[str]) -> None:
        """Forget retries a newer row of the run replaced (or that conflict with one)."""
        with self._db:
            self._db.executemany("DELETE FROM retry WHERE identity = ?", ((i,) for i in identities))

    def close(self) -> None:
        self._db.close()


def _prior_fields(prior: Delivered | None) -> tuple[Any, ...]:
    if prior is None:
        return (None, None, None, None, None)
    return (prior.identity, *prior.ids, prior.digest)


def _pending(batch: int, row: list[Any]) -> PendingContact:
    seq, pos, key, identity, email, ext_id, sms, digest, p_identity, p_email, p_ext_id, p_sms, p_digest = row
    prior = None if p_identity is None else Delivered(p_identity, ContactIds(p_email, p_ext_id, p_sms), p_digest)
    return PendingContact(batch, seq, pos, key, identity, ContactIds(email, ext_id, sms), digest, prior)


def _column_name(column: str) -> str:
    if column not in ("email", "ext_id", "sms"):
        raise ValueError(f"unknown identifier column {column!r}")
    return column


def _owner_only(path: str) -> None:
    """Create ``path`` (or tighten it) as mode 0600; SQLite gives its journal files the same mode."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat()


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
    with local_copy(target) as path:
        ledger = ContactLedger(path)
        try:
            yield ledger
        finally:
            if target.protocol != "file":
                # Before the copy goes back: everything in the main file (what was recorded was delivered).
                ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ledger.close()

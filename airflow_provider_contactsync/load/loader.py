"""Loading one run's contacts into Brevo so that every contact is accounted for.

1. :meth:`ContactLoader.recover` settles imports a crashed attempt left unfinished.
2. :meth:`ContactLoader.plan` checks the whole run's identities before anything is sent (the
   contacts Brevo refused last time, waiting in the ledger's retry queue, count as the oldest rows):
   a row sharing an identifier with a newer row is superseded or rejected as a conflict.
3. :meth:`ContactLoader.submit` sends each chunk's new or changed contacts as bulk imports. A
   contact whose identifying email (or first identifier) changed is first given its new
   identifiers through an update that finds it by an old one, so the import updates it instead of
   creating a second contact or being refused.
4. :meth:`ContactLoader.finish` waits for the imports and settles what Brevo did with each
   contact (:mod:`.outcomes`): applied contacts are recorded as delivered; refused ones are
   reported with the conflict named and queued to be sent again next run.

Uploading a body (megabytes) runs on one sender thread while the next chunk is prepared, so
network time overlaps the CPU work; one sender keeps the imports in order.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.core.identifiers import IdentityColumns
from airflow_provider_contactsync.core.spec import Destination
from airflow_provider_contactsync.load.identity import (
    ContactIds,
    RunRow,
    Verdict,
    identity_of,
    ids_of,
    needs_rekey,
    rekey_target,
)
from airflow_provider_contactsync.load.ledger import Batch, ContactLedger, Delivered, PendingContact, contact_digest
from airflow_provider_contactsync.load.outcomes import (
    BrevoContact,
    ReadBack,
    applied,
    brevo_contact,
    refusal,
    refusal_counters,
    show,
)
from airflow_provider_contactsync.load.preflight import Preflight

log = logging.getLogger(__name__)

DEFAULT_LOOKUP_BUDGET = 300
"""Contact lookups (``GET /contacts/{identifier}``) a run may spend naming the contacts that hold a
refused contact's identifiers; refusals past it are reported without the holder named."""

REKEY_BATCH = 100
"""Identity changes per ``POST /contacts/batch`` request."""

_FAILED = {"failed", "cancelled", "canceled", "error"}

Item = dict[str, Any]
ChunkReader = Callable[[str], list[tuple[Any, Item]]]


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A row that was not loaded as sent, for the error report.

    :param outcome: ``rejected`` (identity conflict in the run), ``refused`` (by Brevo) or
        ``skipped`` (superseded by a newer row of the same contact).
    """

    row: Any
    outcome: str
    field: str | None
    value: str | None
    reason: str
    chunk_url: str | None = None
    retry: bool = False  # a contact refused in an earlier run, sent again


@dataclass
class LoadResult:
    """What a load did: counts (what Brevo did, per contact) and the rows to put in the error report."""

    counts: dict[str, int]
    problems: list[LoadProblem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per step: identity check (pre-flight), send (ledger lookups, re-keys, uploads), settle
    (waiting for Brevo's imports to finish, which ``waiting for Brevo`` shows apart, then recording)."""


@dataclass(slots=True)
class _Outgoing:
    seq: int
    pos: int | None
    key: Any
    identity: str
    ids: ContactIds
    item: Item
    digest: str
    previous: Delivered | None = None

    def pending(self, batch: int = 0) -> PendingContact:
        return PendingContact(batch, self.seq, self.pos, self.key, self.identity, self.ids, self.digest, self.previous)


@dataclass(slots=True)
class _Sent:
    """What the sender thread did with one chunk: imports started and identity changes Brevo refused."""

    process_ids: list[int]
    received_at: dt.datetime | None
    refused: dict[int, tuple[str | None, str | None, str]]


class ContactLoader:
    """Plan, send and settle the contacts of one run.

    :param hook: a BrevoHook.
    :param ledger: the DAG's contact ledger.
    :param destination: lists and update options.
    :param full_refresh: send every contact, changed or not.
    :param keyed: the source has a row key, which is then the contact's identity across runs.
    :param run_id: the Airflow run, recorded with in-flight imports.
    :param read_chunk: reads a staged chunk back (for the identity check, and to queue refused contacts).
    :param read_identities: reads the identity hashes the map task wrote next to a chunk (None when
        there are none): the identity check then reads only the chunks holding shared identifiers.
    :param lookup_budget: see :data:`DEFAULT_LOOKUP_BUDGET`.
    """

    def __init__(
        self,
        hook: Any,
        ledger: ContactLedger,
        destination: Destination,
        *,
        full_refresh: bool,
        keyed: bool = False,
        run_id: str | None = None,
        read_chunk: ChunkReader | None = None,
        read_identities: Callable[[str], IdentityColumns | None] | None = None,
        lookup_budget: int = DEFAULT_LOOKUP_BUDGET,
    ) -> None:
        self.hook = hook
        self.ledger = ledger
        self.destination = destination
        self.full_refresh = full_refresh
        self.keyed = keyed
        self.run_id = run_id
        self._read_chunk = read_chunk
        self._read_identities = read_identities
        self._lookups_left = lookup_budget
        self.counts: Counter[str] = Counter(
            dict.fromkeys(
                (
                    "created",
                    "updated",
                    "unchanged",
                    "skipped (exists)",
                    "refused",
                    "superseded",
                    "identity conflicts",
                    "retried",
                    "recovered",
                ),
                0,
            )
        )
        self.problems: list[LoadProblem] = []
        self._verdicts: dict[int, Verdict] = {}
        self._retries: list[Any] = []
        self._next_seq = 0
        self._batches: list[Batch] = []
        self._sender: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[Future[_Sent], list[_Outgoing], str | None]] = deque()
        self._holders: dict[tuple[str, str], BrevoContact | None] = {}
        self._readback: ReadBack | None = None
        self._contacts_before: int | None = None  # the account's contact count before this run's first import
        self.seconds: Counter[str] = Counter()

    @property
    def create_only(self) -> bool:
        return not self.destination.update_existing

    def run(self, chunk_urls: Sequence[str], *, before_sending: Callable[[], None] | None = None) -> LoadResult:
        """The whole load, in order: recover, plan, send every chunk then the retries, settle.

        :param chunk_urls: the map task's staged contacts, in run order (read with ``read_chunk``).
        :param before_sending: called once the run's identities are checked, before anything is
            sent (the load task checks ``max_error_rate`` there).
        """
        try:
            self.recover()
            self.plan(chunk_urls)
            if before_sending is not None:
                before_sending()
            read = self._reader()
            for url in chunk_urls:
                self.submit(read(url), chunk_url=url)
            self.submit_retries()  # last: this run's rows may have fixed what Brevo refused
            return self.finish()
        finally:
            self.close()

    # -- 1. recovery ------------------------------------------------------------------------------

    def recover(self) -> None:
        """Settle imports a crashed attempt left unfinished, so their contacts are not sent again.

        Contacts Brevo refused there are not reported or queued: the run that sent them did not
        advance the cursor, so its rows come back (this attempt sends them again).
        """
        batches = self.ledger.batches()
        if not batches:
            return
        statuses = {}
        for batch in batches:
            for pid in batch.process_ids:
                statuses[pid] = str(self.hook.get_process(pid).get("status", "")).lower()
        alive = []
        for batch in batches:
            if any(statuses[pid] in _FAILED for pid in batch.process_ids):
                self.ledger.forget(batch.batch)
            else:
                alive.append(batch)
        before = Counter(self.counts)
        self._settle(alive, report=False)
        recorded = sum((self.counts - before).values())
        self.counts = before
        self.counts["recovered"] += recorded

    # -- 2. pre-flight ----------------------------------------------------------------------------

    def plan(self, chunk_urls: Sequence[str]) -> None:
        """Check the identities of the whole run (and of the retry queue) before anything is sent.

        The identity hashes come from the map task's sidecar files (else from reading each chunk);
        chunks holding contacts that share an identifier with another are read, to resolve those
        contacts exactly (see :mod:`.preflight`).
        """
        started = time.perf_counter()
        read = self._reader()
        self.ledger.begin_run()
        self._retries = self.ledger.retries()
        self.counts["retried"] = len(self._retries)
        oldest = -len(self._retries)
        preflight = Preflight()
        for entry in self._retries:
            preflight.add(entry.identity, ids_of(entry.item))
        starts: list[int] = []
        keyed = self.keyed
        for url in chunk_urls:
            starts.append(len(preflight))
            identities = self._read_identities(url) if self._read_identities is not None else None
            if identities is None:
                preflight.add_chunk(read(url), keyed=keyed)
            else:
                preflight.add_identities(identities)

        def fetch(positions: list[int]) -> list[RunRow]:
            rows = []
            by_chunk: dict[int, list[int]] = {}
            for position in positions:
                if position < len(self._retries):
                    entry = self._retries[position]
                    rows.append(RunRow(oldest + position, entry.row_key, entry.identity, ids_of(entry.item)))
                else:
                    by_chunk.setdefault(bisect_right(starts, position) - 1, []).append(position)
            for index, wanted in by_chunk.items():
                chunk = read(chunk_urls[index])
                for position in wanted:
                    key, item = chunk[position - starts[index]]
                    ids = ids_of(item)
                    rows.append(RunRow(position + oldest, key, identity_of(ids, key, keyed=keyed), ids))
            return rows

        self._verdicts = {v.seq: v for v in preflight.conflicts(fetch)}
        dropped = [self._retries[v.seq - oldest].identity for v in self._verdicts.values() if v.seq < 0]
        if dropped:
            self.ledger.drop_retry(dropped)
        self.seconds["identity check"] += time.perf_counter() - started

    def _reader(self) -> ChunkReader:
        if self._read_chunk is None:
            raise ValueError("ContactLoader needs read_chunk to check a run's identities")
        return self._read_chunk

    def _skip(self, verdict: Verdict, chunk_url: str | None = None) -> None:
        self.counts["superseded" if verdict.superseded else "identity conflicts"] += 1
        self.problems.append(
            LoadProblem(
                verdict.key,
                "skipped" if verdict.superseded else "rejected",
                None if verdict.kind == "KEY" else verdict.kind,
                None if verdict.kind == "KEY" else show(verdict.kind, verdict.value),
                verdict.reason if verdict.seq >= 0 else f"retry of a refused contact: {verdict.reason}",
                chunk_url,
                verdict.seq < 0,
            )
        )

    # -- 3. sending -------------------------------------------------------------------------------

    def submit_retries(self) -> None:
        """Send again the contacts Brevo refused in earlier runs (those no newer row replaced)."""
        oldest = -len(self._retries)
        outgoing = []
        for index, entry in enumerate(self._retries):
            seq = oldest + index
            verdict = self._verdicts.get(seq)
            if verdict is not None:
                self._skip(verdict)
                continue
            outgoing.append(
                _Outgoing(
                    seq, None, entry.row_key, entry.identity, ids_of(entry.item), entry.item, contact_digest(entry.item)
                )
            )
        self._send(outgoing, chunk_url=None)

    def submit(self, chunk: Sequence[tuple[Any, Item]], *, chunk_url: str | None = None) -> None:
        """Send the contacts of one chunk (in run order) that are new or changed."""
        start = self._next_seq
        self._next_seq += len(chunk)
        outgoing = []
        for pos, (key, item) in enumerate(chunk):
            verdict = self._verdicts.get(start + pos)
            if verdict is not None:
                self._skip(verdict, chunk_url)
                continue
            ids = ids_of(item)
            outgoing.append(
                _Outgoing(
                    start + pos, pos, key, identity_of(ids, key, keyed=self.keyed), ids, item, contact_digest(item)
                )
            )
        self._send(outgoing, chunk_url=chunk_url)

    def _send(self, outgoing: list[_Outgoing], *, chunk_url: str | None) -> None:
        started = time.perf_counter()
        try:
            self._classify_and_send(outgoing, chunk_url=chunk_url)
        finally:
            self.seconds["send"] += time.perf_counter() - started

    def _classify_and_send(self, outgoing: list[_Outgoing], *, chunk_url: str | None) -> None:
        if not outgoing:
            return
        known = self._previous(outgoing)
        to_send: list[_Outgoing] = []
        for contact in outgoing:
            previous = known.get(contact.seq)
            if (
                previous is not None
                and previous.identity == contact.identity
                and previous.digest == contact.digest
                and not self.full_refresh
            ):
                self.counts["unchanged"] += 1
                continue
            contact.previous = previous
            to_send.append(contact)
        if not to_send:
            return
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contactsync-import")
        self._in_flight.append((self._sender.submit(self._upload, to_send), to_send, chunk_url))
        self._collect(keep=1)  # one body uploading while the next chunk is prepared: bounded memory

    def _previous(self, outgoing: list[_Outgoing]) -> dict[int, Delivered]:
        """What each contact was last delivered as: by identity, else (unkeyed sources) by an identifier."""
        if self.ledger.empty_at_run_start:
            return {}  # a first load: contacts of this run are all new (and the identifier indexes are down)
        by_identity = self.ledger.lookup([c.identity for c in outgoing])
        found = {c.seq: by_identity[c.identity] for c in outgoing if c.identity in by_identity}
        if self.keyed:
            return found
        for kind in ("EXT_ID", "EMAIL", "SMS"):
            missing = [c for c in outgoing if c.seq not in found and c.ids.get(kind) is not None]
            if not missing:
                continue
            holders = self.ledger.holders(kind, [str(c.ids.get(kind)) for c in missing])
            for contact in missing:
                holder = holders.get(str(contact.ids.get(kind)))
                if holder is not None:
                    found[contact.seq] = holder
        return found

    def _upload(self, contacts: list[_Outgoing]) -> _Sent:
        """In the sender thread: identity changes first, then the import of the chunk's contacts."""
        refused = self._rekey([c for c in contacts if c.previous and needs_rekey(c.previous.ids, c.ids)])
        items = [c.item for c in contacts if c.seq not in refused]
        process_ids: list[int] = []
        received_at = None
        if items:
            if self._contacts_before is None:
                self._contacts_before = self.hook.count_contacts()
            process_ids = self.hook.import_contacts(
                items,
                list_ids=self.destination.list_ids,
                update_existing=self.destination.update_existing,
                empty_attributes=self.destination.empty_attributes,
            )
            received_at = self.hook.last_import_received_at
        return _Sent(process_ids, received_at, refused)

    def _rekey(self, contacts: list[_Outgoing]) -> dict[int, tuple[str | None, str | None, str]]:
        """Give existing contacts their new identifiers; return the refused ones (seq -> conflict)."""
        refused: dict[int, tuple[str | None, str | None, str]] = {}
        batchable = [c for c in contacts if rekey_target(c.previous.ids)[0] != "EXT_ID"]  # type: ignore[union-attr]
        one_by_one = [c for c in contacts if c not in batchable]
        for start in range(0, len(batchable), REKEY_BATCH):
            part = batchable[start : start + REKEY_BATCH]
            try:
                self.hook.update_contacts_batch([_rekey_body(c) for c in part], batch_size=REKEY_BATCH)
            except BrevoError as err:
                if err.status not in (400, 404):
                    raise
                one_by_one.extend(part)  # all or nothing at Brevo: find out contact by contact
        for contact in one_by_one:
            outcome = self._rekey_one(contact)
            if outcome is not None:
                refused[contact.seq] = outcome
        return refused

    def _rekey_one(self, contact: _Outgoing) -> tuple[str | None, str | None, str] | None:
        assert contact.previous is not None
        kind, value = rekey_target(contact.previous.ids)
        attributes, ext_id = _rekey_changes(contact)
        try:
            self.hook.update_contact(show(kind, value), kind, attributes=attributes or None, ext_id=ext_id)
        except BrevoError as err:
            if err.status == 404:
                log.info("Contact %s %s was not found in Brevo: the import creates it", kind, value)
                return None
            if err.status != 400:
                raise
            conflict_kind, conflict_value, reason, holder = refusal(
                contact.ids, {}, holder=self._holder, exclude=contact.previous.ids
            )
            if holder is None or reason is None:  # not a conflict with another contact: Brevo says why
                changed = next(
                    k for k in ("EMAIL", "SMS", "EXT_ID") if contact.ids.get(k) != contact.previous.ids.get(k)
                )
                return changed, contact.ids.get(changed), f"refused by Brevo: {err.message}"
            return conflict_kind, conflict_value, reason
        return None

    def _collect(self, *, keep: int) -> None:
        """Record uploaded chunks as pending imports (on disk) until at most ``keep`` are in flight."""
        while len(self._in_flight) > keep:
            future, contacts, chunk_url = self._in_flight.popleft()
            sent = future.result()  # a failed upload raises here, in the task's thread
            for contact in contacts:
                if contact.seq in sent.refused:
                    kind, value, reason = sent.refused[contact.seq]
                    self._refuse(
                        contact.key, contact.identity, contact.item, kind, value, reason, chunk_url, contact.seq < 0
                    )
            if sent.process_ids:
                pending = [c.pending() for c in contacts if c.seq not in sent.refused]
                batch = self.ledger.add_pending(
                    sent.process_ids,
                    pending,
                    run_id=self.run_id,
                    chunk_url=chunk_url,
                    submitted_at=sent.received_at.isoformat() if sent.received_at else None,
                )
                self._batches.append(
                    Batch(
                        batch,
                        sent.process_ids,
                        self.run_id,
                        chunk_url,
                        sent.received_at.isoformat() if sent.received_at else None,
                    )
                )

    def close(self) -> None:
        """Stop the sender thread (after a failure, uploads not yet started are dropped)."""
        if self._sender is not None:
            for future, _, _ in self._in_flight:
                future.cancel()
            self._sender.shutdown(wait=True)
            self._sender = None

    # -- 4. settling ------------------------------------------------------------------------------

    def finish(self) -> LoadResult:
        """Wait for this run's imports, settle what Brevo did with each contact, and return it all."""
        started = time.perf_counter()
        self._collect(keep=0)
        self.close()
        self.seconds["send"] += time.perf_counter() - started
        started = time.perf_counter()
        self._settle(self._batches, report=True)
        self.ledger.end_run()
        self.seconds["settle"] += time.perf_counter() - started
        return LoadResult(dict(self.counts), list(self.problems), {k: round(v, 3) for k, v in self.seconds.items()})

    def _settle(self, batches: list[Batch], *, report: bool) -> None:
        """Settle finished imports: find what Brevo refused, record the rest, count what Brevo did.

        How many contacts Brevo created is the growth of the account's contact count over the run
        (two requests, whatever the size; another writer creating or deleting contacts meanwhile
        would skew it, so it is bounded by what was sent); the other accepted contacts were updated,
        or, in a create-only load, left as they were.
        """
        if not batches:
            return
        started = time.perf_counter()
        processes = self.hook.wait_for_processes([pid for b in batches for pid in b.process_ids])
        self.seconds["waiting for Brevo"] += time.perf_counter() - started
        by_id = {int(p["id"]): p for p in processes}
        counters: dict[int, Counter[str]] = {}
        for batch in batches:
            counters[batch.batch] = sum((Counter(refusal_counters(by_id[pid])) for pid in batch.process_ids), Counter())
        if not any(counters.values()):
            accepted = sum(self.ledger.settle(b.batch) for b in batches)
        else:
            since = min(_instant(b.submitted_at) for b in batches)
            self._readback = ReadBack(self.hook.iter_contacts(modified_since=since))
            try:
                accepted = sum(self._settle_checked(b, counters[b.batch], report=report) for b in batches)
            finally:
                self._readback.close()
                self._readback = None
        created = 0
        if self._contacts_before is not None and accepted:
            created = max(0, min(accepted, self.hook.count_contacts() - self._contacts_before))
        self.counts["created"] += created
        self.counts["skipped (exists)" if self.create_only else "updated"] += accepted - created

    def _settle_checked(self, batch: Batch, counters: Counter[str], *, report: bool) -> int:
        """One batch whose imports reported refusals: each contact checked against the read-back.

        Returns how many contacts Brevo accepted (or, create-only, found existing).
        """
        assert self._readback is not None
        to_find = sum(counters.values())  # refusals Brevo counted; once found, the rest were accepted
        accepted = 0
        refused: list[PendingContact] = []
        reasons: dict[int, tuple[str | None, str | None, str]] = {}
        for contact in self.ledger.pending(batch.batch):
            primary = contact.ids.primary
            found = self._readback.holder(*primary) if primary else None
            if to_find <= 0 or applied(contact.ids, found):
                accepted += 1
                continue
            kind, value, reason, _same = refusal(contact.ids, counters, holder=self._holder)
            if reason is None:  # the contact is there, as sent: left alone (create-only) or already so
                accepted += 1
                continue
            to_find -= 1
            refused.append(contact)
            reasons[contact.seq] = (kind, value, reason)
        items = self._items_of(batch, refused) if report else {}
        self.ledger.settle(batch.batch, refused=[c.seq for c in refused])
        if report:
            for contact in refused:
                kind, value, reason = reasons[contact.seq]
                self._refuse(
                    contact.row_key,
                    contact.identity,
                    items.get(contact.seq),
                    kind,
                    value,
                    reason,
                    batch.chunk_url,
                    contact.seq < 0,
                )
        return accepted

    def _refuse(
        self,
        key: Any,
        identity: str,
        item: Item | None,
        kind: str | None,
        value: str | None,
        reason: str,
        chunk_url: str | None = None,
        retry: bool = False,
    ) -> None:
        self.counts["refused"] += 1
        if item is not None:
            self.ledger.queue_retry(identity, key, item, reason, dt.datetime.now(dt.timezone.utc).isoformat())
        else:
            reason += " (its staged data is gone: it is not sent again automatically; a full refresh re-sends it)"
        shown = show(kind, value) if kind and value else value
        self.problems.append(LoadProblem(key, "refused", kind, shown, reason, chunk_url, retry))

    def _items_of(self, batch: Batch, contacts: list[PendingContact]) -> dict[int, Item]:
        """The import items of refused contacts, from the staged chunk (or the retry queue)."""
        if not contacts:
            return {}
        if batch.chunk_url is None:
            queued = {entry.identity: entry.item for entry in self.ledger.retries()}
            return {c.seq: queued[c.identity] for c in contacts if c.identity in queued}
        if self._read_chunk is None:
            return {}
        try:
            chunk = self._read_chunk(batch.chunk_url)
        except FileNotFoundError:
            return {}
        return {c.seq: chunk[c.pos][1] for c in contacts if c.pos is not None and c.pos < len(chunk)}

    def _holder(self, kind: str, value: str) -> BrevoContact | None:
        """The Brevo contact holding an identifier: from the read-back, else one lookup (within budget)."""
        if self._readback is not None:
            found = self._readback.holder(kind, value)
            if found is not None:
                return found
        if (kind, value) in self._holders:
            return self._holders[(kind, value)]
        if self._lookups_left <= 0:
            return None
        self._lookups_left -= 1
        document = self.hook.get_contact(show(kind, value), kind)
        holder = brevo_contact(document) if document else None
        self._holders[(kind, value)] = holder
        return holder


def _rekey_changes(contact: _Outgoing) -> tuple[dict[str, Any], str | None]:
    """The new identifiers of a contact whose identity changed: (EMAIL/SMS attributes, new EXT_ID)."""
    assert contact.previous is not None
    old, new = contact.previous.ids, contact.ids
    attributes: dict[str, Any] = {}
    if new.email is not None and new.email != old.email:
        attributes["EMAIL"] = new.email
    if new.sms is not None and new.sms != old.sms:
        attributes["SMS"] = show("SMS", new.sms)
    return attributes, new.ext_id if new.ext_id is not None and new.ext_id != old.ext_id else None


def _rekey_body(contact: _Outgoing) -> dict[str, Any]:
    """A ``/contacts/batch`` item that finds the contact by its old email (or SMS) and gives it the new identifiers."""
    assert contact.previous is not None
    kind, value = rekey_target(contact.previous.ids)
    attributes, ext_id = _rekey_changes(contact)
    body: dict[str, Any] = {{"EMAIL": "email", "SMS": "sms"}[kind]: show(kind, value)}
    if attributes:
        body["attributes"] = attributes
    if ext_id is not None:
        body["ext_id"] = ext_id
    return body


def _instant(value: str | None) -> dt.datetime:
    if value:
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)

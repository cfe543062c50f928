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
from airflow_provider_contactsync.core.sync_rules import SYNC_KEY, without_intent
from airflow_provider_contactsync.load import consent as consent_rules
from airflow_provider_contactsync.load.bulk import batch_address, change_lists, update_batches, update_each
from airflow_provider_contactsync.load.identity import (
    ContactIds,
    RunRow,
    Verdict,
    identity_of,
    ids_of,
    needs_rekey,
    rekey_target,
)
from airflow_provider_contactsync.load.ledger import (
    Batch,
    ContactLedger,
    Delivered,
    PendingContact,
    contact_digest,
    is_fresh,
)
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
from airflow_provider_contactsync.load.removal import (
    MassDeleteError,
    RemovalPlan,
    check_guardrail,
    plan_removals,
    remove,
)
from airflow_provider_contactsync.load.settings import SyncSettings

log = logging.getLogger(__name__)

DEFAULT_LOOKUP_BUDGET = 300
"""Contact lookups (``GET /contacts/{identifier}``) a run may spend naming the contacts that hold a
refused contact's identifiers; refusals past it are reported without the holder named."""

REKEY_BATCH = 100
"""Identity changes per ``POST /contacts/batch`` request."""

_FAILED = {"failed", "cancelled", "canceled", "error"}

_ALWAYS_COUNTED = (
    "created",
    "updated",
    "unchanged",
    "skipped (exists)",
    "refused",
    "superseded",
    "identity conflicts",
    "retried",
    "recovered",
)
"""Counts every load reports, even at zero; the others (deletes, lists, consent) appear when they happen."""

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
    notes: list[str] = field(default_factory=list)
    """Said in the run summary: removals made (a sample), why mirror removals were held, a dry run's plan."""
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

    # What the ledger records of a sent contact (:class:`~.ledger.Recordable`): the contact itself,
    # not a copy per contact (920,000 copies cost a million-row load 1.5 s).
    @property
    def row_key(self) -> Any:
        return self.key

    @property
    def prior(self) -> Delivered | None:
        return self.previous

    @property
    def fresh(self) -> bool:
        return is_fresh(self.previous, self.identity, self.ids)


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
        settings: SyncSettings | None = None,
        read_sync: Callable[[str], dict[str, Any] | None] | None = None,
        on_batch: Callable[[int, dict[str, int]], None] | None = None,
    ) -> None:
        self.hook = hook
        self.on_batch = on_batch  # told as each of this run's import batches is settled (batch_completed)
        self.ledger = ledger
        self.destination = destination
        self.full_refresh = full_refresh
        self.keyed = keyed
        self.run_id = run_id
        self._read_chunk = read_chunk
        self._read_identities = read_identities
        self._lookups_left = lookup_budget
        self.counts: Counter[str] = Counter(dict.fromkeys(_ALWAYS_COUNTED, 0))
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
        self._newest_before: int | None = None  # and the id of its newest contact then
        self.seconds: Counter[str] = Counter()
        self.settings = settings or SyncSettings(mode=destination.mode)
        self._read_sync = read_sync
        self._chunk_starts: list[int] = []
        self._removal_plan: RemovalPlan | None = None
        self.guardrail: MassDeleteError | None = None  # dry runs: the guardrail a real run would hit
        self._membership: list[tuple[str, ContactIds, list[int], list[int], tuple[int, ...]]] = []
        self._candidates: list[consent_rules.Candidate] = []
        self._refused: set[str] = set()
        self.notes: list[str] = []  # said in the run summary (e.g. why mirror removals were held)

    @property
    def create_only(self) -> bool:
        return self.destination.mode == "create_only"

    def run(self, chunk_urls: Sequence[str], *, before_sending: Callable[[], None] | None = None) -> LoadResult:
        """The whole load, in order: recover, plan, send every chunk then the retries, settle.

        :param chunk_urls: the map task's staged contacts, in run order (read with ``read_chunk``).
        :param before_sending: called once the run's identities are checked, before anything is
            sent (the load task checks ``max_error_rate`` there).
        """
        try:
            self.recover()
            self.plan(chunk_urls)
            self.plan_removals(chunk_urls)  # the guardrail: before anything is sent
            if self.settings.dry_run:
                return self.dry_run(chunk_urls)
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
        self._chunk_starts = [start - len(self._retries) for start in starts]
        dropped = [self._retries[v.seq - oldest].identity for v in self._verdicts.values() if v.seq < 0]
        if dropped and not self.settings.dry_run:
            self.ledger.drop_retry(dropped)
        self.seconds["identity check"] += time.perf_counter() - started

    def plan_removals(self, chunk_urls: Sequence[str]) -> None:
        """Plan the run's deletes (soft-delete markers; mirror mode: contacts the full read missed) and
        check ``deletes.max_per_run`` before anything is sent (:mod:`.removal`)."""
        deletes = self.settings.deletes
        if deletes is None:
            return
        mirror = self.settings.mirror
        held = None if self.settings.full_read else "this run did not read the whole source"
        if mirror:
            self.ledger.begin_seen()
            self.ledger.add_seen(entry.identity for entry in self._retries)  # refused earlier: still in the source
        soft: list[tuple[Any, str]] = []
        unkeyed = 0
        for index, url in enumerate(chunk_urls):
            found = self._read_sync(url) if self._read_sync is not None else None
            if found is None:
                held = held or "a chunk has no record of its rows"
                continue
            for position, key, item in found.get("deleted") or []:
                if self._chunk_starts[index] + position in self._verdicts:
                    continue  # a newer row of the same contact replaced this one (or it conflicts)
                soft.append((key, identity_of(ids_of(item), key, keyed=self.keyed)))
            if mirror:
                self.ledger.add_seen(f"K:{key}" for key in found.get("keys") or [])
                unkeyed += int(found.get("unkeyed") or 0)
        if unkeyed:
            held = f"{unkeyed} row(s) were rejected before their key was known, so the read may miss contacts"
        plan = plan_removals(self.ledger, deletes, soft, mirror=mirror, held=held)
        if plan.held:
            self.notes.append(f"mirror: nothing removed for being gone from the source: {plan.held}")
        self._removal_plan = plan
        try:
            check_guardrail(self.ledger, deletes, plan, allowed=self.settings.allow_mass_delete)
        except MassDeleteError as exc:
            if not self.settings.dry_run:
                raise
            self.guardrail = exc

    def dry_run(self, chunk_urls: Sequence[str]) -> LoadResult:
        """What the run would do, with nothing sent and nothing recorded."""
        would = self._would_send(chunk_urls)
        plan = self._removal_plan
        counts = dict(would)
        if plan is not None:
            counts["would remove"] = len(plan.removals)
            counts["would keep (not owned or never delivered)"] = len(plan.kept)
            self.notes.extend(f"would remove {line}" for line in plan.sample())
        if self.guardrail is not None:
            self.notes.append(f"a real run would stop: {self.guardrail}")
        self.notes.insert(0, "dry run: nothing was sent to Brevo and nothing was recorded")
        return LoadResult(counts, [], list(self.notes))

    def planned_operations(self, chunk_urls: Sequence[str]) -> int:
        """Writes this run would make in Brevo, once :meth:`plan` and :meth:`plan_removals` ran: its new or
        changed contacts (the chunks read again and looked up in the ledger), the refused contacts of earlier
        runs sent again, and the planned removals; each is one create, update or delete at most (the monthly
        quota counts them). Reads and records nothing else."""
        return self._would_send(chunk_urls)["would send"] + self.planned_retries + self.planned_removals

    @property
    def planned_retries(self) -> int:
        """Refused contacts of earlier runs this run sends again (those no newer row replaced)."""
        oldest = -len(self._retries)
        return sum(oldest + index not in self._verdicts for index in range(len(self._retries)))

    @property
    def planned_removals(self) -> int:
        return len(self._removal_plan.removals) if self._removal_plan is not None else 0

    def _would_send(self, chunk_urls: Sequence[str]) -> Counter[str]:
        """The run's contacts as the send would classify them: would send, unchanged, skipped, deleted."""
        read = self._reader()
        would = Counter[str]()
        seq = 0
        for url in chunk_urls:
            chunk = read(url)
            start = seq
            seq += len(chunk)
            outgoing = []
            for pos, (key, item) in enumerate(chunk):
                if start + pos in self._verdicts:
                    would["skipped (conflict or superseded)"] += 1
                    continue
                if (item.get(SYNC_KEY) or {}).get("delete"):
                    would["deleted in source"] += 1
                    continue
                outgoing.append(self._outgoing(start + pos, pos, key, item))
            known = self._previous(outgoing)
            for contact in outgoing:
                previous = known.get(contact.seq)
                unchanged = (  # as _classify_and_send decides
                    previous is not None
                    and previous.identity == contact.identity
                    and previous.digest == contact.digest
                    and not self.full_refresh
                )
                would["unchanged" if unchanged else "would send"] += 1
        return would

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
            if self.settings.intents and (item.get(SYNC_KEY) or {}).get("delete"):
                self.counts["deleted in source"] += 1  # removed (or kept, said why) by the removal plan
                continue
            outgoing.append(self._outgoing(start + pos, pos, key, item))
        self._send(outgoing, chunk_url=chunk_url)

    def _outgoing(self, seq: int, pos: int, key: Any, item: Item) -> _Outgoing:
        """A contact of a chunk, as the send and the dry run look at it."""
        ids = ids_of(item)
        return _Outgoing(seq, pos, key, identity_of(ids, key, keyed=self.keyed), ids, item, contact_digest(item))

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
        changes = self._spool_intents(to_send) if self.settings.intents or self.settings.unlink_list_ids else {}
        if not self.settings.imports:
            self._send_updates(to_send, chunk_url, changes)
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
        groups: dict[tuple[bool, bool], list[Item]] = {}
        for contact in contacts:
            if contact.seq not in refused:
                flags = (
                    consent_rules.import_flags(contact.item.get(SYNC_KEY) or {})
                    if self.settings.intents
                    else (False, False)
                )
                groups.setdefault(flags, []).append(contact.item)
        process_ids: list[int] = []
        received_at = None
        for (email_blacklist, sms_blacklist), items in sorted(groups.items()):
            if self._contacts_before is None:
                self._contacts_before, self._newest_before = self.hook.newest_contact()
            process_ids += self.hook.import_contacts(
                without_intent(items) if self.settings.intents else items,
                list_ids=self.destination.list_ids,
                update_existing=self.destination.update_enabled,
                empty_attributes=self.destination.empty_attributes,
                email_blacklist=email_blacklist,
                sms_blacklist=sms_blacklist,
            )
            received_at = received_at or self.hook.last_import_received_at
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
                pending = [c for c in contacts if c.seq not in sent.refused] if sent.refused else contacts
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
        self.seconds["settle"] += time.perf_counter() - started
        started = time.perf_counter()
        self._settle_ownership()
        self._apply_membership()
        self._apply_resubscriptions()
        self._apply_removals()
        self.ledger.end_run()
        self.seconds["lists, consent and deletes"] += time.perf_counter() - started
        counts = {name: value for name, value in self.counts.items() if value or name in _ALWAYS_COUNTED}
        return LoadResult(
            counts, list(self.problems), list(self.notes), {k: round(v, 3) for k, v in self.seconds.items()}
        )

    # -- 5. beyond upserts: ownership, lists, consent, deletes --------------------------------------

    def _spool_intents(self, contacts: list[_Outgoing]) -> dict[str, Any]:
        """Remember what each sent contact's intent asks beyond its import (lists, resubscription);
        return this chunk's list changes by identity."""
        with_lists = [c for c in contacts if (c.item.get(SYNC_KEY) or {}).keys() & {"in", "out"}]
        previous = self.ledger.contacts([c.identity for c in with_lists]) if with_lists else {}
        unlink = list(self.settings.unlink_list_ids)
        changes: dict[str, Any] = {}
        for contact in contacts:
            intent = contact.item.get(SYNC_KEY) or {}
            before = previous[contact.identity].lists if contact.identity in previous else ()
            joined, left = intent.get("in") or [], intent.get("out") or []
            add = [i for i in joined if i not in before]
            drop = [i for i in left if i in before] + unlink
            now = tuple(sorted((set(before) - set(left)) | set(joined)))
            if add or drop or now != tuple(before):
                changes[contact.identity] = (contact.identity, contact.ids, add, drop, now)
                self._membership.append(changes[contact.identity])
            if intent.get("email") is True and intent.get("email_at") and self.settings.resubscribe == "explicit_only":
                self._candidates.append(consent_rules.Candidate(contact.identity, contact.ids, intent["email_at"]))
        return changes

    def _send_updates(self, contacts: list[_Outgoing], chunk_url: str | None, membership: dict[str, Any]) -> None:
        """update_only: batch updates that never create; a contact Brevo does not have is skipped.

        :param membership: this chunk's list changes by identity (:meth:`_spool_intents`).
        """
        refused = self._rekey([c for c in contacts if c.previous and needs_rekey(c.previous.ids, c.ids)])
        batched: list[_Outgoing] = []
        bodies: list[Item] = []
        singles: list[tuple[_Outgoing, ContactIds, Item]] = []
        for contact in contacts:
            if contact.seq in refused:
                kind, value, reason = refused[contact.seq]
                self._refuse(
                    contact.key, contact.identity, contact.item, kind, value, reason, chunk_url, contact.seq < 0
                )
                continue
            body = self._update_body(contact, membership.get(contact.identity))
            address = batch_address(contact.ids)
            if address is None:
                singles.append((contact, contact.ids, body))
            else:
                batched.append(contact)
                bodies.append({**address, **body})
        missing = {batched[i].seq for i in update_batches(self.hook, bodies)}
        update_each(self.hook, singles, on_missing=lambda c: missing.add(c.seq))
        accepted = [c for c in contacts if c.seq not in refused and c.seq not in missing]
        for contact in contacts:
            if contact.seq in missing:
                self._refused.add(contact.identity)
                self.counts["skipped (not in Brevo)"] += 1
                self.problems.append(
                    LoadProblem(
                        contact.key,
                        "skipped",
                        None,
                        None,
                        "not in Brevo: mode update_only never creates contacts",
                        chunk_url,
                        contact.seq < 0,
                    )
                )
        if accepted:
            batch = self.ledger.add_pending([], accepted, run_id=self.run_id, chunk_url=chunk_url, submitted_at=None)
            self.counts["updated"] += self.ledger.settle(batch)

    def _update_body(self, contact: _Outgoing, membership: Any) -> Item:
        """The batch-update body of a contact: attributes, lists and consent flags (no identifier)."""
        intent = contact.item.get(SYNC_KEY) or {}
        body: Item = {}
        attributes = dict(contact.item.get("attributes") or {})
        if attributes:
            body["attributes"] = attributes
        joined = list(self.destination.list_ids) + (membership[2] if membership else [])
        left = list(membership[3]) if membership else list(self.settings.unlink_list_ids)
        if joined:
            body["listIds"] = joined
        if left:
            body["unlinkListIds"] = left
        if intent.get("email") is False:
            body["emailBlacklisted"] = True
        if intent.get("sms") is False:
            body["smsBlacklisted"] = True
        return body

    def _settle_ownership(self) -> None:
        """Record which contacts first delivered in this run this source created (who may delete them)."""
        if not self.settings.imports:
            self.ledger.settle_ownership(created=False)
            return
        awaiting = self.ledger.awaiting_count()
        if not awaiting:
            return
        created = self.counts["created"]
        if created == 0 or created >= awaiting:
            self.ledger.settle_ownership(created=created > 0)
            return
        if self.settings.deletes is None:  # nobody asks: not worth reading Brevo back
            self.ledger.settle_ownership(created=None)
            return
        # Contacts created since the run's first import have ids above the newest one before it.
        since = min((_instant(b.submitted_at) for b in self._batches), default=None)
        since = since - dt.timedelta(seconds=2) if since is not None else None  # Brevo's clock is to the second
        newest = self._newest_before or 0
        created_ids: set[tuple[str, str]] = set()
        for document in self.hook.iter_contacts(created_since=since):
            if int(document.get("id") or 0) > newest:
                created_ids.update(brevo_contact(document).ids.values().items())
        mine = [
            c.identity
            for c in self.ledger.awaiting_ownership()
            if any(pair in created_ids for pair in c.ids.values().items())
        ]
        self.ledger.settle_ownership(created_identities=mine)

    def _apply_membership(self) -> None:
        """Conditional lists and unlink_list_ids, in bulk per list (import modes; update_only sent them inline)."""
        entries = [e for e in self._membership if e[0] not in self._refused]
        if self.settings.imports:
            changes: dict[tuple[int, str], list[ContactIds]] = {}
            for _, ids, add, drop, _ in entries:
                for list_id in add:
                    changes.setdefault((list_id, "add"), []).append(ids)
                for list_id in drop:
                    changes.setdefault((list_id, "remove"), []).append(ids)
            for (list_id, action), members in sorted(changes.items()):
                change_lists(self.hook, list_id, action, members)
                self.counts["joined a list" if action == "add" else "left a list"] += len(members)
        self.ledger.set_lists((identity, now) for identity, _, _, _, now in entries)

    def _apply_resubscriptions(self) -> None:
        candidates = [c for c in self._candidates if c.identity not in self._refused]
        if not candidates:
            return
        counts, later, kept = consent_rules.resubscribe(self.hook, candidates)
        self.counts.update(counts)
        if later:
            self.ledger.forget_digests(later)
            self.notes.append(f"{len(later)} resubscription(s) to decide next run (lookup budget)")
        keys = {c.identity: c for c in candidates}
        for identity, reason in kept:
            self.problems.append(
                LoadProblem(identity.removeprefix("K:"), "skipped", "EMAIL", keys[identity].ids.email, reason)
            )

    def _apply_removals(self) -> None:
        plan = self._removal_plan
        deletes = self.settings.deletes
        if plan is None or deletes is None:
            return
        self.counts.update(remove(self.hook, self.ledger, deletes, plan.removals, self.destination.list_ids))
        for key, reason in plan.kept:
            if reason.startswith("deleted in the source"):
                self.problems.append(LoadProblem(key, "skipped", None, None, reason))
            else:
                self.counts["not removed (not created by this source)"] += 1
        if plan.removals:
            self.notes.extend(f"removed {line}" for line in plan.sample())

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
            settled = [(b, self.ledger.settle(b.batch)) for b in batches]
        else:
            since = min(_instant(b.submitted_at) for b in batches)
            self._readback = ReadBack(self.hook.iter_contacts(modified_since=since))
            try:
                settled = [(b, self._settle_checked(b, counters[b.batch], report=report)) for b in batches]
            finally:
                self._readback.close()
                self._readback = None
        accepted = sum(count for _, count in settled)
        if report and self.on_batch is not None:
            for number, (batch, count) in enumerate(settled, start=1):
                self.on_batch(number, {"accepted": count, "refused": sum(counters[batch.batch].values())})
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
        self._refused.add(identity)
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

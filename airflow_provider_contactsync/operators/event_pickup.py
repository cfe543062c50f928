"""The events side of the operators: claim queued events, stage one row per customer, settle after the load.

Extract claims up to ``max_events_per_run`` events (claims a dead run left first), sets aside those
claimed ``max_attempts`` times already (the dead-letter list), parses the rest, applies them on the
state earlier runs left (:mod:`..sources.events.apply`: per customer, in event-time order, once) and
stages one row per customer whose contact changes. Nothing is acknowledged there: the load settles
the run's new state, then acknowledges the events, once the contacts are in Brevo (or their refusals
recorded). A run that dies leaves its claims pending and its state unwritten; the next run claims the
events again and applies them as if for the first time.

Every claimed event is counted in exactly one of: ``applied``, ``duplicate``, ``stale``,
``unreadable`` (its payload cannot be understood), ``dead-lettered`` and ``ignored`` (a delete in
create-only mode, which never changes a contact). Unreadable and dead-lettered events are lines of the
error report (outcomes ``rejected`` and ``dead-lettered``), not rows: they do not count in
``max_error_rate``, so one poison event cannot hold back the good ones it came with (they would be
claimed again and again, and dead-lettered with it).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from typing import Any

from airflow_provider_contactsync.core.spec.models import CUSTOMER_ID_FIELD, EVENT_TIME_FIELD, EVENT_TYPE_FIELD
from airflow_provider_contactsync.staging import ChunkStore, decode, encode, write_private

CONSUMER = "contactsync"
"""The queue consumer of every run: one run at a time (``max_active_runs=1``), so a new run may take
over whatever a dead one left claimed."""

EVENTS_FILE = "events.msgpack"
EVENT_COUNTS = ("applied", "duplicate", "stale", "unreadable", "dead-lettered", "ignored")

SKIP_DUPLICATE = "duplicate event (applied already)"
SKIP_STALE = "stale event (newer events decided it)"
SKIP_IGNORED_DELETE = "customer_deleted ignored: mode create_only never changes a contact"
_KINDS = {"created": "created", "updated": "updated", "deleted": "deleted"}


def open_queue(spec: Any) -> Any:
    from airflow_provider_contactsync.sources.events.backends import open_event_queue

    queue = spec.source.queue
    return open_event_queue(
        queue.backend, queue.conn_id, integration=spec.integration, source=spec.source.name, table=queue.table
    )


def extract_events(operator: Any, context: Any, store: ChunkStore) -> dict[str, Any]:
    """Claim, parse and apply queued events; stage one row per customer to change (see the module doc).

    :raises AirflowSkipException: nothing queued and no refused contact waiting to be sent again.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_provider_contactsync.load.ledger import queued_retries
    from airflow_provider_contactsync.sources.events.apply import apply_events
    from airflow_provider_contactsync.sources.events.shapes import EventError, parse_event
    from airflow_provider_contactsync.sources.events.state_store import open_event_state

    spec = operator.spec
    source = spec.source
    queue = open_queue(spec)
    try:
        claimed = queue.claim(CONSUMER, max_events=source.max_events_per_run, stale_after_seconds=0)
        if not claimed and not queued_retries(store.dag_root):
            operator.log.info("No event waiting in the %s queue: the run is skipped", source.queue.backend)
            raise AirflowSkipException("no event waiting")
        tracer = operator.tracer()
        counts: Counter[str] = Counter()
        problems: list[tuple[str, str, str]] = []  # (row, outcome, reason): error report lines, not rows
        events = []
        for queued in claimed:
            if queued.attempts >= source.max_attempts:
                reason = (
                    f"dead-lettered after {queued.attempts} runs claimed it without finishing their load "
                    f"(max_attempts {source.max_attempts}); see those runs' logs, then re-queue it if wanted"
                )
                queue.dead_letter(queued, reason)
                counts["dead-lettered"] += 1
                problems.append((f"delivery {queued.delivery_id}", "dead-lettered", reason))
                continue
            try:
                events.append(parse_event(queued))
            except EventError as exc:
                counts["unreadable"] += 1
                problems.append((f"delivery {queued.delivery_id}", "rejected", f"event not understood: {exc.reason}"))
        with open_event_state(store.dag_root) as states:
            before = states.lookup(event.customer_id for event in events)
        result = apply_events(events, before)
        by_id = {event.event_id: event for event in events}
        arrived = {queued.delivery_id: queued.received_at.timestamp() for queued in claimed}
        for outcome in result.skipped:
            counts[outcome.outcome] += 1
            if tracer is not None:
                tracer.trace("extract", outcome.customer_id, f"{outcome.outcome}: {outcome.reason}")
        create_only = spec.destination.mode == "create_only"
        rows: list[dict[str, Any]] = []
        received: list[float] = []
        for customer_id, action in result.actions.items():
            applied = [by_id[event_id] for event_id in action.event_ids]
            if action.kind == "delete" and create_only:
                counts["ignored"] += len(applied)
                if tracer is not None:
                    tracer.trace("extract", customer_id, SKIP_IGNORED_DELETE)
                continue
            counts["applied"] += len(applied)
            received += [arrived[event.delivery_id] for event in applied if event.delivery_id in arrived]
            row = customer_row(source.fields, customer_id, action, applied[-1])
            if tracer is not None:
                tracer.extract(customer_id, row)
            rows.append(row)
        changed = {cid: state for cid, state in result.state.items() if before.get(cid) != state}
        if tracer is not None:
            tracer.finish()
    finally:
        _close(queue)
    urls: list[str] = []
    chunk_rows: list[int] = []
    for start in range(0, len(rows), operator.chunk_size):
        chunk = rows[start : start + operator.chunk_size]
        urls.append(store.write("extract", len(urls), chunk))
        chunk_rows.append(len(chunk))
    from airflow_provider_contactsync.sources.events.apply import state_to_json

    events_url = _write(
        store.path("extract", EVENTS_FILE),
        {
            "entry_ids": [queued.entry_id for queued in claimed],
            "received": received,
            "state": state_to_json(changed),
            "problems": problems,
        },
    )
    summary = {"claimed": len(claimed), **{name: counts.get(name, 0) for name in EVENT_COUNTS}}
    summary["customers"] = len(rows)
    skipped = {
        reason: count
        for reason, count in (
            (SKIP_DUPLICATE, counts["duplicate"]),
            (SKIP_STALE, counts["stale"]),
            (SKIP_IGNORED_DELETE, counts["ignored"]),
        )
        if count
    }
    operator.log.info(
        "Claimed %d event(s): %s; staged %d customer(s) to change",
        len(claimed),
        ", ".join(f"{count} {name}" for name, count in summary.items() if name not in ("claimed", "customers"))
        or "none",
        summary["customers"],
    )
    return {
        "chunks": urls,
        "chunk_rows": chunk_rows,
        "rows": len(rows),
        "skipped": skipped,
        "full_refresh": False,
        "full_read": False,
        "cursor_start": None,
        "cursor_end": None,
        "cursor_store": "queue",
        "events": summary,
        "events_file": events_url,
    }


def customer_row(fields: list[str], customer_id: str, action: Any, newest: Any) -> dict[str, Any]:
    """The staged row of one customer: the fields this run changes, None for the others.

    None leaves an attribute as it is in Brevo (unless ``destination.empty_attributes``), so an update
    that carries only ``changes`` touches only those attributes.
    """
    row: dict[str, Any] = dict.fromkeys(fields)
    for name, value in action.values.items():
        if name in row:
            row[name] = value
    row[CUSTOMER_ID_FIELD] = customer_id
    row[EVENT_TYPE_FIELD] = "deleted" if action.kind == "delete" else _KINDS[newest.kind]
    row[EVENT_TIME_FIELD] = newest.occurred_at.isoformat().replace("+00:00", "Z")
    return row


def settle_events(
    operator: Any, context: Any, store: ChunkStore, extracted: dict[str, Any], report_url: str
) -> dict[str, Any]:
    """After the load: store the run's state, acknowledge its events; the summary's events figures.

    State first, then the acknowledgement (see the module doc). Returns what the run summary adds:
    ``events`` (the counts), ``event latency p50 s`` / ``p95 s`` (webhook accepted -> settled in
    Brevo) and ``events waiting`` (the queue's depth afterwards).
    """
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_contactsync.sources.events.apply import state_from_json
    from airflow_provider_contactsync.sources.events.state_store import open_event_state

    staged = decode(ObjectStoragePath(extracted["events_file"]).read_bytes())
    if staged["problems"]:  # events that are no row: they go to the error report as they are
        from airflow_provider_contactsync.load.loader import LoadProblem
        from airflow_provider_contactsync.operators.contactsync import append_to_report

        lines = [LoadProblem(row, outcome, None, None, reason) for row, outcome, reason in staged["problems"]]
        append_to_report(report_url, lines, None, values=operator.spec.reports.mode)
    with open_event_state(store.dag_root) as states:
        states.save(state_from_json(staged["state"]))
    queue = open_queue(operator.spec)
    try:
        queue.ack(staged["entry_ids"])
        waiting = queue.depth()
    finally:
        _close(queue)
    added: dict[str, Any] = {"events": dict(extracted["events"])}
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    latencies = sorted(max(0.0, now - received) for received in staged["received"])
    if latencies:
        added["event latency p50 s"] = round(statistics.median(latencies), 3)
        added["event latency p95 s"] = round(_percentile(latencies, 0.95), 3)
    added["events waiting"] = waiting
    return added


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    index = max(0, min(len(ordered) - 1, int(round(share * len(ordered) + 0.5)) - 1))
    return ordered[index]


def _write(target: Any, payload: Any) -> str:
    data = encode(payload)
    if target.protocol == "file":
        write_private(target.path, data)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return str(target)


def _close(queue: Any) -> None:
    close = getattr(queue, "close", None)
    if close is not None:
        close()

"""Customer events of one run into one action per customer: the pure rules, no I/O.

Events are applied per customer in event-time order (``occurred_at``, ties broken by ``event_id``),
whatever order they arrive in, within a run and across runs. The rule is last-writer-wins *per
field*, with deletes as tombstones:

- an event writes each of its fields unless a newer event (applied now or in an earlier run) wrote
  that field: an older event never overwrites a newer value, but a late create still fills the fields
  the newer partial updates did not carry;
- a delete clears every field written before it; an event older than the customer's last applied
  delete is ``stale``;
- a delete that arrives after newer events clears only the fields written before it (sent as null);
- a delete followed by a newer create or update re-creates the customer from the newer events alone.

The result is what applying every distinct event once, in time order, gives (the property the tests
check), however the events are split into runs, ordered and redelivered.

State kept per customer (see :class:`CustomerState`): the newest applied event's key, the last
delete's key, and per field the key of the event that wrote it. That is bounded by the number of
fields, not of events: event ids are not kept forever. A redelivered event is recognised when its key
is still in the state (``duplicate``); one whose every field was since overwritten, or that is older
than a delete, is ``stale`` (the reason says it may have been applied before). Either way it changes
nothing, so a redelivery is never applied twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_contactsync.sources.events.shapes import CustomerEvent

Key = tuple[dt.datetime, str]
"""An event's place in event-time order: (occurred_at, event_id)."""


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What was applied for one customer, across runs.

    :ivar last: the key of the newest event applied.
    :ivar deleted: the key of the newest delete applied, if any.
    :ivar written: per field, the key of the event whose value is the field's current one (fields a
        delete cleared are absent).
    """

    last: Key
    deleted: Key | None = None
    written: Mapping[str, Key] = field(default_factory=dict, hash=False)

    @property
    def is_deleted(self) -> bool:
        """The newest event applied is a delete."""
        return self.deleted is not None and self.deleted == self.last


ApplyState = dict[str, CustomerState]
"""Customer id -> what was applied for it."""


@dataclass(frozen=True, slots=True)
class CustomerAction:
    """What a run does to one customer's contact.

    :ivar kind: ``upsert`` (create or update with ``values``) or ``delete``.
    :ivar values: for an upsert, the fields to send: new values, and None for a field a delete
        cleared (the attribute is emptied). Only fields whose value changed in this run are here.
    :ivar recreated: an upsert of a customer that was deleted (earlier, or in this run).
    :ivar event_ids: the events applied for this customer in this run, in event-time order.
    """

    customer_id: str
    kind: Literal["upsert", "delete"]
    values: Mapping[str, Any] = field(default_factory=dict, hash=False)
    recreated: bool = False
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """An event this run did not apply, and why.

    :ivar outcome: ``duplicate`` (this event was applied already) or ``stale`` (newer events decided
        everything it carries).
    """

    event_id: str
    delivery_id: str
    customer_id: str
    outcome: Literal["duplicate", "stale"]
    reason: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """:ivar actions: per customer id, the action (customers with nothing to do are absent).
    :ivar skipped: the events not applied, in event-time order.
    :ivar state: the new state to persist (the old one is not changed).
    """

    actions: dict[str, CustomerAction]
    skipped: list[EventOutcome]
    state: ApplyState


def apply_events(events: Iterable[CustomerEvent], state: Mapping[str, CustomerState]) -> ApplyResult:
    """Apply a run's events (any order, redeliveries included) on top of what earlier runs applied."""
    per_customer: dict[str, list[CustomerEvent]] = {}
    for event in events:
        per_customer.setdefault(event.customer_id, []).append(event)
    actions: dict[str, CustomerAction] = {}
    skipped: list[EventOutcome] = []
    new_state: ApplyState = dict(state)
    for customer_id, batch in per_customer.items():
        action, outcomes, after = _apply_customer(customer_id, sorted(batch, key=_key), state.get(customer_id))
        skipped.extend(outcomes)
        if after is not None:
            new_state[customer_id] = after
        if action is not None:
            actions[customer_id] = action
    skipped.sort(key=lambda o: (o.customer_id, o.event_id))
    return ApplyResult(actions=actions, skipped=skipped, state=new_state)


def _key(event: CustomerEvent) -> Key:
    return (event.occurred_at, event.event_id)


def _apply_customer(
    customer_id: str, batch: list[CustomerEvent], before: CustomerState | None
) -> tuple[CustomerAction | None, list[EventOutcome], CustomerState | None]:
    last = before.last if before else None
    deleted = before.deleted if before else None
    written: dict[str, Key] = dict(before.written) if before else {}
    was_deleted = before.is_deleted if before else False
    ends_deleted = was_deleted
    values: dict[str, Any] = {}  # what this run sends
    applied: list[str] = []
    seen_ids: set[str] = set()
    wrote_record = False
    outcomes: list[EventOutcome] = []

    def skip(event: CustomerEvent, outcome: Literal["duplicate", "stale"], reason: str) -> None:
        outcomes.append(EventOutcome(event.event_id, event.delivery_id, customer_id, outcome, reason))

    for event in batch:
        key = _key(event)
        if event.event_id in seen_ids:
            skip(event, "duplicate", f"event {event.event_id} is in this run more than once; applied once")
            continue
        seen_ids.add(event.event_id)
        if key == last or key == deleted or key in written.values():
            skip(event, "duplicate", f"event {event.event_id} was applied already")
            continue
        if deleted is not None and key < deleted:
            skip(
                event,
                "stale",
                f"{event.kind} at {_iso(event.occurred_at)} is older than the delete applied at "
                f"{_iso(deleted[0])} (event {deleted[1]}); already applied or superseded",
            )
            continue
        if event.kind == "deleted":
            deleted = key
            for name in [n for n, k in written.items() if k < key]:
                del written[name]
                values[name] = None
            if last is None or key > last:
                ends_deleted = True
        else:
            newest = last is None or key > last
            wrote = False
            for name, value in event.fields.items():
                if name not in written or written[name] < key:
                    written[name] = key
                    values[name] = value
                    wrote = True
            if not wrote and not newest:
                skip(
                    event,
                    "stale",
                    f"{event.kind} at {_iso(event.occurred_at)}: every field it carries was written by a newer "
                    f"event (newest applied at {_iso(last[0]) if last else '?'}); already applied or superseded",
                )
                continue
            if newest and ends_deleted:
                ends_deleted = False
                was_deleted = True  # recreated
            wrote_record = wrote_record or newest or wrote
        applied.append(event.event_id)
        if last is None or key > last:
            last = key

    if last is None:  # nothing applied and nothing known
        return None, outcomes, None
    after = CustomerState(last=last, deleted=deleted, written=written)
    if not applied:
        return None, outcomes, before
    if ends_deleted:
        if before is not None and before.is_deleted:
            return None, outcomes, after  # deleted again: nothing more to do
        return CustomerAction(customer_id, "delete", event_ids=tuple(applied)), outcomes, after
    if not values and not wrote_record:
        return None, outcomes, after
    action = CustomerAction(customer_id, "upsert", values=values, recreated=was_deleted, event_ids=tuple(applied))
    return action, outcomes, after


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- persisting the state --------------------------------------------------------------------------


def state_to_json(state: Mapping[str, CustomerState]) -> dict[str, Any]:
    """The state as JSON: ``{"version": 1, "customers": {id: {"last": [iso, event_id], "deleted":
    [iso, event_id] | null, "written": [[iso, event_id, [field, ...]], ...]}}}``; fields written by
    the same event share one entry, so a customer costs a few keys, not one per field."""
    customers: dict[str, Any] = {}
    for customer_id, entry in state.items():
        groups: dict[Key, list[str]] = {}
        for name, key in entry.written.items():
            groups.setdefault(key, []).append(name)
        customers[customer_id] = {
            "last": _key_json(entry.last),
            "deleted": _key_json(entry.deleted) if entry.deleted else None,
            "written": [[*_key_json(key), sorted(names)] for key, names in sorted(groups.items())],
        }
    return {"version": 1, "customers": customers}


def state_from_json(obj: Mapping[str, Any] | None) -> ApplyState:
    """Read what :func:`state_to_json` wrote (None or empty: nothing applied yet)."""
    if not obj:
        return {}
    if obj.get("version") != 1:
        raise ValueError(f"unknown events state version {obj.get('version')!r}")
    state: ApplyState = {}
    for customer_id, entry in obj.get("customers", {}).items():
        written: dict[str, Key] = {}
        for stamp, event_id, names in entry.get("written", []):
            for name in names:
                written[name] = _key_from(stamp, event_id)
        deleted = entry.get("deleted")
        state[customer_id] = CustomerState(
            last=_key_from(*entry["last"]),
            deleted=_key_from(*deleted) if deleted else None,
            written=written,
        )
    return state


def _key_json(key: Key) -> list[str]:
    return [key[0].isoformat(), key[1]]


def _key_from(stamp: str, event_id: str) -> Key:
    moment = dt.datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return (moment, event_id)

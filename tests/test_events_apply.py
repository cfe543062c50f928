"""Per-customer event semantics (issue 14): order, staleness, duplicates, changes, deletes, state."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_contactsync.sources.events.apply import (
    ApplyState,
    apply_events,
    state_from_json,
    state_to_json,
)
from airflow_provider_contactsync.sources.events.shapes import CustomerEvent

T0 = dt.datetime(2024, 1, 15, 10, 0, tzinfo=dt.timezone.utc)


def ev(
    event_id: str,
    minute: int,
    kind: str = "updated",
    changed: set[str] | None = None,
    customer: str = "c1",
    **fields: Any,
) -> CustomerEvent:
    return CustomerEvent(
        event_id=event_id,
        customer_id=customer,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=T0 + dt.timedelta(minutes=minute),
        fields={"id": customer, **fields},
        changed=frozenset(changed) if changed is not None else None,
        delivery_id=f"d-{event_id}",
    )


def run(events: list[CustomerEvent], state: ApplyState | None = None):
    result = apply_events(events, state or {})
    # the state survives JSON (it is persisted between runs)
    assert state_from_json(json.loads(json.dumps(state_to_json(result.state)))) == result.state
    return result


def test_create_then_update_with_changes_merges_in_one_upsert() -> None:
    result = run(
        [
            ev("e2", 5, changed={"phone"}, phone="+31612345678"),
            ev("e1", 0, "created", email="jane@example.com", firstName="Jane", phone=None),
        ]
    )
    action = result.actions["c1"]
    assert action.kind == "upsert"
    assert action.values == {"id": "c1", "email": "jane@example.com", "firstName": "Jane", "phone": "+31612345678"}
    assert action.event_ids == ("e1", "e2")
    assert not result.skipped


def test_out_of_order_in_a_batch_the_newest_value_wins() -> None:
    result = run([ev("e3", 3, firstName="C"), ev("e1", 1, "created", firstName="A"), ev("e2", 2, firstName="B")])
    assert result.actions["c1"].values["firstName"] == "C"
    assert result.actions["c1"].event_ids == ("e1", "e2", "e3")


def test_ties_in_time_are_broken_by_event_id() -> None:
    result = run([ev("b", 1, firstName="B"), ev("a", 1, firstName="A")])
    assert result.actions["c1"].values["firstName"] == "B"


def test_across_runs_only_the_changed_attributes_are_sent() -> None:
    first = run([ev("e1", 0, "created", email="jane@example.com", firstName="Jane")])
    second = run([ev("e2", 5, changed={"phone"}, phone="+31612345678")], first.state)
    assert second.actions["c1"].values == {"id": "c1", "phone": "+31612345678"}
    assert not second.actions["c1"].recreated


def test_a_late_event_never_overwrites_a_newer_one_across_runs() -> None:
    first = run([ev("e2", 10, firstName="New", email="new@x.com")])
    late = run([ev("e1", 5, firstName="Old", email="old@x.com")], first.state)
    assert late.actions == {}
    [skip] = late.skipped
    assert skip.outcome == "stale"
    assert skip.event_id == "e1" and skip.delivery_id == "d-e1"
    assert "written by a newer event" in skip.reason
    assert late.state == first.state


def test_a_late_create_fills_only_the_fields_newer_updates_did_not_carry() -> None:
    first = run([ev("e2", 10, changed={"phone"}, phone="+31600000002")])
    late = run([ev("e1", 5, "created", email="jane@example.com", phone="+31600000001")], first.state)
    assert late.actions["c1"].values == {"email": "jane@example.com"}
    assert not late.skipped


def test_duplicates_in_a_batch_and_across_runs_are_applied_once() -> None:
    first = run([ev("e1", 0, "created", firstName="A"), ev("e1", 0, "created", firstName="A")])
    assert [s.outcome for s in first.skipped] == ["duplicate"]
    assert "more than once" in first.skipped[0].reason
    again = run([ev("e1", 0, "created", firstName="A")], first.state)
    assert again.actions == {}
    assert [(s.outcome, s.reason) for s in again.skipped] == [("duplicate", "event e1 was applied already")]


def test_a_redelivery_of_a_superseded_event_is_stale_and_changes_nothing() -> None:
    first = run([ev("e1", 0, "created", firstName="A")])
    second = run([ev("e2", 1, firstName="B"), ev("e1", 0, "created", firstName="A")], first.state)
    assert second.actions["c1"].values == {"id": "c1", "firstName": "B"}
    assert [s.outcome for s in second.skipped] == ["duplicate"]  # e1 is still the state's last event
    third = run([ev("e1", 0, "created", firstName="A")], second.state)
    assert third.actions == {}
    assert [s.outcome for s in third.skipped] == ["stale"]  # its key is gone: every field is e2's now
    assert "already applied or superseded" in third.skipped[0].reason


def test_delete() -> None:
    first = run([ev("e1", 0, "created", email="a@x.com")])
    gone = run([ev("e2", 5, "deleted")], first.state)
    assert gone.actions["c1"].kind == "delete"
    assert gone.state["c1"].is_deleted
    # deleted again: nothing more to do; an older event is stale
    again = run([ev("e3", 6, "deleted"), ev("e0", 1, email="old@x.com")], gone.state)
    assert again.actions == {}
    [stale] = again.skipped
    assert stale.outcome == "stale" and "older than the delete" in stale.reason


def test_delete_then_a_newer_create_recreates_in_one_run() -> None:
    result = run(
        [
            ev("e3", 10, "created", email="back@x.com"),
            ev("e2", 5, "deleted"),
            ev("e1", 0, "created", email="a@x.com", firstName="Jane"),
        ]
    )
    action = result.actions["c1"]
    assert action.kind == "upsert" and action.recreated
    # the first name the delete removed is cleared, the new record is sent
    assert action.values == {"id": "c1", "email": "back@x.com", "firstName": None}


def test_delete_then_a_newer_create_recreates_across_runs() -> None:
    first = run([ev("e1", 0, "created", email="a@x.com", firstName="Jane"), ev("e2", 5, "deleted")])
    assert first.actions["c1"].kind == "delete"
    second = run([ev("e3", 10, "created", email="back@x.com")], first.state)
    assert second.actions["c1"].kind == "upsert" and second.actions["c1"].recreated
    assert second.actions["c1"].values == {"id": "c1", "email": "back@x.com"}


def test_a_late_delete_clears_only_what_was_written_before_it() -> None:
    first = run(
        [ev("e1", 0, "created", email="a@x.com", firstName="Jane"), ev("e3", 10, changed={"email"}, email="b@x.com")]
    )
    late = run([ev("e2", 5, "deleted")], first.state)
    action = late.actions["c1"]
    assert action.kind == "upsert" and not action.recreated
    assert action.values == {"firstName": None}
    # events older than that delete are now stale
    older = run([ev("e0", 1, firstName="Old")], late.state)
    assert older.actions == {} and older.skipped[0].outcome == "stale"


def test_customers_are_independent_and_state_is_kept_for_others() -> None:
    first = run([ev("a1", 0, "created", customer="a", email="a@x.com"), ev("b1", 0, "created", customer="b")])
    second = run([ev("b2", 1, "deleted", customer="b")], first.state)
    assert set(second.actions) == {"b"}
    assert second.state["a"] == first.state["a"]


def test_state_is_small_and_the_input_state_is_not_changed() -> None:
    events = [ev(f"e{i}", i, firstName=f"N{i}", email="a@x.com") for i in range(200)]
    first = run(events)
    encoded = state_to_json(first.state)
    assert len(json.dumps(encoded)) < 300  # one key for all fields, not 200 event ids
    before = dict(first.state["c1"].written)
    run([ev("e999", 999, firstName="Z")], first.state)
    assert dict(first.state["c1"].written) == before
    assert state_from_json(None) == {}


# -- the property: any split into runs, any order, any redelivery == each distinct event once in order


def _model(events: list[CustomerEvent]) -> dict[str, dict[str, Any]]:
    """Independent model: apply each distinct event once, in (time, id) order; deletes forget the customer."""
    distinct = {(e.customer_id, e.event_id): e for e in events}.values()
    contacts: dict[str, dict[str, Any] | None] = {}
    for event in sorted(distinct, key=lambda e: (e.occurred_at, e.event_id)):
        if event.kind == "deleted":
            contacts[event.customer_id] = None
        else:
            contacts[event.customer_id] = {**(contacts.get(event.customer_id) or {}), **event.fields}
    return {c: _present(v) for c, v in contacts.items() if v is not None}


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


FIELDS = ["email", "firstName", "phone"]
_event = st.builds(
    lambda customer, minute, kind, fields, partial: (customer, minute, kind, fields, partial),
    st.sampled_from(["c1", "c2"]),
    st.integers(0, 6),  # few distinct times: ties happen
    st.sampled_from(["created", "updated", "updated", "deleted"]),
    st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.none(), st.integers(0, 3)), max_size=3),
    st.booleans(),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[CustomerEvent], list[list[CustomerEvent]]]:
    specs = draw(st.lists(_event, min_size=1, max_size=14))
    events = []
    for n, (customer, minute, kind, fields, partial) in enumerate(specs):
        if kind == "deleted":
            fields = {}
        changed = set(fields) if (kind == "updated" and partial) else None
        events.append(ev(f"e{n:02d}", minute, kind, changed, customer, **fields))
    # deliveries: every event at least once, some again, shuffled, cut into runs
    redelivered = draw(st.lists(st.sampled_from(events), max_size=6))
    deliveries = draw(st.permutations(events + redelivered))
    cuts = sorted(draw(st.lists(st.integers(0, len(deliveries)), max_size=4)))
    runs, start = [], 0
    for cut in [*cuts, len(deliveries)]:
        runs.append(list(deliveries[start:cut]))
        start = cut
    return events, runs


@settings(max_examples=400, deadline=None)
@given(histories())
def test_any_runs_order_and_redeliveries_give_the_in_order_result(history) -> None:
    events, runs = history
    brevo: dict[str, dict[str, Any]] = {}  # what the actions would leave in Brevo
    state: ApplyState = {}
    applied: list[str] = []
    for batch in runs:
        result = run(batch, state)
        for customer_id, action in result.actions.items():
            if action.kind == "delete":
                brevo.pop(customer_id, None)
            else:
                brevo[customer_id] = _present({**brevo.get(customer_id, {}), **action.values})
            applied.extend(action.event_ids)
        for outcome in result.skipped:
            assert outcome.outcome in {"duplicate", "stale"} and outcome.reason
        state = result.state
    assert brevo == _model(events)
    assert len(applied) == len(set(applied))  # no event applied twice

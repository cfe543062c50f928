"""Import bodies: contacts already shaped as import items go out exactly as ``to_import_item`` shapes them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_provider_contactsync.hooks._brevo_import import _as_import_item, iter_import_bodies, to_import_item

values = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8))
attributes = st.dictionaries(st.sampled_from(["FNAME", "SMS", "EXT_ID", "AGE", "sms"]), values, max_size=4)
contacts = st.one_of(
    st.fixed_dictionaries({"email": st.one_of(st.none(), st.text(max_size=12)), "attributes": attributes}),
    st.fixed_dictionaries(
        {"email": st.text(min_size=1, max_size=12), "attributes": attributes},
        optional={"sms": st.text(max_size=8), "ext_id": st.one_of(st.none(), st.text(max_size=4))},
    ),
)


def shaped(contact: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return to_import_item(contact, 0)
    except ValueError as err:
        return str(err)


@given(contacts)
def test_an_item_is_sent_as_to_import_item_makes_it(contact: dict[str, Any]) -> None:
    try:
        fast: dict[str, Any] | str = dict(_as_import_item(contact, 0))
    except ValueError as err:
        fast = str(err)
    assert fast == shaped(contact)


@given(st.lists(contacts, min_size=1, max_size=20))
def test_bodies_hold_the_shaped_items(batch: list[dict[str, Any]]) -> None:
    expected = [shaped(c) for c in batch]
    assume(not any(isinstance(e, str) for e in expected))  # one without an identifier: refused (test_brevo_hook)
    bodies = iter_import_bodies(batch, {"listIds": [1]})
    sent = [item for body in bodies for item in json.loads(body.content)["jsonBody"]]
    assert sent == json.loads(json.dumps(expected))


def test_an_item_is_not_copied() -> None:
    item = {"email": "a@example.com", "attributes": {"FNAME": "A"}}
    assert _as_import_item(item, 0) is item
    moved = {"email": "a@example.com", "attributes": {}, "sms": "+33600000000"}
    assert _as_import_item(moved, 0) == {"email": "a@example.com", "attributes": {"SMS": "+33600000000"}}

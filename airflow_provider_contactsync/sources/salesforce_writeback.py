"""Brevo -> Salesforce for linked contacts: the seed's rules, as pure functions (no I/O).

A contact changed in Brevo that came from Salesforce (its EXT_ID is a Salesforce Id) is written
back to the fields its attributes are mapped from, following the rules of Brevo's own Salesforce
integration, each one a per-contact outcome with its reason (never a crash):

- dates reach Salesforce only as ``YYYY-MM-DD``;
- a lead's first or last name over 40 characters is not transferred (and is reported);
- phone numbers need 6 to 16 digits;
- a mapped last name cannot be emptied;
- boolean and category (picklist) fields are not synced, nor formula fields;
- contacts created in Brevo (no Salesforce Id) are never pushed;
- a deletion is not propagated when Salesforce refuses it (a Contact linked to a Case:
  ``DELETE_FAILED``; an already deleted record: ``ENTITY_IS_DELETED``).

Conflicts: the most recent change wins by timestamps (Brevo's ``modifiedAt`` against Salesforce's
``SystemModstamp``); a change contactsync itself wrote is never written back (no ping-pong): the
sync remembers the digest of what it last delivered either way, and a Brevo value equal to it is
contactsync's own echo.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

LEAD_NAME_MAX = 40
PHONE_DIGITS = (6, 16)
NOT_SYNCED_TYPES = {"boolean": "boolean", "picklist": "category", "multipicklist": "category"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_LINKED_PREFIXES = {"Contact": "003", "Lead": "00Q"}


@dataclass(frozen=True)
class FieldRefusal:
    """One attribute not written back, and why (a line of the error report)."""

    attribute: str
    field: str
    value: Any
    reason: str


@dataclass
class WritebackPlan:
    """What to write to one Salesforce record.

    :ivar outcome: ``update`` (``values`` to write), ``skipped`` (nothing to write: the reason says why)
        or ``refused`` (every changed attribute was refused: see ``refusals``).
    """

    salesforce_id: str | None
    outcome: Literal["update", "skipped", "refused"]
    values: dict[str, Any] = field(default_factory=dict)
    refusals: list[FieldRefusal] = field(default_factory=list)
    reason: str = ""


def linked_id(obj: str, ext_id: Any) -> str | None:
    """The Salesforce Id of a Brevo contact's EXT_ID when it is a record of ``obj``, else None."""
    if not isinstance(ext_id, str) or not _SALESFORCE_ID.match(ext_id):
        return None
    return ext_id if ext_id.startswith(_LINKED_PREFIXES[obj]) else None


def check_value(obj: str, name: str, describe: Mapping[str, Any], value: Any) -> tuple[Any, str | None]:
    """The value to write to field ``name``, or the reason it is not written (the seed's rules)."""
    kind = describe.get("type")
    if describe.get("calculated"):
        return None, "formula fields cannot be matched"
    if kind in NOT_SYNCED_TYPES:
        return None, f"{NOT_SYNCED_TYPES[kind]} fields are not synced to Salesforce"
    if not describe.get("updateable", True):
        return None, f"{name} cannot be updated in Salesforce"
    if value in (None, ""):
        if name == "LastName":
            return None, "a mapped last name cannot be emptied"
        return None, None  # emptied: written as null
    if kind == "date":
        text = value.isoformat() if isinstance(value, dt.date) else str(value)
        if not _DATE.match(text):
            return None, f"dates must be YYYY-MM-DD to reach Salesforce (got {text!r})"
        return text, None
    if kind == "phone" or name in ("Phone", "MobilePhone"):
        digits = sum(ch.isdigit() for ch in str(value))
        if not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
            return None, f"phone numbers must have 6 to 16 digits ({digits} in {value!r})"
    if obj == "Lead" and name in ("FirstName", "LastName") and len(str(value)) > LEAD_NAME_MAX:
        return None, f"a lead's name over {LEAD_NAME_MAX} characters is not transferred ({len(str(value))})"
    length = describe.get("length")
    if isinstance(length, int) and length and isinstance(value, str) and len(value) > length:
        return None, f"{name} holds at most {length} characters in Salesforce ({len(value)})"
    return value, None


def plan_writeback(
    obj: str,
    contact: Mapping[str, Any],
    changed: Mapping[str, Any],
    reverse_mapping: Mapping[str, str],
    describe: Mapping[str, Mapping[str, Any]],
    *,
    salesforce_modstamp: dt.datetime | None,
    brevo_modified_at: dt.datetime | None,
    echo: bool = False,
) -> WritebackPlan:
    """What one Brevo contact's changes write to its Salesforce record.

    :param contact: the Brevo contact (``attributes`` with ``EXT_ID``).
    :param changed: attribute -> new value, the attributes changed in Brevo.
    :param reverse_mapping: Brevo attribute -> Salesforce field (the definition's mapping reversed).
    :param describe: the object's fields, from ``describe``.
    :param salesforce_modstamp: the record's ``SystemModstamp`` (None: not known).
    :param brevo_modified_at: the contact's ``modifiedAt``.
    :param echo: the Brevo values are what contactsync itself last delivered (no ping-pong).
    """
    attributes = contact.get("attributes") or {}
    record = linked_id(obj, attributes.get("EXT_ID"))
    if record is None:
        return WritebackPlan(None, "skipped", reason="created in Brevo (no Salesforce Id): never pushed")
    if echo:
        return WritebackPlan(record, "skipped", reason="contactsync's own change: not written back")
    if salesforce_modstamp is not None and brevo_modified_at is not None and salesforce_modstamp >= brevo_modified_at:
        return WritebackPlan(record, "skipped", reason="changed in Salesforce since: the most recent change wins")
    values: dict[str, Any] = {}
    refusals: list[FieldRefusal] = []
    for attribute, value in changed.items():
        name = reverse_mapping.get(attribute)
        if name is None or attribute == "EXT_ID":
            continue
        written, reason = check_value(obj, name, describe.get(name, {}), value)
        if reason is not None:
            refusals.append(FieldRefusal(attribute, name, value, reason))
        else:
            values[name] = written
    if values:
        return WritebackPlan(record, "update", values, refusals)
    if refusals:
        return WritebackPlan(record, "refused", refusals=refusals, reason=refusals[0].reason)
    return WritebackPlan(record, "skipped", reason="no mapped attribute changed")


DELETE_NOT_PROPAGATED = {
    "DELETE_FAILED": "not deleted in Salesforce: the record is linked to a Case (deletion not propagated)",
    "ENTITY_IS_DELETED": "already deleted in Salesforce",
}


def delete_outcome(error_code: str | None, message: str = "") -> tuple[str, str]:
    """(outcome, reason) of deleting a record in Salesforce from its answer's error code (None: deleted)."""
    if error_code is None:
        return "deleted", ""
    reason = DELETE_NOT_PROPAGATED.get(error_code)
    if reason is not None:
        return "skipped", reason
    return "refused", f"Salesforce refused the delete: {error_code}: {message}".rstrip(": ")

"""Contact rules shared by POST/PUT/DELETE /contacts and /contacts/batch.

Identifiers (email, ext_id, SMS) are unique across contacts; a write that would give one of them to
a second contact is a ``duplicate_parameter`` error, never a merge (Brevo's rule since 2020).
Attribute values that do not fit their type are dropped, as Brevo does. Every write sets
``modified_at``; one that turns ``emailBlacklisted`` on records an ``adminUnsubscription`` event
(kept when the contact is subscribed again), as ``GET /contacts/{identifier}`` shows them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .store import add_unsubscriptions, list_exists, load_attributes, now_ms
from .validation import DROP, PHONE_ATTRIBUTES, coerce_value, db_int, digits, normalize_email, normalize_phone

UNSET: Any = object()
ERASE: Any = object()

IDENTIFIER_NAMES = {"email": "email", "ext_id": "ext_id", "sms": "SMS"}


@dataclass
class Draft:
    """A parsed contact write: only the fields the request set."""

    email: Any = UNSET
    ext_id: Any = UNSET
    sms: Any = UNSET
    attributes: dict[str, Any] = field(default_factory=dict)
    email_blacklisted: Any = UNSET
    sms_blacklisted: Any = UNSET
    list_ids: list[int] = field(default_factory=list)
    unlink_list_ids: list[int] = field(default_factory=list)

    def identifiers(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("email", self.email), ("ext_id", self.ext_id), ("sms", self.sms))
            if v is not UNSET and v is not ERASE and v is not None
        }


def _bool(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        return UNSET
    if not isinstance(body[key], bool):
        raise errors.invalid(f"{key} should be boolean")
    return body[key]


def _int_list(body: dict[str, Any], key: str) -> list[int]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise errors.invalid(f"{key} should be an array of integers")
    return value


def parse_attributes(
    raw: Any, attrs: dict[str, dict[str, Any]], draft: Draft, *, strict: bool, erase_empty: bool = True
) -> None:
    """Fill ``draft`` from an ``attributes`` object; ``strict`` raises on bad identifiers (API) instead of
    dropping them (import)."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise errors.invalid("attributes should be an object")
    for key, value in raw.items():
        name = str(key).upper()
        empty = value is None or value == ""
        if name == "EMAIL":
            if empty:
                continue
            email = normalize_email(value)
            if email is None:
                if strict:
                    raise errors.invalid("Invalid email address")
                continue
            draft.email = email
        elif name in PHONE_ATTRIBUTES:
            if empty:
                if erase_empty and name == "SMS":
                    draft.sms = ERASE
                elif erase_empty and name in attrs:
                    draft.attributes[name] = ERASE
                continue
            phone = normalize_phone(value)
            if phone is None:
                if strict:
                    raise errors.invalid(f"Invalid phone number in {name}")
                continue
            if name == "SMS":
                draft.sms = phone
            elif name in attrs:
                draft.attributes[name] = phone
        elif name == "EXT_ID":
            if empty:
                if erase_empty:
                    draft.ext_id = ERASE
                continue
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                draft.ext_id = str(value)
        else:
            attr = attrs.get(name)
            if attr is None or attr["category"] in ("calculated", "global"):
                continue  # unknown attributes are ignored, as Brevo does
            if empty:
                if erase_empty:
                    draft.attributes[name] = ERASE
                continue
            coerced = coerce_value(attr, value)
            if coerced is not DROP:
                draft.attributes[name] = coerced


def parse_body(body: dict[str, Any], attrs: dict[str, dict[str, Any]], *, for_update: bool) -> Draft:
    """A Draft from a POST /contacts or PUT /contacts/{id} body (400 on malformed fields)."""
    draft = Draft()
    if "email" in body and body["email"] is not None:
        if not isinstance(body["email"], str):
            raise errors.invalid("email should be a string")
        email = normalize_email(body["email"])
        if email is None:
            raise errors.invalid("Invalid email address")
        draft.email = email
    if "ext_id" in body and body["ext_id"] is not None:
        if not isinstance(body["ext_id"], (str, int)) or isinstance(body["ext_id"], bool):
            raise errors.invalid("ext_id should be a string")
        draft.ext_id = str(body["ext_id"])
    parse_attributes(body.get("attributes"), attrs, draft, strict=True)
    draft.email_blacklisted = _bool(body, "emailBlacklisted")
    draft.sms_blacklisted = _bool(body, "smsBlacklisted")
    draft.list_ids = _int_list(body, "listIds")
    if for_update:
        draft.unlink_list_ids = _int_list(body, "unlinkListIds")
    return draft


def find(db: sqlite3.Connection, column: str, value: Any) -> sqlite3.Row | None:
    if column not in ("id", "email", "ext_id", "sms"):
        raise ValueError(column)
    if isinstance(value, int):
        value = db_int(value)  # beyond int64: no such contact
    return db.execute(f"SELECT * FROM contacts WHERE {column}=?", (value,)).fetchone()


def resolve_identifier(identifier: str, identifier_type: str | None) -> tuple[str, Any]:
    """(column, value) for ``/contacts/{identifier}``; without identifierType, detect id vs email vs phone."""
    if identifier_type is None:
        if digits(identifier) is not None:
            identifier_type = "contact_id"
        elif "@" in identifier:
            identifier_type = "email_id"
        elif identifier.startswith("+"):
            identifier_type = "phone_id"
        else:
            raise errors.invalid("Invalid identifier: pass identifierType for ext_id and phone identifiers")
    if identifier_type == "contact_id":
        contact_id = digits(identifier)
        if contact_id is None:
            raise errors.invalid("identifier should be a contact id for identifierType contact_id")
        return "id", contact_id
    if identifier_type == "email_id":
        return "email", identifier.strip().lower()
    if identifier_type == "ext_id":
        return "ext_id", identifier
    if identifier_type in ("phone_id", "whatsapp_id", "landline_number_id"):
        phone = normalize_phone(identifier)
        if phone is None:
            raise errors.invalid("Invalid phone number")
        if identifier_type != "phone_id":
            return "attr:" + ("WHATSAPP" if identifier_type == "whatsapp_id" else "LANDLINE_NUMBER"), phone
        return "sms", phone
    raise errors.invalid(f"Invalid identifierType {identifier_type}")


def lookup(db: sqlite3.Connection, identifier: str, identifier_type: str | None) -> sqlite3.Row:
    column, value = resolve_identifier(identifier, identifier_type)
    if column.startswith("attr:"):
        row = db.execute(
            "SELECT * FROM contacts WHERE json_extract(attributes, ?) = ?", ("$." + column[5:], value)
        ).fetchone()
    else:
        row = find(db, column, value)
    if row is None:
        raise errors.not_found("Contact does not exist")
    return row


def _check_lists(db: sqlite3.Connection, list_ids: list[int]) -> None:
    missing = [i for i in list_ids if not list_exists(db, i)]
    if missing:
        raise errors.invalid(f"List ID(s) not found: {','.join(map(str, missing))}")


def _check_unique(db: sqlite3.Connection, draft: Draft, contact_id: int | None, verb: str) -> None:
    taken = []
    for column, value in draft.identifiers().items():
        row = find(db, column, value)
        if row is not None and row["id"] != contact_id:
            taken.append(IDENTIFIER_NAMES[column])
    if taken:
        raise errors.duplicate(
            f"Unable to {verb} contact, {' and '.join(taken)} is already associated with another Contact",
            taken,
        )


def insert(db: sqlite3.Connection, draft: Draft) -> int:
    """Create a contact; 400 when an identifier belongs to another contact."""
    if not draft.identifiers():
        raise errors.missing("Contact identifier is missing: pass email, ext_id or attributes.SMS")
    _check_unique(db, draft, None, "create")
    _check_lists(db, draft.list_ids)
    values = {k: v for k, v in draft.attributes.items() if v is not ERASE}
    stamp = now_ms()
    cur = db.execute(
        "INSERT INTO contacts(email, ext_id, sms, email_blacklisted, sms_blacklisted, attributes, created_at,"
        " modified_at) VALUES (?,?,?,?,?,?,?,?)",
        (
            draft.identifiers().get("email"),
            draft.identifiers().get("ext_id"),
            draft.identifiers().get("sms"),
            int(draft.email_blacklisted is True),
            int(draft.sms_blacklisted is True),
            json.dumps(values),
            stamp,
            stamp,
        ),
    )
    contact_id = int(cur.lastrowid or 0)
    db.executemany("INSERT OR IGNORE INTO list_members VALUES (?,?)", [(i, contact_id) for i in draft.list_ids])
    if draft.email_blacklisted is True:
        add_unsubscriptions(db, [contact_id], stamp)
    return contact_id


def update(db: sqlite3.Connection, row: sqlite3.Row, draft: Draft) -> None:
    """Apply ``draft`` to an existing contact; 400 when an identifier belongs to another contact."""
    _check_unique(db, draft, row["id"], "update")
    _check_lists(db, draft.list_ids + draft.unlink_list_ids)
    values = json.loads(row["attributes"])
    for name, value in draft.attributes.items():
        if value is ERASE:
            values.pop(name, None)
        else:
            values[name] = value

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else None if new is ERASE else new

    email = pick(draft.email, row["email"])
    ext_id = pick(draft.ext_id, row["ext_id"])
    sms = pick(draft.sms, row["sms"])
    if not (email or ext_id or sms):
        raise errors.invalid("A contact needs at least one identifier (email, ext_id or SMS)")
    was_blacklisted = bool(row["email_blacklisted"])
    email_blacklisted = bool(pick(draft.email_blacklisted, was_blacklisted))
    stamp = now_ms()
    db.execute(
        "UPDATE contacts SET email=?, ext_id=?, sms=?, email_blacklisted=?, sms_blacklisted=?, attributes=?,"
        " modified_at=? WHERE id=?",
        (
            email,
            ext_id,
            sms,
            int(email_blacklisted),
            int(pick(draft.sms_blacklisted, bool(row["sms_blacklisted"]))),
            json.dumps(values),
            stamp,
            row["id"],
        ),
    )
    if email_blacklisted and not was_blacklisted:
        add_unsubscriptions(db, [row["id"]], stamp)
    db.executemany("INSERT OR IGNORE INTO list_members VALUES (?,?)", [(i, row["id"]) for i in draft.list_ids])
    db.executemany(
        "DELETE FROM list_members WHERE list_id=? AND contact_id=?",
        [(i, row["id"]) for i in draft.unlink_list_ids],
    )


def create_contact(db: sqlite3.Connection, body: dict[str, Any]) -> int | None:
    """POST /contacts: the new id, or ``None`` when an existing contact was updated (updateEnabled)."""
    attrs = load_attributes(db)
    draft = parse_body(body, attrs, for_update=False)
    update_enabled = body.get("updateEnabled", False)
    if not isinstance(update_enabled, bool):
        raise errors.invalid("updateEnabled should be boolean")
    ids = draft.identifiers()
    if not ids:
        raise errors.missing("Contact identifier is missing: pass email, ext_id or attributes.SMS")
    matches = {col: row for col, value in ids.items() if (row := find(db, col, value)) is not None}
    if not matches:
        return insert(db, draft)
    if not update_enabled:
        taken = [IDENTIFIER_NAMES[c] for c in matches]
        raise errors.duplicate(
            f"Unable to create contact, {' and '.join(taken)} is already associated with another Contact",
            taken,
        )
    target = next(iter(matches.values()))
    update(db, target, draft)
    return None


def update_batch(db: sqlite3.Connection, body: dict[str, Any], max_contacts: int) -> None:
    """POST /contacts/batch: all or nothing (the caller's transaction rolls back on any error).

    Each item names its contact by ``id``, else ``email``, else ``sms`` (the spec asks for one of
    them; ``ext_id`` in an item sets the contact's ext id, it does not find the contact). Unknown
    contacts are one 404 naming their 0-based indexes; the rest of an item is a PUT body.
    """
    items = body.get("contacts")
    if items is None:
        raise errors.missing("contacts is missing")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise errors.invalid("contacts should be an array of objects")
    if not items:
        raise errors.invalid("contacts should not be empty")
    if len(items) > max_contacts:
        raise errors.out_of_range(f"contacts: at most {max_contacts} contacts per batch (got {len(items)})")
    attrs = load_attributes(db)
    rows: list[sqlite3.Row | None] = []
    unknown: list[int] = []
    for index, item in enumerate(items):
        if item.get("id") is not None:
            if not isinstance(item["id"], int) or isinstance(item["id"], bool):
                raise errors.invalid(f"contacts[{index}].id should be an integer")
            row = find(db, "id", item["id"])
        elif item.get("email") is not None:
            if not isinstance(item["email"], str):
                raise errors.invalid(f"contacts[{index}].email should be a string")
            row = find(db, "email", normalize_email(item["email"]) or item["email"].strip().lower())
        elif item.get("sms") is not None:
            row = find(db, "sms", normalize_phone(item["sms"]))
        else:
            raise errors.missing(f"contacts[{index}]: pass one of email, id or sms")
        rows.append(row)
        if row is None:
            unknown.append(index)
    if unknown:
        raise errors.not_found(f"No contact found for indexes {','.join(map(str, unknown))}")
    for item, row in zip(items, rows, strict=True):
        assert row is not None
        draft = parse_body({k: v for k, v in item.items() if k not in ("email", "id", "sms")}, attrs, for_update=True)
        update(db, db.execute("SELECT * FROM contacts WHERE id=?", (row["id"],)).fetchone(), draft)


def unsubscribe_by_link(db: sqlite3.Connection, row: sqlite3.Row, campaign_id: int, event_time: int, ip: str) -> None:
    """What a click on a campaign's unsubscribe link does: the contact is blacklisted for emails and
    a ``userUnsubscription`` event is recorded (even when it was blacklisted already)."""
    db.execute("UPDATE contacts SET email_blacklisted=1, modified_at=? WHERE id=?", (now_ms(), row["id"]))
    add_unsubscriptions(db, [row["id"]], event_time, campaign_id=campaign_id, ip=ip)


def unsubscribe_from_list(db: sqlite3.Connection, list_id: Any, body: Any) -> dict[str, Any]:
    """What Brevo's subscription page does when a contact unsubscribes from one list: the contact
    leaves the list (``modified_at`` moves) and the unsubscription is recorded (``unsubscribedPerList``
    exports it until the contact joins the list again); the contact stays subscribed to emails.

    :param body: ``{"emails": [...]}``, ``{"ids": [...]}`` or ``{"extIds": [...]}``.
    :returns: ``{"contacts": {"success": [...], "failure": [...]}}``: failures are unknown contacts
        and contacts not in the list.
    """
    if not isinstance(body, dict):
        raise errors.invalid("the body should be a JSON object")
    given = [k for k in ("emails", "ids", "extIds") if body.get(k) is not None]
    unknown = sorted(set(body) - {"emails", "ids", "extIds"})
    if unknown:
        raise errors.invalid(f"unknown field(s): {', '.join(map(str, unknown))}")
    if len(given) != 1:
        raise errors.missing("Pass one of emails, ids or extIds")
    key = given[0]
    values = body[key]
    if not isinstance(values, list) or not values:
        raise errors.invalid(f"{key} should be a non-empty array")
    if key == "ids" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise errors.invalid("ids should be an array of integers")
    if key != "ids" and not all(isinstance(v, str) for v in values):
        raise errors.invalid(f"{key} should be an array of strings")
    if not isinstance(list_id, int) or not list_exists(db, list_id):
        raise errors.not_found("List ID does not exist")
    column = {"emails": "email", "ids": "id", "extIds": "ext_id"}[key]
    stamp = now_ms()
    success, failure = [], []
    for value in values:
        row = find(db, column, (normalize_email(value) or value.lower()) if key == "emails" else value)
        left = (
            row is not None
            and db.execute("DELETE FROM list_members WHERE list_id=? AND contact_id=?", (list_id, row["id"])).rowcount
        )
        if not left:
            failure.append(value)
            continue
        db.execute("UPDATE contacts SET modified_at=? WHERE id=?", (stamp, row["id"]))
        db.execute("INSERT OR REPLACE INTO list_unsubscriptions VALUES (?,?,?)", (list_id, row["id"], stamp))
        success.append(value)
    return {"contacts": {"success": success, "failure": failure}}

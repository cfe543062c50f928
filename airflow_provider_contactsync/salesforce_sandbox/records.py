"""Records: validation of written values with Salesforce's error codes, the DML, and rendering.

Checks run in Salesforce's order: a field the object does not have (``INVALID_FIELD``), then fields
the caller may not write (``INVALID_FIELD_FOR_INSERT_UPDATE``, e.g. ``Name`` or a formula field), then
each value's JSON type (``JSON_PARSER_ERROR``), then values (``STRING_TOO_LONG``,
``INVALID_EMAIL_ADDRESS``, ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``, ``MALFORMED_ID``,
``NUMBER_OUTSIDE_VALID_RANGE``) and required fields (``REQUIRED_FIELD_MISSING``), reported together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from . import errors
from .errors import ApiError, Problem
from .schema import SObject, make_id, normalize_id
from .store import CASE_PREFIX, USER_ID, next_numbers
from .values import from_json, parse_datetime, to_json

COMPUTED = ("Name", "Full_Name_Formula__c")
"""Fields of person objects the server derives from FirstName and LastName on every write."""
SEED_ONLY = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
"""System fields a test may set through :meth:`SalesforceSandbox.seed` (never through the API)."""


def prepare(sobject: SObject, data: Any, mode: str) -> dict[str, Any]:
    """Validated stored values of a create (``mode="create"``), update or seed body.

    Raises :class:`~.errors.ApiError` with every problem found, as Salesforce answers them.
    """
    if not isinstance(data, Mapping):
        raise errors.json_parser("Cannot deserialize instance of the sObject from a value that is not a JSON object")
    fields = []
    for name, value in data.items():
        if name == "attributes":
            continue
        f = sobject.field(name)
        if f is None:
            raise errors.fail(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject.name}")
        fields.append((f, value))
    if mode == "seed":
        refused = [f.name for f, _ in fields if f.calculated or (sobject.person and f.name == "Name")]
    else:
        refused = [f.name for f, _ in fields if not (f.createable if mode == "create" else f.updateable)]
    if refused:
        raise errors.fail(
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(refused)}. Please check the security settings of this field "
            "and verify that it is read/write for your profile or permission set.",
            refused,
        )
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for f, value in fields:
        if mode == "seed" and f.name in SEED_ONLY:
            values[f.name] = _seed_system(sobject, f.name, value)
            continue
        stored, problem = from_json(f, value)
        if problem:
            problems.append(problem)
        values[f.name] = stored
    missing = []
    for f in sobject.fields:
        if f.nillable or not f.createable or f.name in SEED_ONLY:
            continue
        if f.name == "OwnerId":
            if values.get("OwnerId", "") is None:
                missing.append(f.name)
            continue
        given = f.name in values
        if given and values[f.name] is None and f.type == "boolean":
            values[f.name] = 0  # a null checkbox is saved unchecked
        elif mode != "update" and not given and f.default is not None:
            values[f.name] = int(f.default) if f.type == "boolean" else f.default
        elif (given and values[f.name] is None) or (mode != "update" and not given):
            if not any(p.fields == [f.name] for p in problems):
                missing.append(f.name)
    if missing:
        problems.append(
            Problem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        )
    if problems:
        raise ApiError(400, problems)
    return values


def _seed_system(sobject: SObject, name: str, value: Any) -> Any:
    if name == "IsDeleted":
        if not isinstance(value, bool):
            raise errors.json_parser(f"IsDeleted should be a boolean, not {value!r}")
        return int(value)
    if name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        seconds = parse_datetime(value)
        if seconds is None:
            raise errors.json_parser(f"{name} should be an ISO date-time or an aware datetime, not {value!r}")
        return seconds
    normalized = normalize_id(value) if isinstance(value, str) else None
    wanted = sobject.key_prefix if name == "Id" else "005"
    if normalized is None or normalized[:3] != wanted:
        raise errors.fail(400, "MALFORMED_ID", f"{name}: id value of incorrect type: {value}", [name])
    return normalized


def derive(sobject: SObject, record: Mapping[str, Any]) -> dict[str, Any]:
    """The computed fields of a record from its other values (Name; the Full_Name_Formula__c formula)."""
    if not sobject.person:
        return {}
    first, last = record.get("FirstName"), record.get("LastName")
    return {
        "Name": " ".join(p for p in (first, last) if p) or None,
        "Full_Name_Formula__c": (last or "") + (f", {first}" if first else "") or None,
    }


def _check_references(db: sqlite3.Connection, sobject: SObject, values: Mapping[str, Any]) -> None:
    account_id = values.get("AccountId")
    if sobject.name == "Contact" and account_id is not None:
        row = db.execute('SELECT "IsDeleted" FROM "sobject_Account" WHERE "Id"=?', (account_id,)).fetchone()
        if row is None or row[0]:
            raise errors.fail(
                400,
                "INVALID_CROSS_REFERENCE_KEY",
                "Account ID: id value of incorrect type: " + account_id,
                ["AccountId"],
            )
    owner = values.get("OwnerId")
    if owner is not None and owner != USER_ID:
        raise errors.fail(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"])


def insert(db: sqlite3.Connection, sobject: SObject, values: Mapping[str, Any], now: int) -> str:
    """Insert one prepared record (system fields default to now and the sandbox user); its Id."""
    return insert_many(db, sobject, [values], now)[0]


def insert_many(db: sqlite3.Connection, sobject: SObject, rows: list[Mapping[str, Any]], now: int) -> list[str]:
    ids: list[str] = []
    prepared = []
    first = next_numbers(db, sobject.key_prefix, sum(1 for r in rows if "Id" not in r))
    taken = 0
    for values in rows:
        _check_references(db, sobject, values)
        record = dict(values)
        if "Id" not in record:
            record["Id"] = make_id(sobject.key_prefix, first + taken)
            taken += 1
        created = record.get("CreatedDate", record.get("LastModifiedDate", record.get("SystemModstamp", now)))
        record.setdefault("CreatedDate", created)
        record.setdefault("LastModifiedDate", record.get("SystemModstamp", record["CreatedDate"]))
        record.setdefault("SystemModstamp", record["LastModifiedDate"])
        record.setdefault("CreatedById", USER_ID)
        record.setdefault("LastModifiedById", USER_ID)
        record.setdefault("OwnerId", USER_ID)
        record.setdefault("IsDeleted", 0)
        record.update(derive(sobject, record))
        record["deleted_at"] = record["SystemModstamp"] if record["IsDeleted"] else None
        prepared.append(record)
        ids.append(record["Id"])
    if len(set(ids)) != len(ids):
        raise errors.fail(
            400, "DUPLICATE_VALUE", "duplicate value found: Id duplicates value on record with id", ["Id"]
        )
    columns = ["deleted_at", *(f.name for f in sobject.fields)]
    marks = ", ".join("?" * len(columns))
    names = ", ".join(f'"{c}"' for c in columns)
    try:
        db.executemany(
            f'INSERT INTO "{sobject.table}"({names}) VALUES ({marks})',
            [[r.get(c) for c in columns] for r in prepared],
        )
    except sqlite3.IntegrityError:
        raise errors.fail(
            400, "DUPLICATE_VALUE", "duplicate value found: Id duplicates value on record with id", ["Id"]
        ) from None
    return ids


def fetch(db: sqlite3.Connection, sobject: SObject, record_id: str) -> sqlite3.Row:
    """The live record ``record_id`` (404 NOT_FOUND when unknown, ENTITY_IS_DELETED when in the recycle bin)."""
    normalized = normalize_id(record_id)
    row = None
    if normalized is not None and normalized[:3] == sobject.key_prefix:
        row = db.execute(f'SELECT * FROM "{sobject.table}" WHERE "Id"=?', (normalized,)).fetchone()
    if row is None:
        if normalized is None:
            raise errors.not_found(f"Provided external ID field does not exist or is not accessible: {record_id}")
        raise errors.not_found()
    if row["IsDeleted"]:
        raise errors.fail(404, "ENTITY_IS_DELETED", "entity is deleted", [])
    return row


def update(db: sqlite3.Connection, sobject: SObject, row: sqlite3.Row, values: Mapping[str, Any], now: int) -> None:
    _check_references(db, sobject, values)
    record = {**dict(row), **values}
    changes = {**values, **derive(sobject, record), "LastModifiedDate": now, "SystemModstamp": now}
    changes["LastModifiedById"] = USER_ID
    assignments = ", ".join(f'"{name}"=?' for name in changes)
    db.execute(f'UPDATE "{sobject.table}" SET {assignments} WHERE rid=?', (*changes.values(), row["rid"]))


def delete(db: sqlite3.Connection, sobject: SObject, row: sqlite3.Row, now: int) -> None:
    """Move a record to the recycle bin; a Contact with open Cases is refused with DELETE_FAILED."""
    if sobject.name == "Contact":
        numbers = [
            r[0]
            for r in db.execute(
                "SELECT case_number FROM cases WHERE contact_id=? AND is_deleted=0 ORDER BY case_number", (row["Id"],)
            )
        ]
        if numbers:
            raise errors.fail(
                400,
                "DELETE_FAILED",
                f"Your attempt to delete {row['Name']} could not be completed because it is associated with the "
                f"following cases.: {', '.join(numbers)}\n",
                [],
            )
    db.execute(
        f'UPDATE "{sobject.table}" SET "IsDeleted"=1, deleted_at=?, "LastModifiedDate"=?, "SystemModstamp"=? '
        "WHERE rid=?",
        (now, now, now, row["rid"]),
    )


def add_case(db: sqlite3.Connection, contact_id: str, subject: str | None, now: int) -> dict[str, str]:
    normalized = normalize_id(contact_id)
    if normalized is None or normalized[:3] != "003":
        raise errors.fail(400, "MALFORMED_ID", f"Contact ID: id value of incorrect type: {contact_id}", ["ContactId"])
    if not db.execute('SELECT 1 FROM "sobject_Contact" WHERE "Id"=?', (normalized,)).fetchone():
        raise errors.fail(400, "INVALID_CROSS_REFERENCE_KEY", "Contact ID: id value of incorrect type", ["ContactId"])
    number = next_numbers(db, CASE_PREFIX)
    case = {"Id": make_id(CASE_PREFIX, number), "CaseNumber": f"{1000 + number:08d}", "ContactId": normalized}
    db.execute(
        "INSERT INTO cases(id, case_number, contact_id, subject, created_at) VALUES (?,?,?,?,?)",
        (case["Id"], case["CaseNumber"], normalized, subject, now),
    )
    return case


def render(sobject: SObject, row: Mapping[str, Any], fields: Iterable[Any], version: str) -> dict[str, Any]:
    """A record as the REST API answers it: ``attributes`` ({type, url}) then the fields, in order."""
    out: dict[str, Any] = {
        "attributes": {"type": sobject.name, "url": f"/services/data/v{version}/sobjects/{sobject.name}/{row['Id']}"}
    }
    for f in fields:
        out[f.name] = to_json(f, row[f.name])
    return out

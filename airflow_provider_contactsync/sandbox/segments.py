"""Segments: saved dynamic filters over the contacts, as Brevo's segments are.

Brevo builds segments in its web app, and the API only lists them (``GET /contacts/segments``) and
reads through them (``segmentId`` in ``GET /contacts`` and ``POST /contacts/export``). The sandbox
defines them through its control endpoints (``POST /_sandbox/segments``) in a small JSON rule
language, evaluated when read: a contact that changes enters or leaves the segment at once.

A condition is one of::

    {"attribute": "COUNTRY", "equals": "FR"}        the contact's value is this one
    {"attribute": "COUNTRY", "equals": null}        the contact has no value for it
    {"attribute": "COUNTRY", "in": ["FR", "BE"]}    the contact's value is one of these (1 to 1000)
    {"listId": 7}                                   the contact is a member of list 7
    {"emailBlacklisted": true}                      the contact is (false: is not) blacklisted for emails
    {"all": [condition, ...]}                       every condition holds (an empty list: every contact)
    {"any": [condition, ...]}                       one of them holds (an empty list: no contact)
    {"not": condition}                              the condition does not hold

and ``rules`` is a condition, or a list of conditions that must all hold. ``attribute`` names an
attribute of the account (any case), or ``EMAIL``; a value is read as the attribute's type reads it
(a category's label or value, a ``YYYY-MM-DD`` date, a phone number in any form Brevo takes, a
multiple-choice option: the contact has it among its options). Text is compared exactly. At most
100 conditions, nested 8 deep.

The rules are checked when a segment is defined (unknown attribute or list, a value the attribute
cannot hold: 400) and compiled to SQL with bound parameters when read: nothing the client sends is
ever SQL text. An attribute or list deleted since then matches as having no value / no member.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from . import errors
from .store import iso, list_exists, load_attributes, now_ms
from .validation import DROP, PHONE_ATTRIBUTES, coerce_value, db_int, normalize_email, normalize_phone

MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_VALUES = 1000
MAX_NAME = 200
DEFAULT_CATEGORY = "Sandbox"
COLUMNS = {"EMAIL": "email", "SMS": "sms", "EXT_ID": "ext_id"}
"""Attributes the sandbox keeps in columns of ``contacts`` (the fixed column names, never client text)."""

_Attrs = dict[str, dict[str, Any]]


def json_path(name: str) -> str | None:
    """The JSON path of attribute ``name`` in ``contacts.attributes`` (bound as a parameter), ``None``
    for a name no path can spell (it has no value)."""
    return None if '"' in name or "\\" in name else f'$."{name}"'


# --- checking rules --------------------------------------------------------------------------------


class _Checker:
    """Walks rules as a client sent them; raises 400 ``invalid_parameter`` naming the first problem."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.attrs = load_attributes(db)
        self.count = 0

    def check(self, rules: Any) -> Any:
        if isinstance(rules, list):
            rules = {"all": rules}
        return self._condition(rules, "rules", 1)

    def _condition(self, cond: Any, where: str, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise errors.invalid(f"{where}: conditions nest at most {MAX_DEPTH} deep")
        self.count += 1
        if self.count > MAX_CONDITIONS:
            raise errors.invalid(f"rules: at most {MAX_CONDITIONS} conditions")
        if not isinstance(cond, dict):
            raise errors.invalid(f"{where} should be a condition object")
        keys = set(cond)
        if "attribute" in cond:
            ops = keys & {"equals", "in"}
            if len(ops) != 1 or keys - {"attribute", "equals", "in"}:
                raise errors.invalid(f"{where}: an attribute condition is {{attribute, equals}} or {{attribute, in}}")
            name = cond["attribute"]
            if not isinstance(name, str) or not name.strip():
                raise errors.invalid(f"{where}.attribute should be an attribute name")
            name = name.strip().upper()
            attr = self._attribute(name, where)
            if "equals" in cond:
                value = cond["equals"]
                if value is not None:
                    self._value(name, attr, value, f"{where}.equals")
                return {"attribute": name, "equals": value}
            values = cond["in"]
            if not isinstance(values, list) or not 0 < len(values) <= MAX_VALUES:
                raise errors.invalid(f"{where}.in should be an array of 1 to {MAX_VALUES} values")
            for i, value in enumerate(values):
                self._value(name, attr, value, f"{where}.in[{i}]")
            return {"attribute": name, "in": values}
        if len(keys) != 1:
            raise errors.invalid(
                f"{where}: a condition has one of attribute, listId, emailBlacklisted, all, any, not"
                f" (got {', '.join(sorted(map(str, keys))) or 'nothing'})"
            )
        (key,) = keys
        value = cond[key]
        if key == "listId":
            if not isinstance(value, int) or isinstance(value, bool) or not list_exists(self.db, value):
                raise errors.invalid(f"{where}.listId: List ID does not exist")
            return {"listId": value}
        if key == "emailBlacklisted":
            if not isinstance(value, bool):
                raise errors.invalid(f"{where}.emailBlacklisted should be true or false")
            return {"emailBlacklisted": value}
        if key in ("all", "any"):
            if not isinstance(value, list):
                raise errors.invalid(f"{where}.{key} should be an array of conditions")
            return {key: [self._condition(c, f"{where}.{key}[{i}]", depth + 1) for i, c in enumerate(value)]}
        if key == "not":
            return {"not": self._condition(value, f"{where}.not", depth + 1)}
        raise errors.invalid(f"{where}: unknown condition {key!r}")

    def _attribute(self, name: str, where: str) -> dict[str, Any] | None:
        if name in COLUMNS:
            return None
        attr = self.attrs.get(name)
        if attr is None:
            raise errors.invalid(f"{where}.attribute: {name} is not an attribute of the account")
        if attr["category"] in ("calculated", "global"):
            raise errors.invalid(f"{where}.attribute: {name} is a {attr['category']} attribute (no contact values)")
        return attr

    @staticmethod
    def _value(name: str, attr: dict[str, Any] | None, value: Any, where: str) -> None:
        if isinstance(value, (dict, list)) or value is None:
            raise errors.invalid(f"{where} should be a string, number or boolean")
        if _stored(name, attr, value) is DROP:
            kind = attr["type"] if attr else name
            raise errors.invalid(f"{where}: {value!r} is not a value {name} ({kind}) can hold")


def _stored(name: str, attr: dict[str, Any] | None, value: Any) -> Any:
    """How the contacts keep ``value`` of attribute ``name`` (what the SQL compares with), or DROP."""
    if name == "EMAIL":
        return normalize_email(value) or DROP
    if name in PHONE_ATTRIBUTES:
        return normalize_phone(value) or DROP
    if name == "EXT_ID":
        return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else DROP
    if attr is None:
        return DROP
    return coerce_value(attr, value)


# --- compiling rules to SQL ------------------------------------------------------------------------


class _Compiler:
    """Rules (already checked) to an SQL expression over ``contacts c`` that is 1 or 0, never NULL."""

    def __init__(self, attrs: _Attrs) -> None:
        self.attrs = attrs
        self.params: list[Any] = []

    def condition(self, cond: dict[str, Any]) -> str:
        if "attribute" in cond:
            return self._attribute(cond)
        if "listId" in cond:
            self.params.append(db_int(cond["listId"]))
            return "EXISTS (SELECT 1 FROM list_members lm WHERE lm.list_id = ? AND lm.contact_id = c.id)"
        if "emailBlacklisted" in cond:
            return "c.email_blacklisted = 1" if cond["emailBlacklisted"] else "c.email_blacklisted = 0"
        if "all" in cond:
            parts = [self.condition(c) for c in cond["all"]]
            return "(" + " AND ".join(parts) + ")" if parts else "1"
        if "any" in cond:
            parts = [self.condition(c) for c in cond["any"]]
            return "(" + " OR ".join(parts) + ")" if parts else "0"
        return f"NOT ({self.condition(cond['not'])})"

    def _attribute(self, cond: dict[str, Any]) -> str:
        name = cond["attribute"]
        attr = self.attrs.get(name)
        column = COLUMNS.get(name)
        path = json_path(name)
        if column is not None:
            target = f"c.{column}"
        elif path is None:
            target = "NULL"
        else:
            target = "json_extract(c.attributes, ?)"
        if "equals" in cond and cond["equals"] is None:
            self.params.extend([path] if target.startswith("json") else [])
            return f"({target} IS NULL)"
        wanted = [cond["equals"]] if "equals" in cond else cond["in"]
        values = []
        for value in wanted:  # as stored now; a value the attribute no longer takes matches nothing
            stored = _stored(name, attr if column is None else None, value)
            if stored is not DROP:
                values.extend(stored if isinstance(stored, list) else [stored])
        if not values:
            return "0"
        if column is None and attr is not None and attr["type"] == "multiple-choice" and path is not None:
            self.params.extend([path, json.dumps(values)])
            return (
                "EXISTS (SELECT 1 FROM json_each(c.attributes, ?) o WHERE o.value IN (SELECT value FROM json_each(?)))"
            )
        self.params.extend([path] if target.startswith("json") else [])
        self.params.append(json.dumps(values))
        return f"COALESCE({target} IN (SELECT value FROM json_each(?)), 0)"


def compile_rules(db: sqlite3.Connection, rules: dict[str, Any]) -> tuple[str, list[Any]]:
    """An SQL expression over ``contacts c`` true for the members of the segment, and its parameters."""
    compiler = _Compiler(load_attributes(db))
    return compiler.condition(rules), compiler.params


# --- the segments table ----------------------------------------------------------------------------


def render(row: sqlite3.Row, with_rules: bool = False) -> dict[str, Any]:
    """A segment as ``GET /contacts/segments`` lists it (plus its rules for the control endpoints)."""
    out: dict[str, Any] = {
        "id": row["id"],
        "segmentName": row["name"],
        "categoryName": row["category"],
        "updatedAt": iso(row["updated_at"]),
    }
    if with_rules:
        out["rules"] = json.loads(row["rules"])
    return out


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise errors.missing(f"{key} is required")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise errors.invalid(f"{key} should be a non-empty string of at most {MAX_NAME} characters")
    return value.strip()


def _check_keys(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.invalid("the body should be a JSON object")
    unknown = sorted(set(body) - {"name", "category", "rules"})
    if unknown:
        raise errors.invalid(f"unknown field(s): {', '.join(map(str, unknown))}")
    return body


def create(db: sqlite3.Connection, body: Any) -> dict[str, Any]:
    """Define a segment from ``{"name", "rules", "category"?}``; returns it with its rules."""
    body = _check_keys(body)
    name = _text(body, "name")
    category = _text(body, "category", DEFAULT_CATEGORY)
    if "rules" not in body:
        raise errors.missing("rules is required")
    rules = _Checker(db).check(body["rules"])
    stamp = now_ms()
    cur = db.execute(
        "INSERT INTO segments(name, category, rules, created_at, updated_at) VALUES (?,?,?,?,?)",
        (name, category, json.dumps(rules), stamp, stamp),
    )
    return render(db.execute("SELECT * FROM segments WHERE id=?", (cur.lastrowid,)).fetchone(), with_rules=True)


def find(db: sqlite3.Connection, segment_id: Any) -> sqlite3.Row | None:
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        return None
    return db.execute("SELECT * FROM segments WHERE id=?", (db_int(segment_id),)).fetchone()


def _existing(db: sqlite3.Connection, segment_id: Any) -> sqlite3.Row:
    row = find(db, segment_id)
    if row is None:
        raise errors.not_found("Segment ID does not exist")
    return row


def update(db: sqlite3.Connection, segment_id: int, body: Any) -> dict[str, Any]:
    """Change a segment's name, category or rules (``updatedAt`` moves); 404 for an unknown id."""
    body = _check_keys(body)
    row = _existing(db, segment_id)
    name = _text(body, "name", row["name"])
    category = _text(body, "category", row["category"])
    rules = _Checker(db).check(body["rules"]) if "rules" in body else json.loads(row["rules"])
    db.execute(
        "UPDATE segments SET name=?, category=?, rules=?, updated_at=? WHERE id=?",
        (name, category, json.dumps(rules), now_ms(), row["id"]),
    )
    return render(db.execute("SELECT * FROM segments WHERE id=?", (row["id"],)).fetchone(), with_rules=True)


def delete(db: sqlite3.Connection, segment_id: int) -> None:
    db.execute("DELETE FROM segments WHERE id=?", (_existing(db, segment_id)["id"],))


def members_sql(db: sqlite3.Connection, segment_id: Any) -> tuple[str, list[Any]]:
    """The segment's SQL condition over ``contacts c`` as of now; 400 ``Segment ID does not exist``
    (Brevo's answer) for an unknown id."""
    row = find(db, segment_id)
    if row is None:
        raise errors.invalid("Segment ID does not exist")
    return compile_rules(db, json.loads(row["rules"]))

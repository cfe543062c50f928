"""Sandbox imports: the fast paths behave exactly like the straightforward code they replace.

``reference_run_import`` is the import as first written (every contact loaded into dicts, one Draft
per row); random imports against random accounts must leave the same contacts, lists and counters.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from airflow_provider_contactsync.sandbox import imports, validation
from airflow_provider_contactsync.sandbox.contacts import ERASE, UNSET, Draft, parse_attributes
from airflow_provider_contactsync.sandbox.store import Store, insert_attribute, load_attributes, now_ms
from airflow_provider_contactsync.sandbox.validation import normalize_email

# --- phone numbers -----------------------------------------------------------------------------------


def reference_phone(value: Any) -> str | None:
    """normalize_phone as first written: phonenumbers for every number."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = re.sub(r"[\s.\-()]", "", str(value))
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not text.isdigit() or not 6 <= len(text) <= 15:
        return None
    try:
        number = phonenumbers.parse("+" + text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return f"{number.country_code}{number.national_number}"


def phone_samples() -> list[Any]:
    rng = random.Random(7)
    out: list[Any] = ["+33612345678", "0033612345678", "+330612345678", "+33 6 12 34 56 78", "33612345678"]
    out += ["+1 (650) 253-0000", "+44 7911 123456", "+4407911123456", "+39 06 1234 5678", "+5511912345678"]
    out += ["+55 0 11 91234 5678", "+5501191234567", "+8613812345678", "+7 8 912 345 67 89", "+800 1234 5678"]
    out += ["+٣٣٦١٢٣٤٥٦٧٨", "+33６12345678", "+²²612345678", "", "+", "abc", 33612345678, True, None, 1.5]
    out += ["+0612345678", "+999123456", "+2991234567", "00000000", "+33.6.12.34.56.78", "+33-6-12"]
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for code in codes:
        for total in range(6, 16):
            for _ in range(6):
                size = total - len(str(code))
                if size < 1:
                    continue
                first = rng.choice("0123456789")
                rest = first + "".join(rng.choice("0123456789") for _ in range(size - 1))
                out.append(rng.choice(["+", "00", ""]) + f"{code}{rest}")
    for _ in range(3000):
        out.append("+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 17))))
    return out


def test_normalize_phone_matches_phonenumbers_on_every_country_and_length() -> None:
    validation._country.clear()
    validation._possible_length.clear()
    samples = phone_samples()
    for _ in range(2):  # first pass learns, second pass answers from what it learned
        got = [validation.normalize_phone(s) for s in samples]
        want = [reference_phone(s) for s in samples]
        assert [(s, g) for s, g, w in zip(samples, got, want, strict=True) if g != w] == []
    assert any(v is None for v in want) and sum(v is not None for v in want) > 1000


# --- imports -----------------------------------------------------------------------------------------


def reference_run_import(db: sqlite3.Connection, payload: dict[str, Any]) -> dict[str, Any]:
    """run_import as first written: every contact loaded into dicts, one Draft per row."""
    counts = dict.fromkeys(imports.IMPORT_COUNTERS, 0)
    attrs = load_attributes(db)
    update_existing = payload.get("updateExistingContacts", True) is not False
    erase_empty = bool(payload.get("emptyContactsAttributes")) and update_existing
    list_ids: list[int] = list(payload.get("listIds") or [])
    if payload.get("newList"):
        new = payload["newList"]
        cur = db.execute(
            "INSERT INTO lists(name, folder_id, created_at) VALUES (?,?,?)",
            (new["listName"], new.get("folderId") or 1, now_ms()),
        )
        list_ids.append(int(cur.lastrowid or 0))

    by_col: dict[str, dict[str, int]] = {"email": {}, "ext_id": {}, "sms": {}}
    for cid, email, ext_id, sms in db.execute("SELECT id, email, ext_id, sms FROM contacts"):
        for col, value in (("email", email), ("ext_id", ext_id), ("sms", sms)):
            if value is not None:
                by_col[col][value] = cid
    seen: dict[str, set[str]] = {"email": set(), "ext_id": set(), "sms": set()}
    counter = {"email": "duplicate_email_id", "ext_id": "duplicate_ext_id", "sms": "duplicate_phone_id"}
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name='contacts'").fetchone()
    next_id = max(seq[0] if seq else 0, db.execute("SELECT COALESCE(MAX(id), 0) FROM contacts").fetchone()[0]) + 1

    new_rows: dict[int, Draft] = {}
    changes: dict[int, list[Draft]] = {}
    for row in imports.parse_rows(payload):
        draft = Draft()
        raw_attrs = row.get("attributes") if isinstance(row.get("attributes"), dict) else {}
        parse_attributes(raw_attrs, attrs, draft, strict=False, erase_empty=erase_empty)
        raw_email = row.get("email")
        if raw_email not in (None, ""):
            email = normalize_email(raw_email)
            if email is None:
                counts["invalid_emails"] += 1
                continue
            draft.email = email
        elif "EMAIL" in {str(k).upper() for k in raw_attrs} and draft.email is UNSET:
            counts["invalid_emails"] += 1
            continue
        ids = draft.identifiers()
        if not ids:
            continue
        dup = next((col for col, value in ids.items() if value in seen[col]), None)
        if dup:
            counts[counter[dup]] += 1
            continue
        primary = next(iter(ids))  # email, else ext_id, else sms
        target = by_col[primary].get(ids[primary])
        clash = next((c for c, v in ids.items() if by_col[c].get(v, target) != target), None)
        if clash:
            counts[counter[clash]] += 1
            continue
        for col, value in ids.items():
            seen[col].add(value)
        if payload.get("emailBlacklist"):
            draft.email_blacklisted = True
        if payload.get("smsBlacklist"):
            draft.sms_blacklisted = True
        if target is None:
            target = next_id
            next_id += 1
            new_rows[target] = draft
            for col, value in ids.items():
                by_col[col][value] = target
        elif target in new_rows or update_existing:
            changes.setdefault(target, []).append(draft)
            for col, value in ids.items():
                by_col[col][value] = target
        else:
            changes.setdefault(target, [])

    stamp = now_ms()
    blacklisted_before = {r[0] for r in db.execute("SELECT id FROM contacts WHERE email_blacklisted=1")}
    # Later rows for a contact created by this import fold into its insert.
    for cid, draft in new_rows.items():
        for extra in changes.pop(cid, []):
            _reference_merge(draft, extra)
    db.executemany(
        "INSERT INTO contacts(id, email, ext_id, sms, email_blacklisted, sms_blacklisted, attributes,"
        " created_at,"
        " modified_at) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (
                cid,
                d.identifiers().get("email"),
                d.identifiers().get("ext_id"),
                d.identifiers().get("sms"),
                int(d.email_blacklisted is True),
                int(d.sms_blacklisted is True),
                json.dumps({k: v for k, v in d.attributes.items() if v is not ERASE}),
                stamp,
                stamp,
            )
            for cid, d in new_rows.items()
        ],
    )
    updates = []
    ids_to_update = [cid for cid, drafts in changes.items() if drafts]
    for start in range(0, len(ids_to_update), 900):
        chunk = ids_to_update[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for existing in db.execute(f"SELECT * FROM contacts WHERE id IN ({marks})", chunk):
            merged = Draft()
            for d in changes[existing["id"]]:
                _reference_merge(merged, d)
            values = json.loads(existing["attributes"])
            for name, value in merged.attributes.items():
                if value is ERASE:
                    values.pop(name, None)
                else:
                    values[name] = value
            updates.append(
                (
                    existing["email"] if merged.email is UNSET else merged.email,
                    existing["ext_id"] if merged.ext_id is UNSET else None if merged.ext_id is ERASE else merged.ext_id,
                    existing["sms"] if merged.sms is UNSET else None if merged.sms is ERASE else merged.sms,
                    int(merged.email_blacklisted is True or bool(existing["email_blacklisted"])),
                    int(merged.sms_blacklisted is True or bool(existing["sms_blacklisted"])),
                    json.dumps(values),
                    stamp,
                    existing["id"],
                )
            )
    db.executemany(
        "UPDATE contacts SET email=?, ext_id=?, sms=?, email_blacklisted=?, sms_blacklisted=?, attributes=?,"
        " modified_at=? WHERE id=?",
        updates,
    )
    # Brevo's unsubscription history: the contacts this import blacklisted for emails.
    unsubscribed = [cid for cid, d in new_rows.items() if d.email_blacklisted is True]
    unsubscribed += [u[-1] for u in updates if u[3] and u[-1] not in blacklisted_before]
    db.executemany(
        "INSERT INTO unsubscriptions(contact_id, campaign_id, event_time, ip) VALUES (?, NULL, ?, '127.0.0.1')",
        [(cid, stamp) for cid in unsubscribed],
    )
    # A contact only added to a list (not updated) is modified when it was not in the list yet.
    for cid in [cid for cid, drafts in changes.items() if not drafts]:
        joined = [
            lid
            for lid in list_ids
            if not db.execute("SELECT 1 FROM list_members WHERE list_id=? AND contact_id=?", (lid, cid)).fetchone()
        ]
        if joined:
            db.execute("UPDATE contacts SET modified_at=? WHERE id=?", (stamp, cid))
    members = [cid for cid in new_rows] + list(changes)
    db.executemany(
        "INSERT OR IGNORE INTO list_members VALUES (?,?)", [(lid, cid) for lid in list_ids for cid in members]
    )
    return counts


def _reference_merge(into: Draft, extra: Draft) -> None:
    for name in ("email", "ext_id", "sms", "email_blacklisted", "sms_blacklisted"):
        value = getattr(extra, name)
        if value is not UNSET:
            setattr(into, name, value)
    into.attributes.update(extra.attributes)


ATTRIBUTES = [
    ("AGE", "normal", "float", None, None),
    ("INCOMPLETE", "normal", "boolean", None, None),
    ("BIRTHDAY", "normal", "date", None, None),
    ("SCORE_ID", "normal", "id", None, None),
    ("TIER", "category", "category", [{"value": 1, "label": "Gold"}, {"value": 2, "label": "Silver"}], None),
    ("HOBBIES", "normal", "multiple-choice", None, ["Chess", "Golf"]),
    ("TOTAL", "calculated", "float", None, None),
]
EMAILS = [f"user{i}@example.com" for i in range(40)]
EXT_IDS = [f"x{i}" for i in range(40)]
PHONES = [f"+336{i:08d}" for i in range(40)]


def make_store(path: Path, rng: random.Random) -> Store:
    store = Store(path)
    with store.transaction() as db:
        for name, category, kind, enumeration, options in ATTRIBUTES:
            insert_attribute(db, name, category, kind, enumeration=enumeration, options=options)
        for cid in range(1, 31):
            stamp = now_ms()
            db.execute(
                "INSERT OR IGNORE INTO contacts(id, email, ext_id, sms, email_blacklisted, attributes, created_at,"
                " modified_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    cid * 3,
                    rng.choice([*EMAILS, None]),
                    rng.choice([*EXT_IDS, None, None]),
                    rng.choice([p[1:] for p in PHONES] + [None, None]),
                    rng.random() < 0.2,
                    json.dumps({"FIRSTNAME": f"Old{cid}", "AGE": cid, "HOBBIES": ["Golf"]}),
                    stamp,
                    stamp,
                ),
            )
            if rng.random() < 0.5:
                db.execute("INSERT OR IGNORE INTO list_members VALUES (2, ?)", (cid * 3,))
    return store


def random_value(rng: random.Random, name: str) -> Any:
    pools: dict[str, list[Any]] = {
        "EMAIL": [*EMAILS[:10], "BAD", "", None, " User3@Example.COM "],
        "SMS": [*PHONES[:12], "0033600000001", "+33 6 00 00 00 02", "12", "", None, True, 33600000003],
        "WHATSAPP": ["+33611111111", "nope", "", None],
        "EXT_ID": [*EXT_IDS[:12], 7, True, "", None, 1.5],
        "FIRSTNAME": ["Ann", "", None, 5, True, ["a"], "Zoé"],
        "AGE": [42.0, 7, "3.5", "12", "x", True, "", None, float("nan")],
        "INCOMPLETE": [True, False, "true", "FALSE", 1, "", None],
        "BIRTHDAY": ["2024-01-31", "2024-02-31", "", 3],
        "SCORE_ID": [5, "17", "x", False],
        "TIER": [1, "gold", "2", "Bronze", True],
        "HOBBIES": [["chess"], "golf,Chess", [], "none", 3],
        "TOTAL": [1.0, ""],
        "NOT_THERE": ["z"],
    }
    return rng.choice(pools[name])


NAMES = ["EMAIL", "SMS", "WHATSAPP", "EXT_ID", "FIRSTNAME", "AGE", "INCOMPLETE", "BIRTHDAY", "SCORE_ID", "TIER"]
NAMES += ["HOBBIES", "TOTAL", "NOT_THERE"]
WEIGHTS = [0.1, 0.6, 0.1, 0.5, 0.6, 0.4, 0.3, 0.1, 0.1, 0.1, 0.1, 0.05, 0.1]


def random_row(rng: random.Random) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if rng.random() < 0.8:
        row["email"] = rng.choice([*EMAILS[:25], "bad-email", "", None, "USER1@EXAMPLE.COM", ["x"]])
    attributes = {}
    for name, weight in zip(NAMES, WEIGHTS, strict=True):
        if rng.random() < weight:
            key = name.lower() if rng.random() < 0.1 else name
            attributes[key] = random_value(rng, name)
    if attributes or rng.random() < 0.9:
        row["attributes"] = attributes if rng.random() < 0.97 else "not an object"
    return row


def random_payload(rng: random.Random) -> dict[str, Any]:
    rows = [random_row(rng) for _ in range(rng.randint(1, 120))]
    payload: dict[str, Any] = {"listIds": [2]}
    if rng.random() < 0.2:
        header = ["EMAIL", "FIRSTNAME", "SMS", "EXT_ID", "AGE"]
        lines = [";".join(header)]
        for row in rows:
            attrs = row.get("attributes") if isinstance(row.get("attributes"), dict) else {}
            cells = [row.get("email"), *(attrs.get(h) for h in header[1:])]
            lines.append(";".join("" if c is None else str(c) for c in cells))
        payload["fileBody"] = "\n".join(lines)
    else:
        payload["jsonBody"] = rows
    for flag in ("updateExistingContacts", "emptyContactsAttributes", "emailBlacklist", "smsBlacklist"):
        if rng.random() < 0.4:
            payload[flag] = rng.random() < 0.5
    if rng.random() < 0.15:
        payload["newList"] = {"listName": "Fresh"}
    return payload


def state(db: sqlite3.Connection, since: int) -> dict[str, Any]:
    """Everything an import may change; timestamps as "touched by this import or not"."""
    return {
        "contacts": [
            (*row[:7], row[7] >= since, row[8] >= since)
            for row in db.execute(
                "SELECT id, email, ext_id, sms, email_blacklisted, sms_blacklisted, attributes, created_at,"
                " modified_at FROM contacts ORDER BY id"
            )
        ],
        "members": db.execute("SELECT * FROM list_members ORDER BY 1, 2").fetchall(),
        "unsubscriptions": [
            (*row[:3], row[3] >= since)
            for row in db.execute(
                "SELECT contact_id, campaign_id, ip, event_time FROM unsubscriptions ORDER BY contact_id, id"
            )
        ],
        "lists": db.execute("SELECT id, name, folder_id FROM lists ORDER BY id").fetchall(),
        "sequence": db.execute("SELECT * FROM sqlite_sequence").fetchall(),
    }


@pytest.mark.parametrize("seed", range(40))
def test_run_import_matches_the_reference(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    want_store = make_store(tmp_path / "want.db", random.Random(seed))
    got_store = make_store(tmp_path / "got.db", random.Random(seed))
    try:
        for _ in range(4):  # imports build on each other: later ones update what earlier ones created
            payload = random_payload(rng)
            since = now_ms()
            with want_store.transaction() as db:
                want_counts = reference_run_import(db, json.loads(json.dumps(payload)))
                want = state(db, since)
            with got_store.transaction() as db:
                got_counts = imports.run_import(db, json.loads(json.dumps(payload)))
                got = state(db, since)
            assert got_counts == want_counts
            assert got == want
    finally:
        want_store.close()
        got_store.close()


def test_import_counts_duplicates_clashes_updates_and_creates(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO contacts(id, email, ext_id, attributes, created_at, modified_at)"
                " VALUES (1, 'a@example.com', 'X', '{\"FIRSTNAME\": \"A\"}', 1, 1)"
            )
            db.execute("INSERT INTO contacts(id, sms, created_at, modified_at) VALUES (2, '33600000009', 1, 1)")
        rows = [
            {"email": "A@example.com", "attributes": {"FIRSTNAME": "A2"}},  # update 1
            {"email": "n1@example.com", "attributes": {"SMS": "+33600000009"}},  # SMS is contact 2's
            {"email": "n2@example.com", "attributes": {"EXT_ID": "Y"}},  # create 3
            {"email": "n2@example.com", "attributes": {"FIRSTNAME": "again"}},  # email already in this import
            {"attributes": {"EXT_ID": "X", "FIRSTNAME": "by ext"}},  # contact 1 again, found by ext_id
            {"email": "n3@example.com", "attributes": {"EXT_ID": "X"}},  # X is contact 1's, n3 is new
            {"email": "not an email"},
        ]
        with store.transaction() as db:
            counts = imports.run_import(db, {"jsonBody": rows, "listIds": [2]})
            contacts = {
                r[0]: (r[1], r[2], r[3], json.loads(r[4]))
                for r in db.execute("SELECT id, email, ext_id, sms, attributes FROM contacts")
            }
            members = [r[0] for r in db.execute("SELECT contact_id FROM list_members WHERE list_id=2 ORDER BY 1")]
    finally:
        store.close()
    assert {k: v for k, v in counts.items() if v} == {
        "invalid_emails": 1,
        "duplicate_email_id": 1,
        "duplicate_ext_id": 1,
        "duplicate_phone_id": 1,
    }
    assert contacts == {
        1: ("a@example.com", "X", None, {"FIRSTNAME": "by ext"}),
        2: (None, None, "33600000009", {}),
        3: ("n2@example.com", "Y", None, {}),
    }
    assert members == [1, 3]

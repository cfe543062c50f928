"""Background processes: contact imports and exports, run by one worker thread like Brevo's queue.

A process goes ``queued`` -> ``in_process`` -> ``completed`` (``import_delay`` seconds split between
the first two, so sensors see every state). An import is one transaction with ``executemany``: a
100k-contact import takes seconds. Duplicate identifiers are counted in ``info.import`` and the row
skipped; unknown attributes and values that do not fit an attribute are dropped, as Brevo does.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import sqlite3
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from .contacts import ERASE, UNSET, Draft, parse_attributes
from .settings import Settings
from .store import Store, load_attributes, now_ms
from .validation import normalize_email

log = logging.getLogger(__name__)

IMPORT_COUNTERS = (
    "invalid_emails",
    "duplicate_contact_id",
    "duplicate_ext_id",
    "duplicate_email_id",
    "duplicate_phone_id",
    "duplicate_whatsapp_id",
    "duplicate_landline_number_id",
)


def parse_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Import rows as ``{"email": ..., "attributes": {...}}`` from jsonBody or a ``;`` CSV fileBody."""
    if payload.get("jsonBody") is not None:
        return [r for r in payload["jsonBody"] if isinstance(r, dict)]
    text = payload.get("fileBody") or ""
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = next(reader, None)
    if not header:
        return []
    names = [h.strip().upper() for h in header]
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(names, cells, strict=False))
        rows.append({"email": values.pop("EMAIL", None), "attributes": values})
    return rows


def run_import(db: sqlite3.Connection, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply one import inside the caller's transaction; returns the ``info.import`` counters."""
    counts = dict.fromkeys(IMPORT_COUNTERS, 0)
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
    next_id = (
        max(seq[0] if seq else 0, db.execute("SELECT COALESCE(MAX(id), 0) FROM contacts").fetchone()[0]) + 1
    )

    new_rows: dict[int, Draft] = {}
    changes: dict[int, list[Draft]] = {}
    for row in parse_rows(payload):
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
    # Later rows for a contact created by this import fold into its insert.
    for cid, draft in new_rows.items():
        for extra in changes.pop(cid, []):
            _merge(draft, extra)
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
                _merge(merged, d)
            values = json.loads(existing["attributes"])
            for name, value in merged.attributes.items():
                if value is ERASE:
                    values.pop(name, None)
                else:
                    values[name] = value
            updates.append(
                (
                    existing["email"] if merged.email is UNSET else merged.email,
                    existing["ext_id"]
                    if merged.ext_id is UNSET
                    else None
                    if merged.ext_id is ERASE
                    else merged.ext_id,
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
    members = [cid for cid in new_rows] + list(changes)
    db.executemany(
        "INSERT OR IGNORE INTO list_members VALUES (?,?)", [(lid, cid) for lid in list_ids for cid in members]
    )
    return counts


def _merge(into: Draft, extra: Draft) -> None:
    for name in ("email", "ext_id", "sms", "email_blacklisted", "sms_blacklisted"):
        value = getattr(extra, name)
        if value is not UNSET:
            setattr(into, name, value)
    into.attributes.update(extra.attributes)


def run_export(db: sqlite3.Connection, payload: dict[str, Any]) -> str:
    """The CSV (``;`` separated) of the contacts matching ``customContactFilter``."""
    filt = payload.get("customContactFilter") or {}
    action = filt.get("actionForContacts", "allContacts")
    sql = "SELECT c.* FROM contacts c"
    params: list[Any] = []
    where = []
    if filt.get("listId") is not None:
        sql += " JOIN list_members m ON m.contact_id = c.id"
        where.append("m.list_id = ?")
        params.append(filt["listId"])
    if action == "subscribed":
        where.append("c.email_blacklisted = 0")
    elif action == "unsubscribed":
        where.append("c.email_blacklisted = 1")
    elif action == "unsubscribedPerList":
        where.append("0")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY c.id"
    wanted = [str(a).upper() for a in payload.get("exportAttributes") or []]
    mandatory = payload.get("exportMandatoryAttributes", True) is not False
    header = ["CONTACT_ID", "EMAIL", *[a for a in wanted if a not in ("EMAIL", "CONTACT_ID")]]
    if mandatory:
        header += ["ADDED_TIME", "MODIFIED_TIME", "EMAIL_BLACKLISTED", "SMS_BLACKLISTED"]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(header)
    from .store import iso  # local: only exports need it

    for row in db.execute(sql, params):
        values = json.loads(row["attributes"])
        values.update({"SMS": row["sms"], "EXT_ID": row["ext_id"]})
        line = [row["id"], row["email"] or ""]
        for name in header[2:]:
            if name == "ADDED_TIME":
                line.append(iso(row["created_at"]))
            elif name == "MODIFIED_TIME":
                line.append(iso(row["modified_at"]))
            elif name == "EMAIL_BLACKLISTED":
                line.append(str(bool(row["email_blacklisted"])).lower())
            elif name == "SMS_BLACKLISTED":
                line.append(str(bool(row["sms_blacklisted"])).lower())
            else:
                value = values.get(name)
                line.append("" if value is None else ",".join(value) if isinstance(value, list) else value)
        writer.writerow(line)
    return out.getvalue()


class ProcessWorker:
    """Runs queued processes one at a time in a daemon thread; resumes unfinished ones after a restart."""

    def __init__(
        self, store: Store, settings: Settings, notify: Callable[[str, dict[str, Any]], None] | None = None
    ):
        self.store = store
        self.settings = settings
        self._queue: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notify = notify or _post_json

    def start(self) -> None:
        with self.store.reading() as db:
            pending = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM processes WHERE status NOT IN ('completed', 'failed', 'cancelled')"
                    " ORDER BY id"
                )
            ]
        for pid in pending:
            self._queue.put(pid)
        self._thread = threading.Thread(target=self._run, name="brevo-sandbox-processes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def submit(self, name: str, payload: dict[str, Any]) -> int:
        with self.store.transaction() as db:
            cur = db.execute(
                "INSERT INTO processes(name, status, created_at, payload) VALUES (?, 'queued', ?, ?)",
                (name, now_ms(), json.dumps(payload)),
            )
            pid = int(cur.lastrowid or 0)
        self._queue.put(pid)
        return pid

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pid = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._process(pid)
            except Exception as exc:  # a sandbox bug must show as a failed process, not a dead worker
                log.exception("process %s failed", pid)
                with self.store.transaction() as db:
                    db.execute(
                        "UPDATE processes SET status='failed', error=?, completed_at=? WHERE id=?",
                        (str(exc), now_ms(), pid),
                    )

    def _process(self, pid: int) -> None:
        half = self.settings.import_delay / 2
        if half and self._stop.wait(half):
            return
        with self.store.transaction() as db:
            row = db.execute("SELECT name, payload FROM processes WHERE id=?", (pid,)).fetchone()
            if row is None:  # wiped by a reset
                return
            db.execute(
                "UPDATE processes SET status=? WHERE id=?", (self.settings.process_running_status, pid)
            )
        if half and self._stop.wait(half):
            return
        payload = json.loads(row["payload"])
        with self.store.transaction() as db:
            if row["name"] == "IMPORTUSER":
                info: dict[str, Any] = {"import": run_import(db, payload)}
                export_path = None
            else:
                text = run_export(db, payload)
                db.execute("INSERT OR REPLACE INTO exports VALUES (?,?)", (pid, text))
                info = {
                    "export": {"total_records": max(0, text.count("\n") - 1), "file_size": len(text.encode())}
                }
                export_path = f"/_sandbox/exports/{pid}.csv"
            db.execute(
                "UPDATE processes SET status='completed', info=?, export_path=?, completed_at=?, payload=NULL"
                " WHERE id=?",
                (json.dumps(info), export_path, now_ms(), pid),
            )
        if payload.get("notifyUrl"):
            threading.Thread(
                target=self._notify,
                args=(payload["notifyUrl"], {"processId": pid, "status": "completed"}),
                daemon=True,
            ).start()


def _post_json(url: str, body: dict[str, Any]) -> None:
    """Best-effort notifyUrl call, as Brevo does when a process finishes."""
    try:
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        urllib.request.urlopen(req, timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - the notification is best effort, like Brevo's
        log.warning("notifyUrl %s failed: %s", url, exc)

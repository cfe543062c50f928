"""Background processes: contact imports and exports, run by one worker thread like Brevo's queue.

A process goes ``queued`` -> ``in_process`` -> ``completed`` (``import_delay`` seconds split between
the first two, so sensors see every state). An export (see :mod:`.exports`) is written to a file
while the process is ``in_process``, from a snapshot of its own: imports and API calls go on
meanwhile; its ``export_url`` is ``/_sandbox/exports/<process id>.csv``.

An import is one transaction with ``executemany``: a 100k-contact import takes seconds. Duplicate
identifiers are counted in ``info.import`` and the row skipped; unknown attributes and values that
do not fit an attribute are dropped, as Brevo does. ``emailBlacklist`` records an
``adminUnsubscription`` for each contact it blacklists, and a contact the import only adds to a list
(``updateExistingContacts: false``) gets a new ``modified_at``.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
import os
import queue
import sqlite3
import threading
import urllib.request
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from . import errors, exports
from .contacts import ERASE, UNSET
from .settings import Settings
from .store import Store, add_unsubscriptions, load_attributes, now_ms
from .validation import DROP, PHONE_ATTRIBUTES, coerce_value, normalize_email, normalize_phone

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
    """Apply one import inside the caller's transaction; returns the ``info.import`` counters.

    Work scales with the import, not the account: only this import's identifiers are looked up
    (through the unique indexes), and writes go through ``executemany``.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # tens of thousands of small dicts and tuples, no cycles: collections only cost
    try:
        return _Import(db, payload).run()
    finally:
        if gc_was_enabled:
            gc.enable()


class _Import:
    """One import: read the rows, decide create / update / skip for each, then write in bulk."""

    def __init__(self, db: sqlite3.Connection, payload: dict[str, Any]) -> None:
        self.db = db
        self.payload = payload
        self.counts = dict.fromkeys(IMPORT_COUNTERS, 0)
        self.update_existing = payload.get("updateExistingContacts", True) is not False
        self.erase_empty = bool(payload.get("emptyContactsAttributes")) and self.update_existing
        self.email_blacklist = bool(payload.get("emailBlacklist"))
        self.sms_blacklist = bool(payload.get("smsBlacklist"))
        self.new_rows: dict[int, _Write] = {}
        self.changes: dict[int, list[_Write]] = {}  # existing contact -> its rows (none: list only)

    def run(self) -> dict[str, Any]:
        list_ids = self._list_ids()
        reader = _RowReader(load_attributes(self.db), self.erase_empty)
        writes: list[_Write] = []
        for row in parse_rows(self.payload):
            write = reader.read(row)
            if write is None:
                self.counts["invalid_emails"] += 1
            elif write[0]:
                writes.append(write)
        self._decide(writes)
        stamp = now_ms()
        self._insert(stamp)
        self._update(stamp)
        self._touch_joining(list_ids, stamp)
        for list_id in list_ids:
            self.db.execute(
                "INSERT OR IGNORE INTO list_members SELECT ?, value FROM json_each(?)",
                (list_id, json.dumps([*self.new_rows, *self.changes])),
            )
        return self.counts

    def _touch_joining(self, list_ids: list[int], stamp: int) -> None:
        """``modified_at`` of the contacts the import does not update but adds to a list they are not in."""
        only_lists = [cid for cid, found in self.changes.items() if not found]
        if only_lists and list_ids:
            self.db.execute(
                "UPDATE contacts SET modified_at=? WHERE id IN (SELECT value FROM json_each(?)) AND EXISTS"
                " (SELECT 1 FROM json_each(?) l WHERE NOT EXISTS"
                " (SELECT 1 FROM list_members m WHERE m.list_id = l.value AND m.contact_id = contacts.id))",
                (stamp, json.dumps(only_lists), json.dumps(list_ids)),
            )

    def _list_ids(self) -> list[int]:
        list_ids: list[int] = list(self.payload.get("listIds") or [])
        if self.payload.get("newList"):
            new = self.payload["newList"]
            cur = self.db.execute(
                "INSERT INTO lists(name, folder_id, created_at) VALUES (?,?,?)",
                (new["listName"], new.get("folderId") or 1, now_ms()),
            )
            list_ids.append(int(cur.lastrowid or 0))
        return list_ids

    def _decide(self, writes: list[_Write]) -> None:
        """Rows in order: a duplicate of an earlier row's identifier, or an identifier held by another
        contact than the row's target, is counted and skipped (Brevo never merges two contacts)."""
        db = self.db
        counts, new_rows, changes, update_existing = self.counts, self.new_rows, self.changes, self.update_existing
        by_col = _owners(db, writes)  # later rows see the identifiers earlier rows gave out
        seen: dict[str, set[str]] = {"email": set(), "ext_id": set(), "sms": set()}
        counter = {"email": "duplicate_email_id", "ext_id": "duplicate_ext_id", "sms": "duplicate_phone_id"}
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name='contacts'").fetchone()
        next_id = 1 + max(seq[0] if seq else 0, db.execute("SELECT COALESCE(MAX(id), 0) FROM contacts").fetchone()[0])
        for write in writes:
            ids = write[0]
            target = by_col[ids[0][0]].get(ids[0][1])  # email, else ext_id, else sms
            refused = None
            for col, value in ids:
                if value in seen[col]:
                    refused = col
                    break
            else:
                for col, value in ids:
                    if by_col[col].get(value, target) != target:
                        refused = col
                        break
            if refused is not None:
                counts[counter[refused]] += 1
                continue
            for col, value in ids:
                seen[col].add(value)
            if target is None:
                target = next_id
                next_id += 1
                new_rows[target] = write
            elif target in new_rows or update_existing:
                changes.setdefault(target, []).append(write)
            else:
                changes.setdefault(target, [])
                continue
            for col, value in ids:
                by_col[col][value] = target

    def _insert(self, stamp: int) -> None:
        erase_empty, changes = self.erase_empty, self.changes
        email_blacklist, sms_blacklist = int(self.email_blacklist), int(self.sms_blacklist)
        inserts = []
        for cid, write in self.new_rows.items():
            extra = changes.pop(cid, None)  # later rows for a contact created here fold into its insert
            _, email, ext_id, sms, values = _merge([write, *extra]) if extra else write
            if erase_empty:
                values = {k: v for k, v in values.items() if v is not ERASE}
            inserts.append(
                (
                    cid,
                    None if email is UNSET else email,
                    ext_id if isinstance(ext_id, str) else None,
                    sms if isinstance(sms, str) else None,
                    email_blacklist,
                    sms_blacklist,
                    _dumps(values),
                    stamp,
                    stamp,
                )
            )
        self.db.executemany(
            "INSERT INTO contacts(id, email, ext_id, sms, email_blacklisted, sms_blacklisted, attributes,"
            " created_at, modified_at) VALUES (?,?,?,?,?,?,?,?,?)",
            inserts,
        )
        if email_blacklist:
            add_unsubscriptions(self.db, list(self.new_rows), stamp)

    def _update(self, stamp: int) -> None:
        changes = self.changes
        email_blacklist, sms_blacklist = self.email_blacklist, self.sms_blacklist
        same_ids, new_ids, unsubscribed = [], [], []
        for existing in self.db.execute(
            "SELECT c.id, c.email, c.ext_id, c.sms, c.email_blacklisted, c.sms_blacklisted, c.attributes"
            " FROM json_each(?) j JOIN contacts c ON c.id = j.value",
            (json.dumps(sorted(cid for cid, found in changes.items() if found)),),
        ):
            cid, old_email, old_ext_id, old_sms, old_email_bl, old_sms_bl, old_attributes = existing
            found = changes[cid]
            _, email, ext_id, sms, merged = _merge(found) if len(found) > 1 else found[0]
            values = json.loads(old_attributes)
            for name, value in merged.items():
                if value is ERASE:
                    values.pop(name, None)
                else:
                    values[name] = value
            if email_blacklist and not old_email_bl:
                unsubscribed.append(cid)
            email = old_email if email is UNSET else email
            ext_id = old_ext_id if ext_id is UNSET else None if ext_id is ERASE else ext_id
            sms = old_sms if sms is UNSET else None if sms is ERASE else sms
            common = (
                int(email_blacklist or bool(old_email_bl)),
                int(sms_blacklist or bool(old_sms_bl)),
                _dumps(values),
                stamp,
                cid,
            )
            if (email, ext_id, sms) == (old_email, old_ext_id, old_sms):
                same_ids.append(common)
            else:
                new_ids.append((email, ext_id, sms, *common))
        # Leaving the identifier columns out when they do not change spares three index updates.
        self.db.executemany(
            "UPDATE contacts SET email_blacklisted=?, sms_blacklisted=?, attributes=?, modified_at=? WHERE id=?",
            same_ids,
        )
        self.db.executemany(
            "UPDATE contacts SET email=?, ext_id=?, sms=?, email_blacklisted=?, sms_blacklisted=?,"
            " attributes=?, modified_at=? WHERE id=?",
            new_ids,
        )
        add_unsubscriptions(self.db, unsubscribed, stamp)


_Write = tuple[tuple[tuple[str, str], ...], Any, Any, Any, dict[str, Any]]
"""One parsed import row: its identifiers ((column, value), ... in email, ext_id, sms order), then
email, ext_id, sms (a value, ``UNSET`` or ``ERASE``) and the attribute values (``ERASE`` to erase)."""

# What an attribute key means to an import (decided once per key and import).
_SKIP, _EMAIL, _SMS, _PHONE, _EXT_ID, _TEXT, _FLOAT, _BOOLEAN, _OTHER = range(9)


class _RowReader:
    """Reads import rows the way :func:`~.contacts.parse_attributes` does with ``strict=False``.

    Each attribute key is resolved once per import (upper-cased name, attribute definition, how to
    check its values), which is most of the per-row work for tens of thousands of rows.
    """

    def __init__(self, attrs: dict[str, dict[str, Any]], erase_empty: bool) -> None:
        self.attrs = attrs
        self.erase_empty = erase_empty
        self.keys: dict[Any, tuple[int, str, dict[str, Any] | None]] = {}

    def _resolve(self, key: Any) -> tuple[int, str, dict[str, Any] | None]:
        name = str(key).upper()
        attr = self.attrs.get(name)
        if name == "EMAIL":
            kind = _EMAIL
        elif name == "SMS":
            kind = _SMS
        elif name in PHONE_ATTRIBUTES:
            kind = _PHONE if attr is not None else _SKIP
        elif name == "EXT_ID":
            kind = _EXT_ID
        elif attr is None or attr["category"] in ("calculated", "global"):
            kind = _SKIP  # unknown attributes are ignored, as Brevo does
        else:
            kind = {"text": _TEXT, "float": _FLOAT, "boolean": _BOOLEAN}.get(attr["type"], _OTHER)
        self.keys[key] = resolved = (kind, name, attr)
        return resolved

    def read(self, row: dict[str, Any]) -> _Write | None:
        """The row's write, or ``None`` when its email is invalid (counted in ``invalid_emails``)."""
        raw = row.get("attributes")
        if not isinstance(raw, dict):
            raw = {}
        keys, erase_empty = self.keys, self.erase_empty
        email = ext_id = sms = UNSET
        email_key = False
        values: dict[str, Any] = {}
        for key, value in raw.items():
            kind, name, attr = keys.get(key) or self._resolve(key)
            if kind == _SKIP:
                continue
            empty = value is None or value == ""
            if kind == _TEXT:
                if empty:
                    if erase_empty:
                        values[name] = ERASE
                elif type(value) is str:
                    values[name] = value
                elif (coerced := coerce_value(attr, value)) is not DROP:  # type: ignore[arg-type]
                    values[name] = coerced
            elif kind == _EMAIL:
                email_key = True
                if not empty and (normalized := normalize_email(value)) is not None:
                    email = normalized
            elif kind == _SMS:
                if empty:
                    if erase_empty:
                        sms = ERASE
                elif (phone := normalize_phone(value)) is not None:
                    sms = phone
            elif kind == _EXT_ID:
                if empty:
                    if erase_empty:
                        ext_id = ERASE
                elif isinstance(value, (str, int)) and not isinstance(value, bool):
                    ext_id = str(value)
            elif kind == _PHONE:
                if empty:
                    if erase_empty:
                        values[name] = ERASE
                elif (phone := normalize_phone(value)) is not None:
                    values[name] = phone
            elif empty:
                if erase_empty:
                    values[name] = ERASE
            elif kind == _FLOAT and (type(value) is int or (type(value) is float and value - value == 0.0)):
                values[name] = value  # a finite number (inf - inf is NaN): coerce_value drops the others
            elif kind == _BOOLEAN and type(value) is bool:
                values[name] = value
            elif (coerced := coerce_value(attr, value)) is not DROP:  # type: ignore[arg-type]
                values[name] = coerced
        raw_email = row.get("email")
        if raw_email not in (None, ""):
            email = normalize_email(raw_email)
            if email is None:
                return None
        elif email_key and email is UNSET:
            return None
        ids: tuple[tuple[str, str], ...] = ()
        if email is not UNSET:
            ids = (("email", email),)
        if ext_id is not UNSET and ext_id is not ERASE:
            ids += (("ext_id", ext_id),)
        if sms is not UNSET and sms is not ERASE:
            ids += (("sms", sms),)
        return ids, email, ext_id, sms, values


def _owners(db: sqlite3.Connection, writes: list[_Write]) -> dict[str, dict[str, int]]:
    """Which existing contact holds each identifier of ``writes`` (one indexed lookup per value)."""
    wanted: dict[str, set[str]] = {"email": set(), "ext_id": set(), "sms": set()}
    if db.execute("SELECT 1 FROM contacts LIMIT 1").fetchone() is not None:
        for write in writes:
            for col, value in write[0]:
                wanted[col].add(value)
    return {
        col: dict(
            db.execute(
                f"SELECT c.{col}, c.id FROM json_each(?) j JOIN contacts c ON c.{col} = j.value",
                (json.dumps(sorted(values)),),  # in index order: neighbouring lookups share pages
            )
        )
        if values
        else {}
        for col, values in wanted.items()
    }


def _merge(writes: list[_Write]) -> _Write:
    """Several rows for one contact as one write: later values win, attributes accumulate."""
    email = ext_id = sms = UNSET
    values: dict[str, Any] = {}
    for _, row_email, row_ext_id, row_sms, row_values in writes:
        if row_email is not UNSET:
            email = row_email
        if row_ext_id is not UNSET:
            ext_id = row_ext_id
        if row_sms is not UNSET:
            sms = row_sms
        values.update(row_values)
    return (), email, ext_id, sms, values


if c_make_encoder is not None:
    # json.dumps builds a new C encoder on every call; one reused encoder writes the same text.
    _encode = c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def _dumps(values: dict[str, Any]) -> str:
        return "".join(_encode(values, 0))

else:  # pragma: no cover - CPython always has the C encoder
    _dumps = json.dumps


class ProcessWorker:
    """Runs queued processes one at a time in a daemon thread; resumes unfinished ones after a restart."""

    def __init__(self, store: Store, settings: Settings, notify: Callable[[str, dict[str, Any]], None] | None = None):
        self.store = store
        self.settings = settings
        self._queue: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notify = notify or _post_json
        self._payloads: dict[int, dict[str, Any]] = {}  # submitted in this run, not yet processed

    def start(self) -> None:
        with self.store.reading() as db:
            pending = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM processes WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY id"
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

    def submit(self, name: str, payload: dict[str, Any], raw: bytes | None = None) -> int:
        """Queue a process. ``raw``: the request body ``payload`` was parsed from, stored as is (a
        100k-contact body is not serialized again); the worker takes ``payload`` from memory and
        reads the stored copy only after a restart."""
        text = None
        if raw is not None:
            try:
                text = raw.decode(json.detect_encoding(raw))
            except UnicodeDecodeError:
                text = None
        with self.store.transaction() as db:
            cur = db.execute(
                "INSERT INTO processes(name, status, created_at, payload) VALUES (?, 'queued', ?, ?)",
                (name, now_ms(), text if text is not None else json.dumps(payload)),
            )
            pid = int(cur.lastrowid or 0)
            self._payloads[pid] = payload
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
        payload = self._payloads.pop(pid, None)
        half = self.settings.import_delay / 2
        if half and self._stop.wait(half):
            return
        with self.store.transaction() as db:
            row = db.execute(  # the stored payload only when this run did not submit it (a restart)
                "SELECT name, created_at, CASE WHEN ? THEN payload END AS payload FROM processes WHERE id=?",
                (payload is None, pid),
            ).fetchone()
            if row is None:  # wiped by a reset
                return
            db.execute("UPDATE processes SET status=? WHERE id=?", (self.settings.process_running_status, pid))
        if half and self._stop.wait(half):
            return
        if payload is None:
            payload = json.loads(row["payload"])
        if row["name"] == "IMPORTUSER":
            with self.store.transaction() as db:
                info = {"import": run_import(db, payload)}
                db.execute(
                    "UPDATE processes SET status='completed', info=?, completed_at=?, payload=NULL WHERE id=?",
                    (json.dumps(info), now_ms(), pid),
                )
        elif not self._export(pid, row["created_at"], payload):
            return
        if payload.get("notifyUrl"):
            threading.Thread(
                target=self._notify,
                args=(payload["notifyUrl"], {"processId": pid, "status": "completed"}),
                daemon=True,
            ).start()

    def _export(self, pid: int, created_at: int, payload: dict[str, Any]) -> bool:
        """Write the export's file, then complete the process; ``False`` when it did not complete
        (the sandbox is stopping, the process was wiped by a reset, or it failed)."""
        part = self.store.export_dir / f"{pid}.csv.part"
        same = "SELECT 1 FROM processes WHERE id=? AND created_at=?"  # not a process of a later reset
        try:
            rows, size = exports.write_export(self.store, payload, part, self._stop)
        except exports.Stopped:
            return False
        except errors.ApiError as exc:  # e.g. the segment was deleted after the request
            with self.store.transaction() as db:
                db.execute(
                    "UPDATE processes SET status='failed', error=?, completed_at=?, payload=NULL WHERE id=?"
                    " AND created_at=?",
                    (exc.message, now_ms(), pid, created_at),
                )
            return False
        with self.store.transaction() as db:  # a reset (which removes the files) waits for this
            if db.execute(same, (pid, created_at)).fetchone() is None:
                part.unlink(missing_ok=True)
                return False
            name = f"{pid}.csv"
            os.replace(part, self.store.export_dir / name)
            db.execute("INSERT OR REPLACE INTO export_files VALUES (?,?)", (pid, name))
            db.execute(
                "UPDATE processes SET status='completed', info=?, export_path=?, completed_at=?, payload=NULL"
                " WHERE id=?",
                (
                    json.dumps({"export": {"total_records": rows, "file_size": size}}),
                    f"/_sandbox/exports/{name}",
                    now_ms(),
                    pid,
                ),
            )
        return True


def _post_json(url: str, body: dict[str, Any]) -> None:
    """Best-effort notifyUrl call, as Brevo does when a process finishes."""
    try:
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        urllib.request.urlopen(req, timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - the notification is best effort, like Brevo's
        log.warning("notifyUrl %s failed: %s", url, exc)

"""SQLite state of the sandbox account: attributes, folders, lists, contacts, unsubscription events
(from emails and from single lists), segments, pending double opt-in confirmations, processes, and
the files of finished exports (CSV files in :attr:`Store.export_dir`, beside the database; the
database keeps only their names).

One writer connection guarded by a lock (every write is one transaction, so a dropped connection
or a failed batch never leaves half a change) and one reader connection: WAL mode lets readers
(e.g. a sensor polling a process) go on while an import writes. A long read (an export of a million
contacts) takes a connection of its own (:meth:`Store.snapshot`) so that it holds up neither.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .validation import db_int, render_value

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS attributes(
  name TEXT PRIMARY KEY, category TEXT NOT NULL, type TEXT NOT NULL,
  enumeration TEXT, options TEXT, value TEXT, pos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS folders(id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lists(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, folder_id INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS contacts(
  id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT UNIQUE, ext_id TEXT UNIQUE, sms TEXT UNIQUE,
  email_blacklisted INTEGER NOT NULL DEFAULT 0, sms_blacklisted INTEGER NOT NULL DEFAULT 0,
  attributes TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, modified_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_modified ON contacts(modified_at);
CREATE INDEX IF NOT EXISTS contacts_created ON contacts(created_at);
CREATE TABLE IF NOT EXISTS list_members(
  list_id INTEGER NOT NULL, contact_id INTEGER NOT NULL, PRIMARY KEY(list_id, contact_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS list_members_contact ON list_members(contact_id);
CREATE TABLE IF NOT EXISTS processes(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, info TEXT, export_path TEXT,
  error TEXT, created_at INTEGER NOT NULL, completed_at INTEGER, payload TEXT);
CREATE TABLE IF NOT EXISTS export_files(process_id INTEGER PRIMARY KEY, file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS list_unsubscriptions(
  list_id INTEGER NOT NULL, contact_id INTEGER NOT NULL, event_time INTEGER NOT NULL,
  PRIMARY KEY(list_id, contact_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS list_unsubscriptions_contact ON list_unsubscriptions(contact_id);
CREATE TABLE IF NOT EXISTS segments(
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, category TEXT NOT NULL, rules TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS unsubscriptions(
  id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL, campaign_id INTEGER, event_time INTEGER NOT NULL,
  ip TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS unsubscriptions_contact ON unsubscriptions(contact_id);
CREATE TABLE IF NOT EXISTS doi_requests(
  token TEXT PRIMARY KEY, email TEXT NOT NULL, template_id INTEGER NOT NULL, include_list_ids TEXT NOT NULL,
  exclude_list_ids TEXT NOT NULL, attributes TEXT NOT NULL, redirection_url TEXT NOT NULL,
  requested_at INTEGER NOT NULL);
"""

ADMIN_IP = "127.0.0.1"
"""The IP of unsubscriptions made through the API (``adminUnsubscription``)."""

DEFAULT_ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "FIRSTNAME", "category": "normal", "type": "text"},
    {"name": "LASTNAME", "category": "normal", "type": "text"},
    {"name": "SMS", "category": "normal", "type": "text"},
    {"name": "WHATSAPP", "category": "normal", "type": "text"},
    {"name": "LANDLINE_NUMBER", "category": "normal", "type": "text"},
    {"name": "EXT_ID", "category": "normal", "type": "text"},
]
DEFAULT_FOLDER = {"id": 1, "name": "Your first folder"}
DEFAULT_LIST = {"id": 2, "name": "Your first list", "folderId": 1}

_clock_lock = threading.Lock()
_last_ms = 0


def now_ms() -> int:
    """Milliseconds since the epoch, strictly increasing within the process (so writes are ordered)."""
    global _last_ms
    with _clock_lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        return _last_ms


def iso(ms: int | None) -> str | None:
    """Brevo's date-time form: ``2024-01-15T10:30:00.000+00:00``."""
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+00:00"


class Store:
    """The account's state in one SQLite file.

    :param path: database file; created and seeded like a new Brevo account when new.
    :param seed: optional seed document (``{"attributes": [...], "lists": [...]}``) applied at open
        and after each reset; applying it twice changes nothing.
    """

    def __init__(self, path: str | Path, seed: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        self.export_dir = Path(self.path + "-exports")
        """Where finished exports are written (``<process id>.csv``); emptied by :meth:`reset`."""
        self.seed = seed or {}
        self.lock = threading.RLock()
        # Imports touch index pages all over a big account: a page cache that holds the indexes of
        # ~1M contacts keeps them from spilling and re-reading pages (SQLite's default is 2 MB).
        self._writer = self._connect(cache_mb=256)
        self._reader = self._connect(cache_mb=64)
        self._read_lock = threading.Lock()
        with self.lock:
            self._writer.executescript(SCHEMA)
        with self.transaction() as db:
            self._move_legacy_exports(db)
            if not db.execute("SELECT 1 FROM meta WHERE key='seeded'").fetchone():
                self._seed_defaults(db)
            self._apply_seed(db, self.seed)

    def _connect(self, cache_mb: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
        return conn

    def close(self) -> None:
        with self.lock, self._read_lock:
            self._writer.close()
            self._reader.close()

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own inside one read transaction (a consistent snapshot), for
        reads that take seconds: neither the writer nor the shared reader waits for it."""
        conn = self._connect(cache_mb=32)
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def _move_legacy_exports(self, db: sqlite3.Connection) -> None:
        """Databases of earlier sandboxes kept each export's CSV text in an ``exports`` table: written
        out as files, so that their ``export_url`` still answers."""
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='exports'").fetchone():
            return
        for process_id, text in db.execute("SELECT process_id, csv FROM exports").fetchall():
            self.export_dir.mkdir(parents=True, exist_ok=True)
            name = f"{int(process_id)}.csv"
            (self.export_dir / name).write_bytes(text.encode())
            db.execute("INSERT OR REPLACE INTO export_files VALUES (?,?)", (process_id, name))
        db.execute("DROP TABLE exports")

    def export_file(self, db: sqlite3.Connection, process_id: int | None) -> Path | None:
        """The CSV file of a finished export, ``None`` if there is none."""
        row = db.execute("SELECT file FROM export_files WHERE process_id=?", (process_id,)).fetchone()
        return self.export_dir / row[0] if row else None

    def _remove_export_files(self) -> None:
        """Delete the export files (finished and in progress). A download already under way keeps
        reading its open file."""
        if not self.export_dir.is_dir():
            return
        for entry in os.scandir(self.export_dir):
            if entry.is_file() and entry.name.endswith((".csv", ".part")):
                Path(entry.path).unlink(missing_ok=True)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside ``BEGIN IMMEDIATE``; committed on success, rolled back on error."""
        with self.lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads that must not wait for a running import."""
        with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")

    # --- seeding -------------------------------------------------------------------------------

    def _seed_defaults(self, db: sqlite3.Connection) -> None:
        for attr in DEFAULT_ATTRIBUTES:
            insert_attribute(db, attr["name"], attr["category"], attr["type"])
        db.execute("INSERT INTO folders VALUES (?,?,?)", (DEFAULT_FOLDER["id"], DEFAULT_FOLDER["name"], now_ms()))
        db.execute(
            "INSERT INTO lists VALUES (?,?,?,?)",
            (DEFAULT_LIST["id"], DEFAULT_LIST["name"], DEFAULT_LIST["folderId"], now_ms()),
        )
        db.execute("INSERT OR REPLACE INTO meta VALUES ('seeded', '1')")

    def _apply_seed(self, db: sqlite3.Connection, seed: dict[str, Any]) -> None:
        for folder in seed.get("folders", []):
            if folder.get("id") is not None:
                db.execute(
                    "INSERT INTO folders VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name",
                    (folder["id"], folder["name"], now_ms()),
                )
            elif not db.execute("SELECT 1 FROM folders WHERE name=?", (folder["name"],)).fetchone():
                db.execute("INSERT INTO folders(name, created_at) VALUES (?,?)", (folder["name"], now_ms()))
        for attr in seed.get("attributes", []):
            name = str(attr["name"]).upper()
            if not db.execute("SELECT 1 FROM attributes WHERE name=?", (name,)).fetchone():
                insert_attribute(
                    db,
                    name,
                    attr.get("category", "normal"),
                    attr.get("type", "text"),
                    enumeration=attr.get("enumeration"),
                    options=attr.get("multiCategoryOptions") or attr.get("options"),
                )
        for lst in seed.get("lists", []):
            folder_id = lst.get("folderId", DEFAULT_FOLDER["id"])
            if not db.execute("SELECT 1 FROM folders WHERE id=?", (folder_id,)).fetchone():
                db.execute("INSERT INTO folders VALUES (?,?,?)", (folder_id, f"Folder {folder_id}", now_ms()))
            if lst.get("id") is not None:
                db.execute(
                    "INSERT INTO lists VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name,"
                    " folder_id=excluded.folder_id",
                    (lst["id"], lst["name"], folder_id, now_ms()),
                )
            elif not db.execute("SELECT 1 FROM lists WHERE name=?", (lst["name"],)).fetchone():
                db.execute(
                    "INSERT INTO lists(name, folder_id, created_at) VALUES (?,?,?)",
                    (lst["name"], folder_id, now_ms()),
                )

    def reset(self) -> None:
        """Wipe everything back to a new account plus the seed."""
        with self.transaction() as db:
            for table in (
                "meta",
                "attributes",
                "folders",
                "lists",
                "contacts",
                "list_members",
                "processes",
                "export_files",
                "unsubscriptions",
                "list_unsubscriptions",
                "segments",
                "doi_requests",
            ):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sqlite_sequence WHERE name='segments'")
            self._remove_export_files()
            self._seed_defaults(db)
            self._apply_seed(db, self.seed)


# --- queries shared by the API handlers and the import worker ------------------------------------


def insert_attribute(
    db: sqlite3.Connection,
    name: str,
    category: str,
    type_: str,
    *,
    enumeration: list[dict[str, Any]] | None = None,
    options: list[str] | None = None,
    value: str | None = None,
) -> None:
    pos = db.execute("SELECT COALESCE(MAX(pos), 0) + 1 FROM attributes").fetchone()[0]
    db.execute(
        "INSERT INTO attributes VALUES (?,?,?,?,?,?,?)",
        (
            name,
            category,
            type_,
            json.dumps(enumeration) if enumeration is not None else None,
            json.dumps(options) if options is not None else None,
            value,
            pos,
        ),
    )


def load_attributes(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Attribute definitions by upper-case name, in creation order."""
    out: dict[str, dict[str, Any]] = {}
    for row in db.execute("SELECT * FROM attributes ORDER BY pos"):
        out[row["name"]] = {
            "name": row["name"],
            "category": row["category"],
            "type": row["type"],
            "enumeration": json.loads(row["enumeration"]) if row["enumeration"] else None,
            "options": json.loads(row["options"]) if row["options"] else None,
            "value": row["value"],
        }
    return out


def list_ids_of(db: sqlite3.Connection, contact_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {cid: [] for cid in contact_ids}
    ids = list(contact_ids)
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(
            f"SELECT contact_id, list_id FROM list_members WHERE contact_id IN ({marks}) ORDER BY list_id",
            chunk,
        ):
            out[row[0]].append(row[1])
    return out


def render_contacts(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    """Contacts in Brevo's shape (id, email, emailBlacklisted, ..., listIds, attributes)."""
    attrs = load_attributes(db)
    lists = list_ids_of(db, [r["id"] for r in rows])
    out = []
    for row in rows:
        values = {k: render_value(attrs.get(k), v) for k, v in json.loads(row["attributes"]).items()}
        if row["sms"]:
            values["SMS"] = row["sms"]
        if row["ext_id"] is not None:
            values["EXT_ID"] = row["ext_id"]
        contact: dict[str, Any] = {"id": row["id"]}
        if row["email"]:
            contact["email"] = row["email"]
        contact.update(
            {
                "emailBlacklisted": bool(row["email_blacklisted"]),
                "smsBlacklisted": bool(row["sms_blacklisted"]),
                "createdAt": iso(row["created_at"]),
                "modifiedAt": iso(row["modified_at"]),
                "listIds": lists[row["id"]],
                "attributes": values,
            }
        )
        out.append(contact)
    return out


def add_unsubscriptions(
    db: sqlite3.Connection,
    contact_ids: Sequence[int],
    stamp: int,
    campaign_id: int | None = None,
    ip: str = ADMIN_IP,
) -> None:
    """Record that ``contact_ids`` were unsubscribed from emails at ``stamp``: by a campaign's
    unsubscribe link when ``campaign_id`` is given (``userUnsubscription``), else through the API
    (``adminUnsubscription``)."""
    db.executemany(
        "INSERT INTO unsubscriptions(contact_id, campaign_id, event_time, ip) VALUES (?,?,?,?)",
        [(cid, campaign_id, stamp, ip) for cid in contact_ids],
    )


def render_unsubscriptions(db: sqlite3.Connection, contact_id: int) -> dict[str, list[dict[str, Any]]]:
    """``statistics.unsubscriptions`` of a contact, oldest event first (both arrays always present)."""
    out: dict[str, list[dict[str, Any]]] = {"adminUnsubscription": [], "userUnsubscription": []}
    for row in db.execute(
        "SELECT campaign_id, event_time, ip FROM unsubscriptions WHERE contact_id=? ORDER BY event_time, id",
        (contact_id,),
    ):
        if row["campaign_id"] is None:
            out["adminUnsubscription"].append({"eventTime": iso(row["event_time"]), "ip": row["ip"]})
        else:
            out["userUnsubscription"].append(
                {"campaignId": row["campaign_id"], "eventTime": iso(row["event_time"]), "ip": row["ip"]}
            )
    return out


def touch_members(db: sqlite3.Connection, where: str, params: Sequence[Any], stamp: int) -> None:
    """Set ``modified_at`` of the contacts in the list memberships matching ``where`` (their
    membership is about to change)."""
    db.execute(
        f"UPDATE contacts SET modified_at=? WHERE id IN (SELECT contact_id FROM list_members WHERE {where})",
        (stamp, *params),
    )


def list_exists(db: sqlite3.Connection, list_id: int) -> bool:
    return db.execute("SELECT 1 FROM lists WHERE id=?", (db_int(list_id),)).fetchone() is not None


def render_process(row: sqlite3.Row, base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row["id"], "name": row["name"], "status": row["status"]}
    if row["info"]:
        out["info"] = json.loads(row["info"])
    if row["export_path"]:
        out["export_url"] = base_url + row["export_path"]
    if row["error"]:
        out["error"] = row["error"]
    out["created_at"] = iso(row["created_at"])
    if row["completed_at"]:
        out["completed_at"] = iso(row["completed_at"])
    return out

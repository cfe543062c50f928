"""SQLite state of the sandbox org: one table per object, Cases, sessions, query cursors, Bulk 2.0 jobs.

One connection guarded by a lock: every write is one transaction (a failed request or a refused record
of a batch leaves nothing half done), and WAL mode keeps a reader of the file (a test, ``sqlite3``)
from blocking the server.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .schema import OBJECTS, TEXT_TYPES, SObject, make_id

_STATE = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(
  id TEXT PRIMARY KEY, object TEXT NOT NULL, fields TEXT NOT NULL, rids TEXT NOT NULL, total INTEGER NOT NULL,
  include_deleted INTEGER NOT NULL, touched_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bulk_jobs(
  id TEXT PRIMARY KEY, object TEXT NOT NULL, operation TEXT NOT NULL, query TEXT NOT NULL,
  column_delimiter TEXT NOT NULL, line_ending TEXT NOT NULL, api_version TEXT NOT NULL, state TEXT NOT NULL,
  header TEXT NOT NULL, total INTEGER NOT NULL, created_at INTEGER NOT NULL, created_mono REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bulk_rows(
  job_id TEXT NOT NULL, pos INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY(job_id, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cases(
  id TEXT PRIMARY KEY, case_number TEXT NOT NULL UNIQUE, contact_id TEXT NOT NULL, subject TEXT,
  is_deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS cases_contact ON cases(contact_id);
"""

_SQL_TYPES = {"boolean": "INTEGER", "double": "REAL", "datetime": "INTEGER"}

CASE_PREFIX = "500"
CURSOR_PREFIX = "01g"
JOB_PREFIX = "750"
ORG_ID = make_id("00D", 1)
USER_ID = make_id("005", 1)


def object_ddl(sobject: SObject) -> str:
    columns = ["rid INTEGER PRIMARY KEY AUTOINCREMENT", "deleted_at INTEGER"]
    for f in sobject.fields:
        sql_type = _SQL_TYPES.get(f.type, "TEXT")
        collate = " COLLATE NOCASE" if f.type in TEXT_TYPES else ""
        constraint = " NOT NULL UNIQUE" if f.name == "Id" else ""
        columns.append(f'"{f.name}" {sql_type}{collate}{constraint}')
    table = sobject.table
    indexes = [
        f'CREATE INDEX IF NOT EXISTS "{table}_{name}" ON "{table}"("{name}")'
        for name in ("SystemModstamp", "LastModifiedDate", "CreatedDate", "Email")
        if sobject.field(name)
    ]
    return f'CREATE TABLE IF NOT EXISTS "{table}"({", ".join(columns)});\n' + ";\n".join(indexes) + ";"


class Store:
    """The org's state in one SQLite file (created when new; kept across restarts)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")
        self._create()

    def _create(self) -> None:
        with self.lock:
            self._db.executescript(_STATE + "\n".join(object_ddl(o) for o in OBJECTS.values()))

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction (rolled back if the block raises)."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self._db

    def reset(self, keep_sessions: bool = True) -> None:
        """Delete every record, Case, cursor and job (sessions stay valid unless ``keep_sessions`` is False)."""
        with self.transaction() as db:
            for sobject in OBJECTS.values():
                db.execute(f'DELETE FROM "{sobject.table}"')
            for table in ("meta", "cursors", "bulk_jobs", "bulk_rows", "cases"):
                db.execute(f"DELETE FROM {table}")
            if not keep_sessions:
                db.execute("DELETE FROM sessions")
            db.execute("DELETE FROM sqlite_sequence")


def next_numbers(db: sqlite3.Connection, prefix: str, count: int = 1) -> int:
    """Reserve ``count`` record numbers for ids with ``prefix``; the first one."""
    key = f"seq:{prefix}"
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    first = (row[0] if row else 0) + 1
    db.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, first + count - 1),
    )
    return first


def new_id(db: sqlite3.Connection, prefix: str) -> str:
    return make_id(prefix, next_numbers(db, prefix))

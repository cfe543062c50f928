"""The pre-flight identity check of a whole run, before anything is sent.

Conflicts can span chunks (row 3 and row 900,000 share an email), so the run's identifiers go into
a temporary SQLite table on disk (constant memory at any run size); only identifier values found
on more than one row are looked at again, and only those rows are resolved by
:func:`~.identity.resolve_conflicts`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable
from typing import Any

from airflow_provider_contactsync.load.identity import ContactIds, RunRow, Verdict, resolve_conflicts

_INSERT_BATCH = 10_000


def find_conflicts(rows: Iterable[RunRow]) -> list[Verdict]:
    """Verdicts for the rows of a run that must not be loaded (superseded or in conflict)."""
    with tempfile.TemporaryDirectory(prefix="contactsync-preflight-") as folder:
        db = sqlite3.connect(os.path.join(folder, "run.sqlite"))
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA temp_store=FILE")
            db.execute("CREATE TABLE run (seq INTEGER PRIMARY KEY, key, keyed TEXT, email TEXT, ext_id TEXT, sms TEXT)")
            _fill(db, rows)
            involved = _rows_sharing_a_value(db)
        finally:
            db.close()
    return resolve_conflicts(involved)


def _fill(db: sqlite3.Connection, rows: Iterable[RunRow]) -> None:
    insert = "INSERT INTO run VALUES (?, ?, ?, ?, ?, ?)"
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        keyed = row.identity if row.identity.startswith("K:") else None
        batch.append((row.seq, _storable(row.key), keyed, row.ids.email, row.ids.ext_id, row.ids.sms))
        if len(batch) >= _INSERT_BATCH:
            db.executemany(insert, batch)
            batch.clear()
    db.executemany(insert, batch)


def _rows_sharing_a_value(db: sqlite3.Connection) -> list[RunRow]:
    """Rows holding an identifier value (or a row key) that another row of the run also holds."""
    for column in ("keyed", "email", "ext_id", "sms"):
        db.execute(
            f"CREATE TABLE shared_{column} AS SELECT {column} AS value FROM run WHERE {column} IS NOT NULL"
            f" GROUP BY {column} HAVING count(*) > 1"
        )
    found = db.execute(
        "SELECT seq, key, keyed, email, ext_id, sms FROM run WHERE"
        " keyed IN (SELECT value FROM shared_keyed) OR email IN (SELECT value FROM shared_email)"
        " OR ext_id IN (SELECT value FROM shared_ext_id) OR sms IN (SELECT value FROM shared_sms)"
    )
    return [
        RunRow(seq, key, keyed or _unkeyed_identity(email, ext_id, sms), ContactIds(email, ext_id, sms))
        for seq, key, keyed, email, ext_id, sms in found
    ]


def _unkeyed_identity(email: str | None, ext_id: str | None, sms: str | None) -> str:
    # resolve_conflicts only tells keyed identities ("K:...") apart; any other text will do.
    return f"EXT_ID:{ext_id}" if ext_id is not None else f"EMAIL:{email}" if email is not None else f"SMS:{sms}"


def _storable(key: Any) -> Any:
    """A row key as SQLite can hold it (other types, and integers past 64 bits, as text)."""
    if isinstance(key, int) and not isinstance(key, bool) and -(2**63) <= key < 2**63:
        return key
    return key if key is None or isinstance(key, (float, str)) else str(key)

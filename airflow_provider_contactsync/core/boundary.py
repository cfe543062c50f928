"""Rows at the cursor's own value: read again every run, passed on only when they changed.

Database sources re-read the cursor's value (``updated >= cursor``, ADR 0004) so that a late commit
stamped with that instant is not missed. The rows read there last time would otherwise come back
every run: a rejected one rejected and reported again, counted again towards ``max_error_rate``.
So each run keeps a digest of the rows at its last value (the *boundary*), and the next run drops
the rows it reads there unchanged, counting them as skipped with that reason.

Reads come in (updated, key) order, so the boundary rows are the head of the next read and the
tail of this one: only those rows are looked at, whatever the size of the read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_provider_contactsync.core.cursor import CursorValue, normalize_value
from airflow_provider_contactsync.core.errors import RowError

SKIP_UNCHANGED = "unchanged at the cursor's value (read again for late commits)"

_CANONICAL = msgspec.json.Encoder(order="sorted", enc_hook=str)


def row_digest(row: dict[str, Any]) -> str:
    """A fingerprint of a source row as read (key order does not matter)."""
    return hashlib.blake2b(_CANONICAL.encode(row), digest_size=12).hexdigest()


@dataclass
class Boundary:
    """The rows a run read at its last cursor value: row key -> digest."""

    value: CursorValue
    digests: dict[str, str] = field(default_factory=dict)


class BoundaryFilter:
    """Drops the previous boundary's unchanged rows from an ordered read; records the new boundary.

    :param updated_field: the cursor field.
    :param key: the row key field.
    :param previous: the last successful run's boundary, when the stored cursor still has its value.
    """

    def __init__(self, updated_field: str, key: str, previous: Boundary | None) -> None:
        self.field = updated_field
        self.key = key
        self.previous = previous
        self.unchanged = 0
        self._in_head = previous is not None
        self._tail_raw: Any = _NOTHING
        self._tail: dict[str, str] = {}

    def feed(self, chunk: Sequence[Any]) -> list[Any]:
        """One chunk of the read, in order; returns it without the previous boundary's unchanged rows."""
        rows = list(chunk)
        if self._in_head:
            rows = self._drop_unchanged_head(rows)
        self._track_tail(chunk)
        return rows

    def _drop_unchanged_head(self, rows: list[Any]) -> list[Any]:
        assert self.previous is not None
        kept: list[Any] = []
        for index, row in enumerate(rows):
            if isinstance(row, RowError):
                kept.append(row)
                continue
            try:
                value = normalize_value(row[self.field], field=self.field)
            except RowError:
                kept.append(row)
                continue
            if value != self.previous.value:
                self._in_head = False
                return kept + rows[index:]
            if self.previous.digests.get(str(row[self.key])) == row_digest(row):
                self.unchanged += 1
            else:
                kept.append(row)
        return kept

    def _track_tail(self, chunk: Sequence[Any]) -> None:
        readable = [row for row in chunk if not isinstance(row, RowError)]
        if not readable:
            return
        last = readable[-1][self.field]
        tail: dict[str, str] = {}
        whole = True
        for row in reversed(readable):
            if row[self.field] != last:
                whole = False
                break
            tail[str(row[self.key])] = row_digest(row)
        if whole and last == self._tail_raw:
            self._tail.update(tail)
        else:
            self._tail = tail
        self._tail_raw = last

    def boundary(self) -> Boundary | None:
        """The boundary of this read (the rows at its last value), or None when it read nothing."""
        if self._tail_raw is _NOTHING:
            return None
        try:
            value = normalize_value(self._tail_raw, field=self.field)
        except RowError:
            return None
        return Boundary(value, dict(self._tail))


_NOTHING = object()

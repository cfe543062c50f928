"""The incremental cursor (watermark): the (updated_field, key) position of the last loaded row.

Rows are read in (updated, key) order; the stored cursor is the largest pair loaded and never
moves backwards (:meth:`Cursor.max`). Database sources read from the cursor's value *inclusive*
(``updated >= value``): rows sharing the boundary value are read again, so one committed late with
that value and a lower key is not lost (docs/adr/0004-cursor-boundary.md). File sources read the
rows strictly after the pair (:meth:`Cursor.is_before`). Timestamps are compared as instants:
naive values are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_provider_contactsync.core.errors import RowError

UTC = dt.timezone.utc
CursorValue = dt.datetime | dt.date | int | float | Decimal | str


def as_instant(value: dt.datetime) -> dt.datetime:
    """A comparable, tz-aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_value(value: Any, *, field: str = "updated_field") -> CursorValue:
    """Bring a cursor value to a comparable form; raise RowError for values that cannot order rows."""
    if isinstance(value, bool) or value is None:
        raise RowError(f"{field} is {'null' if value is None else 'a boolean'}: it cannot order rows", field=field)
    if isinstance(value, dt.datetime):
        return as_instant(value)
    if isinstance(value, (dt.date, int, float, Decimal)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return as_instant(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise RowError(f"{field} {value!r} is not an ISO 8601 timestamp", field=field, value=value) from None
    raise RowError(f"{field} of type {type(value).__name__} cannot be a cursor", field=field, value=value)


def _key_order(key: Any) -> tuple[int, Any]:
    """Keys of mixed types still order deterministically: numbers before strings."""
    if isinstance(key, (int, float, Decimal)) and not isinstance(key, bool):
        return (0, key)
    return (1, str(key))


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last loaded row: its updated value and its key."""

    value: CursorValue
    key: Any

    def is_before(self, value: CursorValue, key: Any) -> bool:
        """True when a row at (value, key) comes strictly after this cursor in (updated, key) order."""
        if value != self.value:
            return value > self.value  # type: ignore[operator]
        return _key_order(key) > _key_order(self.key)

    def reaches(self, value: CursorValue) -> bool:
        """True when a row updated at ``value`` is inside a database source's window from this cursor.

        The boundary is inclusive: ``value >= self.value``, whatever the row's key.
        """
        return value >= self.value  # type: ignore[operator]

    def max(self, other: Cursor | None) -> Cursor:
        """The later of two cursors: a cursor never moves backwards."""
        if other is None or not self.is_before(other.value, other.key):
            return self
        return other

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, dt.datetime):
            kind, text = "timestamp", value.isoformat()
        elif isinstance(value, dt.date):
            kind, text = "date", value.isoformat()
        elif isinstance(value, Decimal):
            kind, text = "decimal", str(value)
        elif isinstance(value, (int, float)):
            kind, text = ("int" if isinstance(value, int) else "float"), value
        else:
            kind, text = "string", value
        key = self.key if isinstance(self.key, (int, str, float)) else str(self.key)
        return {"type": kind, "value": text, "key": key}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Cursor | None:
        if not data:
            return None
        kind, raw = data["type"], data["value"]
        value: CursorValue
        if kind == "timestamp":
            value = as_instant(dt.datetime.fromisoformat(raw))
        elif kind == "date":
            value = dt.date.fromisoformat(raw)
        elif kind == "decimal":
            value = Decimal(raw)
        else:
            value = raw
        return cls(value, data.get("key"))

    def __str__(self) -> str:
        shown = self.value.isoformat() if isinstance(self.value, dt.date) else str(self.value)
        return f"{shown} / key {self.key}"

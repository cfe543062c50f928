"""The pre-flight identity check of a whole run, before anything is sent.

Conflicts can span chunks (row 3 and row 900,000 share an email), so the check is run-wide, in two
passes that keep memory small:

1. every row adds a 64-bit hash of its row key and of each identifier to compact arrays (32 bytes
   a row); hashes that occur more than once are counted at C speed;
2. only the rows holding such a hash are fetched again (their chunks re-read) and resolved exactly
   by :func:`~.identity.resolve_conflicts` (should two values ever share a hash, the exact
   comparison finds no conflict). A run without duplicates never does the second pass.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any

from airflow_provider_contactsync.load.identity import ContactIds, RunRow, Verdict, normalize_phone, resolve_conflicts

_PARTITION = 1 << 20
"""Hashes counted at once: bounds the counter's memory (~60 MB) however large the run."""


def _hash(value: object) -> int:
    """A non-zero hash (0 stands for "no value")."""
    return hash(value) or 1


_EMPTY: dict[str, Any] = {}


class Preflight:
    """Collects a run's identities (pass one), then finds the rows that must not be loaded (pass two)."""

    def __init__(self) -> None:
        self._columns = [array("q") for _ in range(4)]  # row key (keyed sources), email, EXT_ID, SMS
        self._append = [column.append for column in self._columns]

    def __len__(self) -> int:
        return len(self._columns[0])

    def add(self, identity: str, ids: ContactIds) -> None:
        """Add the next row of the run (in run order)."""
        key, email, ext_id, sms = self._append
        key(_hash(identity[2:]) if identity.startswith("K:") else 0)
        email(_hash(ids[0]) if ids[0] is not None else 0)
        ext_id(_hash(ids[1]) if ids[1] is not None else 0)
        sms(_hash(ids[2]) if ids[2] is not None else 0)

    def add_chunk(self, chunk: Iterable[tuple[Any, dict[str, Any]]], *, keyed: bool) -> None:
        """Add the contacts of a chunk, ``(row key, import item)`` pairs: :meth:`add` at a third of its cost."""
        key_, email_, ext_id_, sms_ = self._append
        for key, item in chunk:
            key_(_hash(str(key)) if keyed and key is not None else 0)
            email = item.get("email")
            email_(_hash(email.strip().lower()) if type(email) is str and email else 0)
            attributes = item.get("attributes") or _EMPTY
            ext_id = attributes.get("EXT_ID")
            ext_id_(_hash(str(ext_id)) if ext_id is not None and ext_id != "" else 0)
            sms = attributes.get("SMS")
            sms_(_hash(normalize_phone(sms)) if sms else 0)

    def candidates(self) -> list[int]:
        """Positions of the rows holding a hash another row holds too, in run order."""
        involved: set[int] = set()
        for index, column in enumerate(self._columns):
            if any(column == other for other in self._columns[:index]):
                continue  # the same hashes as an earlier column (EXT_ID mapped from the row key, say)
            shared = _shared(column)
            if shared:
                involved.update(compress(range(len(column)), map(shared.__contains__, column)))
        return sorted(involved)

    def conflicts(self, fetch: Callable[[list[int]], Iterable[RunRow]]) -> list[Verdict]:
        """Verdicts for the rows that must not be loaded; ``fetch(positions)`` gives those rows back."""
        positions = self.candidates()
        return resolve_conflicts(fetch(positions)) if positions else []


def _shared(column: array) -> set[int]:
    """Hashes that occur more than once in a column (0, "no value", excepted)."""
    if not any(column):
        return set()
    parts: Sequence[array] = [column]
    if len(column) > _PARTITION:
        count = 1
        while count * _PARTITION < len(column):
            count *= 2
        mask = count - 1
        parts = [array("q") for _ in range(count)]
        appends = [part.append for part in parts]
        for value in column:
            appends[value & mask](value)
    shared: set[int] = set()
    for part in parts:
        shared.update(value for value, times in Counter(part).items() if times > 1)
    shared.discard(0)
    return shared


def find_conflicts(rows: Iterable[RunRow]) -> list[Verdict]:
    """The run-wide check over rows held in memory (a preview's sample, tests)."""
    kept: list[RunRow] = []
    preflight = Preflight()
    for row in rows:
        kept.append(row)
        preflight.add(row.identity, row.ids)
    return preflight.conflicts(lambda positions: [kept[p] for p in positions])

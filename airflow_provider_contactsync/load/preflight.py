"""The pre-flight identity check of a whole run, before anything is sent.

Conflicts can span chunks (row 3 and row 900,000 share an email), so the check is run-wide, in two
passes that keep memory small:

1. every contact contributes 64-bit hashes of its row key and identifiers (32 bytes a contact,
   :class:`~airflow_provider_contactsync.core.identifiers.IdentityColumns`, computed by the map
   task next to each chunk); hashes that occur more than once are counted at C speed;
2. only the contacts holding such a hash are fetched again (their chunks re-read) and resolved
   exactly by :func:`~.identity.resolve_conflicts` (should two values ever share a hash, the exact
   comparison finds no conflict). A run without duplicates never does the second pass.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any

from airflow_provider_contactsync.core.identifiers import IdentityColumns
from airflow_provider_contactsync.load.identity import ContactIds, RunRow, Verdict, resolve_conflicts

_PARTITION = 1 << 20
"""Hashes counted at once: bounds the counter's memory (~60 MB) however large the run."""


class Preflight:
    """Collects a run's identities (pass one), then finds the rows that must not be loaded (pass two)."""

    def __init__(self) -> None:
        self.identities = IdentityColumns()

    def __len__(self) -> int:
        return len(self.identities)

    def add(self, identity: str, ids: ContactIds) -> None:
        """Add the next contact of the run (in run order)."""
        key = identity[2:] if identity.startswith("K:") else None
        self.identities.add(key, *ids)

    def add_chunk(self, chunk: Iterable[tuple[Any, dict[str, Any]]], *, keyed: bool) -> None:
        """Add a staged chunk's contacts, ``(row key, import item)`` pairs."""
        self.identities.add_chunk(chunk, keyed=keyed)

    def add_identities(self, identities: IdentityColumns) -> None:
        """Add a chunk's contacts as the map task hashed them."""
        self.identities.extend(identities)

    def candidates(self) -> list[int]:
        """Positions of the contacts holding a hash another contact holds too, in run order."""
        involved: set[int] = set()
        columns = self.identities.columns
        for index, column in enumerate(columns):
            if any(column == other for other in columns[:index]):
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
        parts = [array("Q") for _ in range(count)]
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

"""Transform and map, row by row: every row comes out as a contact or as rejects with reasons.

The pipeline is compiled once per run (formulas, mapping plan) and then applied to chunks of
rows; it holds no per-row state, so memory stays flat however many rows pass through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import Reject, RowError
from airflow_provider_contactsync.core.mapping import Contact, ContactMapper
from airflow_provider_contactsync.core.spec.models import SourceDefinition

MAX_VALUE_LENGTH = 200
"""Values quoted in error reports are cut to this many characters."""


@dataclass(slots=True)
class RowOutcome:
    """What became of one source row: ``contact`` when loadable, else ``rejects`` say why."""

    index: int
    key: Any
    contact: Contact | None
    rejects: list[Reject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.contact is not None


class ContactPipeline:
    """Formulas then mapping, compiled once.

    :param definition: the source definition.
    :param catalog: the Brevo account's attributes (checked against the mapping now, not per row).
    """

    def __init__(self, definition: SourceDefinition, catalog: AttributeCatalog) -> None:
        from airflow_provider_contactsync.core.formulas import compile_transform

        self.definition = definition
        self.transform = compile_transform(definition.transform, definition.source.fields)
        self.mapper = ContactMapper(definition, catalog, self.transform.result_types)
        self._key_field = definition.source.key

    def process(self, rows: Iterable[dict[str, Any] | RowError], *, start: int = 1) -> Iterator[RowOutcome]:
        """Yield one outcome per input row, in order; ``start`` is the 1-based index of the first row."""
        apply = self.transform.apply
        map_row = self.mapper.map_row
        key_field = self._key_field
        for index, row in enumerate(rows, start=start):
            if isinstance(row, RowError):
                key = index if row.row is None else row.row
                yield RowOutcome(index, key, None, [Reject(key, row.field, _show(row.value), row.reason)])
                continue
            key = row.get(key_field, index) if key_field else index
            transformed, problems = apply(row)
            contact, mapping_problems = map_row(transformed)
            if not problems and not mapping_problems:
                yield RowOutcome(index, key, contact, [])
                continue
            if problems:
                # A failed formula leaves its field empty: don't also blame the row for lacking an identifier.
                mapping_problems = [p for p in mapping_problems if p.field is not None]
            rejects = [Reject(key, p.field, _show(p.value), p.reason) for p in problems + mapping_problems]
            yield RowOutcome(index, key, None, rejects)


def transform_rows(
    transform: Any, rows: Iterable[dict[str, Any] | RowError], *, key_field: str | None, start: int
) -> tuple[list[tuple[Any, dict[str, Any]]], list[Reject], int]:
    """One chunk through the formulas: ``(key, row)`` pairs that passed, rejects, rejected-row count."""
    passed: list[tuple[Any, dict[str, Any]]] = []
    rejects: list[Reject] = []
    rejected = 0
    apply = transform.apply
    for index, row in enumerate(rows, start=start):
        if isinstance(row, RowError):
            rejected += 1
            rejects.append(Reject(index if row.row is None else row.row, row.field, _show(row.value), row.reason))
            continue
        key = row.get(key_field, index) if key_field else index
        transformed, problems = apply(row)
        if problems:
            rejected += 1
            rejects.extend(Reject(key, p.field, _show(p.value), p.reason) for p in problems)
        else:
            passed.append((key, transformed))
    return passed, rejects, rejected


def map_rows(
    mapper: ContactMapper, rows: Iterable[tuple[Any, dict[str, Any]]]
) -> tuple[list[tuple[Any, Contact]], list[Reject], int]:
    """One chunk of transformed rows to contacts: ``(key, contact)`` pairs, rejects, rejected-row count."""
    contacts: list[tuple[Any, Contact]] = []
    rejects: list[Reject] = []
    rejected = 0
    map_row = mapper.map_row
    for key, row in rows:
        contact, problems = map_row(row)
        if problems:
            rejected += 1
            rejects.extend(Reject(key, p.field, _show(p.value), p.reason) for p in problems)
        else:
            contacts.append((key, contact))
    return contacts, rejects, rejected


def _show(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[: MAX_VALUE_LENGTH - 1] + "…"

"""Transform and map, row by row: every row comes out as a contact or as rejects with reasons.

The pipeline is compiled once per run (formulas, mapping plan) and then applied to chunks of
rows; it holds no per-row state, so memory stays flat however many rows pass through.

Only formulas whose field something reads can reject a row (:func:`field_use`): a failing formula
for a field that no mapping and no payload uses leaves the field null and is counted instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import Reject, RowError
from airflow_provider_contactsync.core.mapping import Contact, ContactMapper
from airflow_provider_contactsync.core.spec.models import IDENTIFIER_ATTRIBUTES, SourceDefinition
from airflow_provider_contactsync.core.sync_rules import SYNC_KEY, SyncRules

if TYPE_CHECKING:
    from airflow_provider_contactsync.core.formulas import Transform

MAX_VALUE_LENGTH = 200
"""Values quoted in error reports are cut to this many characters."""


@dataclass(frozen=True, slots=True)
class FieldUse:
    """What reads a transform's output fields, which decides how strict each formula is.

    :ivar needed: fields the mapping or the payload reads: a formula failing on one rejects the row.
    :ivar identifiers: fields mapped to EMAIL, SMS or EXT_ID: their formulas keep CEL's ``+``, where
        null + string is an error, so a missing part never makes a different, valid identifier.
    """

    needed: frozenset[str]
    identifiers: frozenset[str]


def field_use(definition: SourceDefinition) -> FieldUse:
    """The fields a definition's mapping and payload read."""
    needed = set(definition.mapping)
    if definition.payload is not None:
        needed.add(definition.payload.field)
    identifiers = {name for name, attribute in definition.mapping.items() if attribute in IDENTIFIER_ATTRIBUTES}
    return FieldUse(frozenset(needed), frozenset(identifiers))


def compile_for(definition: SourceDefinition) -> Transform:
    """The definition's transform, compiled with the strictness its mapping needs (:func:`field_use`)."""
    from airflow_provider_contactsync.core.formulas import compile_transform

    use = field_use(definition)
    return compile_transform(
        definition.transform, definition.source.fields, needed=use.needed, strict_concat=use.identifiers
    )


@dataclass(slots=True)
class RowOutcome:
    """What became of one source row: ``contact`` when loadable, else ``rejects`` say why.

    ``tolerated`` holds the failures of formulas whose field nothing reads: they left the field null
    and did not reject the row.
    """

    index: int
    key: Any
    contact: Contact | None
    rejects: list[Reject] = field(default_factory=list)
    tolerated: list[Reject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.contact is not None


class ContactPipeline:
    """Formulas then mapping, compiled once.

    :param definition: the source definition.
    :param catalog: the Brevo account's attributes (checked against the mapping now, not per row).
    """

    def __init__(self, definition: SourceDefinition, catalog: AttributeCatalog) -> None:
        self.definition = definition
        self.transform = compile_for(definition)
        self.mapper = ContactMapper(definition, catalog, self.transform.result_types)
        self._key_field = definition.source.key
        rules = SyncRules.compile(definition)
        self.rules = None if rules.empty else rules

    def process(self, rows: Iterable[dict[str, Any] | RowError], *, start: int = 1) -> Iterator[RowOutcome]:
        """Yield one outcome per input row, in order; ``start`` is the 1-based index of the first row."""
        apply, split = self.transform.apply, self.transform.split
        map_row = self.mapper.map_row
        key_field = self._key_field
        for index, row in enumerate(rows, start=start):
            if isinstance(row, RowError):
                key = index if row.row is None else row.row
                yield RowOutcome(index, key, None, [Reject(key, row.field, _show(row.value), row.reason)])
                continue
            key = row.get(key_field, index) if key_field else index
            transformed, problems = apply(row)
            tolerated: list[Reject] = []
            if problems:
                problems, skipped = split(problems)
                tolerated = [Reject(key, p.field, _show(p.value), p.reason) for p in skipped]
            if self.rules is None:
                contact, mapping_problems = map_row(transformed)
            else:
                contact, mapping_problems = _apply_rules(self.mapper, self.rules, transformed)
            if not problems and not mapping_problems:
                yield RowOutcome(index, key, contact, [], tolerated)
                continue
            if problems:
                # A failed formula leaves its field empty: don't also blame the row for lacking an identifier.
                mapping_problems = [p for p in mapping_problems if p.field is not None]
            rejects = [Reject(key, p.field, _show(p.value), p.reason) for p in problems + mapping_problems]
            yield RowOutcome(index, key, None, rejects, tolerated)


class TransformedChunk(NamedTuple):
    """One chunk through the formulas.

    :ivar passed: ``(key, row)`` pairs of the rows that passed.
    :ivar rejects: why the other rows were rejected.
    :ivar rejected: how many rows were rejected.
    :ivar tolerated: per output field, rows where its formula failed but nothing reads the field
        (left null; the row passed).
    """

    passed: list[tuple[Any, dict[str, Any]]]
    rejects: list[Reject]
    rejected: int
    tolerated: dict[str, int]


def transform_rows(
    transform: Transform, rows: Iterable[dict[str, Any] | RowError], *, key_field: str | None, start: int
) -> TransformedChunk:
    """One chunk through the formulas; a row is rejected only by formulas outside ``transform.tolerated``."""
    passed: list[tuple[Any, dict[str, Any]]] = []
    rejects: list[Reject] = []
    rejected = 0
    tolerated: dict[str, int] = {}
    apply, split = transform.apply, transform.split
    for index, row in enumerate(rows, start=start):
        if isinstance(row, RowError):
            rejected += 1
            rejects.append(Reject(index if row.row is None else row.row, row.field, _show(row.value), row.reason))
            continue
        key = row.get(key_field, index) if key_field else index
        transformed, problems = apply(row)
        if problems:
            problems, skipped = split(problems)
            for problem in skipped:
                tolerated[problem.field] = tolerated.get(problem.field, 0) + 1
        if problems:
            rejected += 1
            rejects.extend(Reject(key, p.field, _show(p.value), p.reason) for p in problems)
        else:
            passed.append((key, transformed))
    return TransformedChunk(passed, rejects, rejected, tolerated)


def map_rows(
    mapper: ContactMapper, rows: Iterable[tuple[Any, dict[str, Any]]], rules: SyncRules | None = None
) -> tuple[list[tuple[Any, Contact]], list[Reject], int]:
    """One chunk of transformed rows to contacts: ``(key, contact)`` pairs, rejects, rejected-row count.

    With ``rules`` (:mod:`.sync_rules`), each contact carries its intent under ``SYNC_KEY``; a row
    ``source.deleted_when`` marks deleted keeps only its identifiers.
    """
    contacts: list[tuple[Any, Contact]] = []
    rejects: list[Reject] = []
    rejected = 0
    map_row = mapper.map_row
    if rules is not None and rules.empty:
        rules = None
    for key, row in rows:
        if rules is None:
            contact, problems = map_row(row)
        else:
            contact, problems = _apply_rules(mapper, rules, row)
        if problems:
            rejected += 1
            rejects.extend(Reject(key, p.field, _show(p.value), p.reason) for p in problems)
        else:
            contacts.append((key, contact))
    return contacts, rejects, rejected


def _apply_rules(mapper: ContactMapper, rules: SyncRules, row: dict[str, Any]) -> tuple[Contact, list[RowError]]:
    deleted, problem = rules.deleted(row)
    if problem is not None:
        return {}, [problem]
    if deleted:
        contact, problems = mapper.map_identifiers(row)
        contact[SYNC_KEY] = {"delete": True}
        return contact, problems
    contact, problems = mapper.map_row(row)
    intent, rule_problems = rules.intent(row)
    if intent:
        contact[SYNC_KEY] = intent
    return contact, problems + rule_problems


def _show(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[: MAX_VALUE_LENGTH - 1] + "…"

"""Field -> attribute mapping: checked once against the account, then applied to every row.

At load time a mapping that cannot work (an attribute the account lacks, a read-only one, a
formula whose type cannot fit the attribute) is a :class:`MappingError`. Per row, every mapped
value is checked; a row with any bad value, or with no identifier, is rejected whole, with one
reason per field, so nothing is half-loaded and nothing is silently dropped.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from airflow_provider_contactsync.core.attributes import FITS, AttributeCatalog, converter_for
from airflow_provider_contactsync.core.errors import ConfigurationError, MappingError, MappingErrors, RowError
from airflow_provider_contactsync.core.payload import PayloadExpander
from airflow_provider_contactsync.core.spec.models import IDENTIFIER_ATTRIBUTES, SourceDefinition
from airflow_provider_contactsync.core.sync_rules import SYNC_KEY

Contact = dict[str, Any]
"""A contact as flat ``{ATTRIBUTE: value}``, identifiers included (EMAIL, SMS, EXT_ID)."""


class ContactMapper:
    """Turns transformed rows into Brevo contacts, rejecting what Brevo would silently drop.

    :param definition: the source definition (mapping and destination options).
    :param catalog: the account's attributes.
    :param result_types: static CEL type of each transformed field (``dyn`` when unknown).
    """

    def __init__(
        self,
        definition: SourceDefinition,
        catalog: AttributeCatalog,
        result_types: Mapping[str, str] | None = None,
    ) -> None:
        result_types = result_types or {}
        errors: list[ConfigurationError] = []
        self._plan: list[tuple[str, str, Any]] = []
        for field, name in definition.mapping.items():
            attribute = catalog.get(name)
            key_path = f"mapping.{field}"
            if attribute is None:
                hint = difflib.get_close_matches(name, catalog.names(), n=1)
                suggestion = f" (did you mean {hint[0]}?)" if hint else ""
                errors.append(
                    MappingError(f"attribute {name} does not exist in the Brevo account{suggestion}", key_path=key_path)
                )
                continue
            if not attribute.writable:
                errors.append(
                    MappingError(
                        f"attribute {name} is {attribute.category}/{attribute.type}: Brevo computes it, "
                        "it cannot be written",
                        key_path=key_path,
                    )
                )
                continue
            formula_type = result_types.get(field, "dyn")
            if formula_type not in FITS.get(attribute.kind, frozenset()):
                errors.append(
                    MappingError(
                        f"field {field} is a {formula_type}, which cannot fit attribute {name} ({attribute.kind})",
                        key_path=key_path,
                    )
                )
                continue
            converter = converter_for(attribute, text_max_length=definition.destination.text_max_length)
            self._plan.append((field, name, converter))
        if errors:
            raise errors[0] if len(errors) == 1 else MappingErrors(errors)
        self._identifiers = [name for _, name, _ in self._plan if name in IDENTIFIER_ATTRIBUTES]
        self._identifier_plan = [entry for entry in self._plan if entry[1] in IDENTIFIER_ATTRIBUTES]
        self.keyed = definition.source.key is not None
        self._erase_nulls = definition.destination.empty_attributes
        self._payload = (
            PayloadExpander(
                definition.payload,
                catalog,
                mapped=self.attributes,
                text_max_length=definition.destination.text_max_length,
                erase_nulls=self._erase_nulls,
            )
            if definition.payload is not None
            else None
        )

    @property
    def attributes(self) -> list[str]:
        return [name for _, name, _ in self._plan]

    def map_row(self, row: Mapping[str, Any]) -> tuple[Contact, list[RowError]]:
        """Return the contact and the problems; the row is loadable only when the list is empty."""
        contact: Contact = {}
        problems: list[RowError] = []
        for field, name, convert in self._plan:
            value = row.get(field)
            if value is None:
                if self._erase_nulls and name not in IDENTIFIER_ATTRIBUTES:
                    contact[name] = ""
                continue
            try:
                contact[name] = convert(value)
            except RowError as exc:
                problems.append(RowError(exc.reason, field=field, value=value))
        if self._payload is not None:
            expanded, payload_problems = self._payload.expand(row.get(self._payload.field))
            contact.update(expanded)
            problems += payload_problems
        if not problems and not any(name in contact for name in self._identifiers):
            problems.append(
                RowError(f"no identifier: {', '.join(self._identifiers)} all empty", field=None, value=None)
            )
        return contact, problems

    def map_identifiers(self, row: Mapping[str, Any]) -> tuple[Contact, list[RowError]]:
        """Only the identifiers of a row (a row deleted in the source: its other values no longer matter)."""
        contact: Contact = {}
        problems: list[RowError] = []
        for field, name, convert in self._identifier_plan:
            value = row.get(field)
            if value is None:
                continue
            try:
                contact[name] = convert(value)
            except RowError as exc:
                problems.append(RowError(exc.reason, field=field, value=value))
        if not problems and not contact and not self.keyed:
            problems.append(
                RowError(
                    f"deleted in the source, but no identifier says which contact: {', '.join(self._identifiers)} "
                    "all empty",
                    field=None,
                    value=None,
                )
            )
        return contact, problems


def to_import_item(contact: Contact) -> dict[str, Any]:
    """Flat contact -> one ``jsonBody`` item of ``POST /contacts/import`` (email apart, rest attributes).

    The contact's sync intent (:data:`~.sync_rules.SYNC_KEY`), when it has one, stays beside them.
    """
    attributes = dict(contact)
    email = attributes.pop("EMAIL", None)
    intent = attributes.pop(SYNC_KEY, None)
    item = {"attributes": attributes} if email is None else {"attributes": attributes, "email": email}
    if intent:
        item[SYNC_KEY] = intent
    return item

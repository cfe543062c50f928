"""A JSON payload field expanded into contact attributes, key by key.

Warehouse syncs (Braze's Cloud Data Ingestion among them) let a table carry one ``PAYLOAD`` column of
JSON whose keys are attributes, so adding an attribute needs no schema change and no new mapping
line. Here each key is upper-cased into an attribute name and its value goes through the same
per-attribute checks as a mapped field; a key the account cannot store rejects the row with the key
named, so nothing is dropped silently. An allow-list (``payload.attributes``) turns the other keys
into deliberate omissions instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from airflow_provider_contactsync.core.attributes import AttributeCatalog, Converter, converter_for
from airflow_provider_contactsync.core.errors import MappingError, MappingErrors, RowError
from airflow_provider_contactsync.core.rows import ReadLimits, parse_json
from airflow_provider_contactsync.core.spec.models import ATTRIBUTE_PATTERN, IDENTIFIER_ATTRIBUTES, Payload

_ATTRIBUTE = re.compile(ATTRIBUTE_PATTERN)
MAX_KEY_PROBLEMS = 20
"""Problems named per payload; a payload of a million unknown keys rejects its row with 20 and a count."""


class PayloadExpander:
    """Turns one payload value into ``{ATTRIBUTE: value}``, checked against the account's attributes.

    :param payload: the definition's ``payload`` block.
    :param catalog: the account's attributes.
    :param mapped: attributes the mapping already sets; they win over payload keys of the same name.
    :param text_max_length: longest text value accepted (the destination's setting).
    :param erase_nulls: a null value erases the attribute (``destination.empty_attributes``).
    """

    def __init__(
        self,
        payload: Payload,
        catalog: AttributeCatalog,
        *,
        mapped: Collection[str],
        text_max_length: int,
        erase_nulls: bool,
    ) -> None:
        self.field = payload.field
        self._catalog = catalog
        self._mapped = frozenset(mapped)
        self._text_max_length = text_max_length
        self._erase_nulls = erase_nulls
        self._allowed = frozenset(payload.attributes) if payload.attributes is not None else None
        self._converters: dict[str, Converter | str] = {}
        self._max_depth = ReadLimits.from_env().max_json_depth
        errors = [
            MappingError(reason, key_path="payload.attributes")
            for name in sorted(self._allowed or ())
            if isinstance(reason := self._converter(name), str)
        ]
        if errors:
            raise errors[0] if len(errors) == 1 else MappingErrors(errors)

    def expand(self, value: Any) -> tuple[dict[str, Any], list[RowError]]:
        """The attributes of one row's payload and the problems (the row is rejected when there are any)."""
        document, problem = _as_object(value, self._max_depth)
        if problem is not None:
            return {}, [RowError(problem, field=self.field, value=_short(value))]
        attributes: dict[str, Any] = {}
        problems: list[RowError] = []
        for key, item in document.items():
            name = str(key).upper()
            if name in self._mapped or (self._allowed is not None and name not in self._allowed):
                continue
            convert = self._converter(name)
            where = f"{self.field}.{key}"
            if len(problems) >= MAX_KEY_PROBLEMS:
                problems.append(RowError(f"and more payload keys not checked (the first {MAX_KEY_PROBLEMS} are shown)"))
                break
            if isinstance(convert, str):
                problems.append(RowError(f"payload key {key!r}: {convert}", field=where, value=item))
            elif item is None:
                if self._erase_nulls:
                    attributes[name] = ""
            else:
                try:
                    attributes[name] = convert(item)
                except RowError as exc:
                    problems.append(RowError(exc.reason, field=where, value=item))
        return attributes, problems

    def _converter(self, name: str) -> Converter | str:
        """The value check of attribute ``name``, or the reason it cannot be written (cached per name)."""
        known = self._converters.get(name)
        if known is not None:
            return known
        attribute = self._catalog.get(name)
        result: Converter | str
        if not _ATTRIBUTE.match(name):
            result = f"{name!r} cannot be an attribute name (letters, digits and _ only)"
        elif name in IDENTIFIER_ATTRIBUTES:
            result = f"{name} is an identifier: map it from a field in mapping, not from the payload"
        elif attribute is None:
            result = f"attribute {name} does not exist in the Brevo account"
        elif not attribute.writable:
            result = f"attribute {name} is {attribute.category}/{attribute.type}: Brevo computes it"
        else:
            result = converter_for(attribute, text_max_length=self._text_max_length)
        if len(self._converters) < 10_000:  # keys come from data: bound the cache
            self._converters[name] = result
        return result


def _as_object(value: Any, max_depth: int) -> tuple[dict[str, Any], str | None]:
    """A payload as a dict: JSON text is parsed; anything but an object is a reason to reject the row."""
    if value is None:
        return {}, None
    if isinstance(value, (str, bytes)):
        value, problem = parse_json(value, max_depth=max_depth)
        if problem is not None:
            return {}, f"payload is {problem}" if problem.startswith("not ") else f"payload: {problem}"
        if value is None:
            return {}, None
    if not isinstance(value, dict):
        return {}, f"payload is a {type(value).__name__}, not a JSON object"
    return value, None


def _short(value: Any, limit: int = 200) -> Any:
    """The payload shown in a reject: long text cut (a 10 MB payload is not copied into the error report)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return value[:limit] + ("..." if isinstance(value, str) else b"...")
    return value

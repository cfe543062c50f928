"""The four operators of a contactsync DAG: extract -> transform -> map -> load.

Each is a thin shell: it reads its input chunks from the staging store, calls the core, writes
its output chunks, and returns paths and counts through XCom (never the rows themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_contactsync.core.spec import SourceDefinition


class ContactsyncBaseOperator(BaseOperator):
    """Shared plumbing: the definition (a JSON dict, so the DAG serialises) and the staging base.

    :param definition: the source definition, as ``SourceDefinition.model_dump(mode="json")``.
    :param staging: ObjectStoragePath URL under which chunk files are written
        (default: ``[contactsync] staging`` config, else ``file://$AIRFLOW_HOME/contactsync/staging``).
    """

    template_fields: Sequence[str] = ("staging",)
    ui_color = "#e8f4fd"

    def __init__(self, *, definition: dict[str, Any], staging: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.definition = definition
        self.staging = staging

    @cached_property
    def spec(self) -> SourceDefinition:
        return SourceDefinition.model_validate(self.definition)


class ContactsyncExtractOperator(ContactsyncBaseOperator):
    """Read new or changed rows from the source into staged chunks.

    :param chunk_size: rows per chunk file.
    """

    def __init__(self, *, chunk_size: int = 50_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk_size = chunk_size

    def execute(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError


class ContactsyncTransformOperator(ContactsyncBaseOperator):
    """Apply the definition's formulas to every staged row."""

    def execute(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError


class ContactsyncMapOperator(ContactsyncBaseOperator):
    """Map transformed rows to Brevo contacts, checked against the account's attributes."""

    def execute(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError


class ContactsyncLoadOperator(ContactsyncBaseOperator):
    """Bulk-upsert the contacts into Brevo, then advance the cursor and return the run summary."""

    def execute(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError

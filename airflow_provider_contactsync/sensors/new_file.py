"""Wait for a new, completely uploaded file of a file source, without holding a worker slot.

The sensor runs in ``reschedule`` mode: between two looks at the folder it gives its worker slot
back and Airflow reschedules it. Each look also records what it saw, so ``ready.stable_seconds``
advances while waiting. When ``timeout`` passes with no new file the run ends as skipped.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_contactsync.operators.contactsync import DefinitionMixin, definition_asset


class ContactsyncNewFileSensor(DefinitionMixin, BaseSensorOperator):
    """Succeeds once a file source has a file to import (new or changed, and ready).

    :param definition: the source definition, as ``SourceDefinition.model_dump(mode="json")``.
    """

    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        definition: dict[str, Any],
        mode: str = "reschedule",
        soft_fail: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("inlets", [definition_asset(definition)])
        super().__init__(mode=mode, soft_fail=soft_fail, **kwargs)
        self.definition = definition

    def poke(self, context: Any) -> bool:
        from airflow_provider_contactsync.operators.file_pickup import describe_wait, look_for_files
        from airflow_provider_contactsync.sources import open_source
        from airflow_provider_contactsync.sources.files import FilesSource
        from airflow_provider_contactsync.state import SourceState

        source = open_source(self.spec.source)
        if not isinstance(source, FilesSource):
            raise TypeError(f"{self.task_id}: source type {self.spec.source.type!r} has no files to wait for")
        selection = look_for_files(source, SourceState(context, self.asset))
        if selection.ready:
            self.log.info("%d file(s) ready: %s", len(selection.ready), ", ".join(f.name for f in selection.ready))
            return True
        self.log.info("%s", describe_wait(source, selection))
        return False

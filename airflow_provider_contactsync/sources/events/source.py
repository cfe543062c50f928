"""The ``events`` source seen through the common :class:`~..base.Source` interface (CLI, dashboard).

Runs do not read an events source through :meth:`read`: their extract claims events from the queue and
the load acknowledges them (``operators/event_pickup.py``). Here are the parts every source offers:
the fields, and a connection test that reaches the queue and tells how many events wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.sources.base import Chunk, ReadWindow, Source


class EventsQueueSource(Source):
    """A shop's customer events in a durable queue (Redis stream or PostgreSQL table)."""

    tables_word = "queues"

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        raise ConfigurationError(
            f"source {self.spec.name!r}: an events source is read by its DAG's extract task, which claims "
            "events from the queue (a preview would take them from the sync); trigger the DAG with "
            "dry_run to see what a run would send",
            key_path="source.type",
        )

    def discover(self) -> list[str]:
        """The fields rows of this source have (the preset's and the definition's)."""
        return list(self.spec.fields)

    def test_connection(self) -> tuple[bool, str]:
        queue: Any = None
        try:
            from airflow_provider_contactsync.sources.events.backends import open_event_queue

            spec = self.spec
            queue = open_event_queue(
                spec.queue.backend, spec.queue.conn_id, integration=self.integration, source=spec.name,
                table=spec.queue.table,
            )  # fmt: skip
            return True, f"{spec.queue.backend} queue reached: {queue.depth()} event(s) waiting"
        except Exception as exc:  # an unreachable queue is an answer here, not a crash
            return False, f"cannot reach the {self.spec.queue.backend} queue with {self.spec.queue.conn_id!r}: {exc}"
        finally:
            close = getattr(queue, "close", None)
            if close is not None:
                close()

    #: The definition's integration (the queue's keys and default table include it); set by the caller.
    integration: str = ""

"""The durable queue between webhook intake and the sync: one interface, several backends.

Intake :meth:`EventQueue.put`s each delivery and answers the shop 2xx only once ``put`` returned (the
event is durable). A run :meth:`EventQueue.claim`s a batch, loads it, and :meth:`EventQueue.ack`s it
only after the load succeeded: a run that dies leaves its claims pending, and the next run gets them
again (:meth:`EventQueue.claim` returns stale claims first). Applying an event twice is harmless
downstream (events are deduplicated by id and ordered by time), so at-least-once delivery is enough.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One webhook delivery as received, before it is understood.

    :ivar delivery_id: unique per delivery: the platform's webhook/delivery id header, else a digest
        of the body. The queue stores a delivery id once.
    :ivar platform: ``custom``, ``shopify`` or ``woocommerce``.
    :ivar topic: the platform's topic header (``customers/update``, ``customer.updated``), if any.
    :ivar body: the raw JSON body as received (bytes).
    :ivar received_at: when intake accepted it (UTC).
    :ivar entry_id: the backend's id of the stored entry (stream id, row id); empty before ``put``.
    :ivar attempts: how many runs claimed it before (for backoff and the dead-letter list).
    """

    delivery_id: str
    platform: str
    topic: str | None
    body: bytes
    received_at: dt.datetime
    entry_id: str = ""
    attempts: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class EventQueue(Protocol):
    """What every backend offers (Redis Streams with a consumer group, a PostgreSQL table, ...)."""

    def put(self, event: QueuedEvent) -> bool:
        """Store durably; False when this delivery id is already stored (nothing added)."""

    def claim(self, consumer: str, *, max_events: int, stale_after_seconds: float) -> list[QueuedEvent]:
        """Up to ``max_events`` events for ``consumer``: claims older than ``stale_after_seconds`` left by a
        consumer that died first, then new ones; claimed events stay pending until acked."""

    def ack(self, entry_ids: Sequence[str]) -> None:
        """These events are done (loaded, or dead-lettered): never claimed again."""

    def dead_letter(self, event: QueuedEvent, reason: str) -> None:
        """Move an event that keeps failing aside, with its reason, and ack it."""

    def dead_letters(self, *, limit: int = 100) -> list[tuple[QueuedEvent, str]]:
        """The latest dead-lettered events with their reasons (for the report and the dashboard)."""

    def depth(self) -> int:
        """Events waiting: not acked (pending claims included)."""

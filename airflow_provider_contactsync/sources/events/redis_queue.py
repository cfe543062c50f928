"""The events queue on Redis Streams, through the official provider's ``RedisHook``.

Keys of one source (the ``{...}`` hash tag keeps them in one cluster slot, so the Lua script and the
MULTI blocks below may touch them together):

- ``contactsync:events:{<integration>:<source>}``: the stream; entries hold ``delivery_id``,
  ``platform``, ``topic`` (absent when None), ``body`` (raw bytes), ``received_at`` (ISO 8601) and
  ``headers`` (JSON). Consumer group ``contactsync``.
- ``contactsync:events:{<integration>:<source>}:delivery:<delivery_id>``: the dedup marker (value:
  the entry id), with a TTL (7 days by default): the same delivery within the TTL is stored once.
- ``contactsync:events:{<integration>:<source>}:dead``: the dead-letter stream: the event's fields
  plus ``entry_id``, ``attempts``, ``reason`` and ``dead_at``; capped at about ``dead_letter_maxlen``.

Atomicity: ``put`` is one Lua script (check marker, XADD, SET marker with TTL): Redis runs a script
as one unit and writes its effects to the AOF/replicas together, so a crash cannot leave an entry
without its marker (a retried delivery duplicated) or a marker without its entry (a delivery lost).
``dead_letter`` and ``ack`` are MULTI/EXEC transactions. Durability is Redis's own: ``put`` returns
once the server applied the write; for "2xx only when durable" run Redis with ``appendonly yes`` and
``appendfsync always`` (``everysec`` may lose the last second on a power cut).

Acked entries are XDEL'd by default (``delete_acked``), so the stream holds only waiting events and
does not grow; the dedup markers outlive them for their TTL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_contactsync.sources.events.queue import QueuedEvent

GROUP = "contactsync"
KEY_PREFIX = "contactsync:events"
DEDUP_TTL_SECONDS = 7 * 24 * 3600
DEAD_LETTER_MAXLEN = 100_000
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

# KEYS[1] stream, KEYS[2] dedup marker; ARGV[1] TTL (s), ARGV[2..] field/value pairs for XADD.
_PUT_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return id
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(event: QueuedEvent) -> list[Any]:
    fields: list[Any] = [
        "delivery_id",
        event.delivery_id,
        "platform",
        event.platform,
        "body",
        event.body,
        "received_at",
        event.received_at.isoformat(),
        "headers",
        json.dumps(event.headers, sort_keys=True),
    ]
    if event.topic is not None:
        fields += ["topic", event.topic]
    return fields


def _event(entry_id: Any, fields: dict[Any, Any], attempts: int) -> QueuedEvent:
    values = {_text(key): value for key, value in fields.items()}
    topic = values.get("topic")
    return QueuedEvent(
        delivery_id=_text(values["delivery_id"]),
        platform=_text(values["platform"]),
        topic=None if topic is None else _text(topic),
        body=bytes(values["body"]),
        received_at=dt.datetime.fromisoformat(_text(values["received_at"])),
        entry_id=_text(entry_id),
        attempts=attempts,
        headers=json.loads(values.get("headers") or b"{}"),
    )


class RedisStreamQueue:
    """One source's events in a Redis stream with a consumer group (see the module's docstring).

    :param conn_id: the Airflow connection for ``RedisHook``.
    :param integration: the integration's name (part of the keys).
    :param source: the source's name (part of the keys).
    :param dedup_ttl_seconds: how long a delivery id is remembered after ``put``.
    :param delete_acked: XDEL entries once acked (the stream then holds only waiting events).
    :param dead_letter_maxlen: the dead-letter stream is trimmed to about this many entries.
    """

    def __init__(
        self,
        conn_id: str,
        *,
        integration: str,
        source: str,
        dedup_ttl_seconds: int = DEDUP_TTL_SECONDS,
        delete_acked: bool = True,
        dead_letter_maxlen: int = DEAD_LETTER_MAXLEN,
    ) -> None:
        for what, name in (("integration", integration), ("source", source)):
            if not _NAME.fullmatch(name):
                raise ValueError(f"{what} name {name!r} for a Redis events queue: use letters, digits, '_', '.', '-'")
        self.conn_id = conn_id
        self.stream = f"{KEY_PREFIX}:{{{integration}:{source}}}"
        self.dead_stream = f"{self.stream}:dead"
        self.dedup_ttl_seconds = int(dedup_ttl_seconds)
        self.delete_acked = delete_acked
        self.dead_letter_maxlen = dead_letter_maxlen
        self._client: Any = None
        self._put_script: Any = None
        self._group_ready = False

    def dedup_key(self, delivery_id: str) -> str:
        return f"{self.stream}:delivery:{delivery_id}"

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client from ``RedisHook`` (thread-safe: it has a connection pool)."""
        if self._client is None:
            from airflow.providers.redis.hooks.redis import RedisHook

            self._client = RedisHook(redis_conn_id=self.conn_id).get_conn()
            self._put_script = self._client.register_script(_PUT_SCRIPT)
        return self._client

    def _ensure_group(self) -> None:
        """Create the stream and the group (from the stream's start, so nothing put before is missed)."""
        if self._group_ready:
            return
        from redis.exceptions import ResponseError

        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def put(self, event: QueuedEvent) -> bool:
        self._ensure_group()
        entry_id = self._put_script(
            keys=[self.stream, self.dedup_key(event.delivery_id)], args=[self.dedup_ttl_seconds, *_fields(event)]
        )
        return entry_id is not None

    def claim(self, consumer: str, *, max_events: int, stale_after_seconds: float) -> list[QueuedEvent]:
        """Stale pending entries first (XAUTOCLAIM), then new ones (XREADGROUP ``>``).

        ``attempts`` is the entry's delivery counter minus this delivery (XPENDING).
        """
        self._ensure_group()
        if max_events <= 0:
            return []
        client = self.client
        claimed: list[tuple[Any, dict[Any, Any]]] = []
        gone: list[Any] = []
        cursor: Any = "0-0"
        min_idle_ms = max(0, int(stale_after_seconds * 1000))
        while len(claimed) < max_events:
            cursor, entries, deleted = client.xautoclaim(
                self.stream, GROUP, consumer, min_idle_ms, start_id=cursor, count=max_events - len(claimed)
            )
            claimed += [(entry_id, fields) for entry_id, fields in entries if fields]
            gone += deleted
            if _text(cursor) == "0-0":
                break
        if gone:  # pending ids whose entries were deleted: nothing to deliver, drop them from the PEL
            client.xack(self.stream, GROUP, *gone)
        counts: dict[str, int] = {}
        if claimed:
            pipe = client.pipeline(transaction=False)
            for entry_id, _ in claimed:
                pipe.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id, count=1)
            for found in pipe.execute():
                for item in found:
                    counts[_text(item["message_id"])] = int(item["times_delivered"])
        events = [_event(entry_id, fields, counts.get(_text(entry_id), 1) - 1) for entry_id, fields in claimed]
        if len(events) < max_events:
            answer = client.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=max_events - len(events))
            for _stream, entries in answer or []:
                events += [_event(entry_id, fields, 0) for entry_id, fields in entries]
        return events

    def ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, *entry_ids)
        if self.delete_acked:
            pipe.xdel(self.stream, *entry_ids)
        pipe.execute()

    def dead_letter(self, event: QueuedEvent, reason: str) -> None:
        """XADD to the dead-letter stream and ack, in one MULTI/EXEC."""
        if not event.entry_id:
            raise ValueError(f"dead_letter needs a claimed event (delivery {event.delivery_id!r} has no entry id)")
        fields = _fields(event) + [
            "entry_id",
            event.entry_id,
            "attempts",
            event.attempts,
            "reason",
            reason,
            "dead_at",
            dt.datetime.now(dt.timezone.utc).isoformat(),
        ]
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.dead_stream, dict(zip(fields[::2], fields[1::2], strict=True)), maxlen=self.dead_letter_maxlen)
        pipe.xack(self.stream, GROUP, event.entry_id)
        if self.delete_acked:
            pipe.xdel(self.stream, event.entry_id)
        pipe.execute()

    def dead_letters(self, *, limit: int = 100) -> list[tuple[QueuedEvent, str]]:
        """The latest first."""
        letters = []
        for _dead_id, fields in self.client.xrevrange(self.dead_stream, count=limit):
            values = {_text(key): value for key, value in fields.items()}
            event = _event(values["entry_id"], fields, int(values.get("attempts", 0)))
            letters.append((event, _text(values["reason"])))
        return letters

    def depth(self) -> int:
        """Pending (claimed, not acked) + not yet delivered to the group (XINFO GROUPS ``lag``)."""
        self._ensure_group()
        client = self.client
        for group in client.xinfo_groups(self.stream):
            if _text(group["name"]) != GROUP:
                continue
            lag = group.get("lag")
            if lag is None:  # Redis cannot tell (deletions ahead of the group): count the undelivered entries
                lag = self._count_after(group["last-delivered-id"])
            return int(group["pending"]) + int(lag)
        return 0

    def _count_after(self, last_id: Any, page: int = 1000) -> int:
        count, start = 0, f"({_text(last_id)}"
        while True:
            entries = self.client.xrange(self.stream, min=start, count=page)
            count += len(entries)
            if len(entries) < page:
                return count
            start = f"({_text(entries[-1][0])}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

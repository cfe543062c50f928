"""Realtime wake-ups: the intake publishes on a Redis channel, an AssetWatcher in the triggerer listens.

A ``sync_mode: realtime`` events source's DAG is scheduled on :func:`wake_asset`, an Asset whose
watcher runs what the common-messaging ``MessageQueueTrigger`` (scheme ``redis+pubsub``) stores: the
Redis provider's ``AwaitMessageTrigger`` on :func:`wake_channel` (without importing the former, see
:func:`_wake_trigger_class`). The intake calls
:func:`publish_wake` after each new event is durable in the queue. A wake-up carries no event: it only
says "look at the queue"; the run drains whatever is queued.

Pub/sub is fire-and-forget: a wake published while nobody listens (the triggerer restarting the
watcher after each event, or down) is gone. Nothing is lost with it (the event is in the queue), it is
only late: the definition's ``schedule``, when not manual, sweeps the queue (see
docs/adr/0010-customer-events.md, "Realtime: what Airflow does").

Imports of Airflow and providers stay inside the functions: this module is imported by the intake and,
for realtime definitions only, while a DAG file is parsed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "contactsync:wake"
WAKE_INTERVAL_SECONDS = 0.25
"""Per source and process, at most one publish per interval; the last wake of a burst is never dropped."""
POLL_INTERVAL_SECONDS = 0.5
"""How long the watcher sleeps between two reads of its subscription (the Redis trigger's default is 60 s)."""
SOCKET_TIMEOUT_SECONDS = 2.0
"""Connect and read timeout of the publishing client: a Redis that does not answer costs a wake, never a hang."""


def wake_channel(integration: str, source: str) -> str:
    """The pub/sub channel of one source: ``contactsync:wake:<integration>:<source>``."""
    return f"{CHANNEL_PREFIX}:{integration}:{source}"


REDIS_PUBSUB_TRIGGER = "airflow.providers.redis.triggers.redis_await_message.AwaitMessageTrigger"
"""What ``MessageQueueTrigger(scheme="redis+pubsub", ...)`` serializes to: the trigger the triggerer runs."""


_WAKE_TRIGGER: type | None = None


def _wake_trigger_class() -> type:
    """The watcher's trigger class, a ``BaseEventTrigger`` built on first use (the intake imports no Airflow).

    ``MessageQueueTrigger(scheme="redis+pubsub", channels=..., redis_conn_id=..., poll_interval=...)``
    from the common-messaging provider serializes to the Redis provider's ``AwaitMessageTrigger`` with
    those arguments: that is what the triggerer stores and runs. Importing it costs about 2.3 s (it loads
    every installed provider's queue class), paid at every parse of the DAG file and every task start of
    the DAG. This class stores the identical row without that import (docs/adr/0010-customer-events.md);
    a test checks both serialize the same.
    """
    global _WAKE_TRIGGER
    if _WAKE_TRIGGER is None:
        from airflow.triggers.base import BaseEventTrigger as base

        class WakeTrigger(base):  # type: ignore[misc, valid-type]
            """A BaseEventTrigger (what an AssetWatcher needs) that serializes to Redis's pub/sub trigger."""

            def __init__(self, *, channels: list[str], redis_conn_id: str, poll_interval: float) -> None:
                super().__init__()
                self.channels = channels
                self.redis_conn_id = redis_conn_id
                self.poll_interval = poll_interval

            def serialize(self) -> tuple[str, dict[str, Any]]:
                return REDIS_PUBSUB_TRIGGER, {
                    "channels": self.channels,
                    "redis_conn_id": self.redis_conn_id,
                    "poll_interval": self.poll_interval,
                }

            async def run(self) -> Any:  # the triggerer runs the stored class; this is for direct use
                from airflow.providers.redis.triggers.redis_await_message import AwaitMessageTrigger

                async for event in AwaitMessageTrigger(**self.serialize()[1]).run():
                    yield event

        WakeTrigger.__module__ = __name__
        _WAKE_TRIGGER = WakeTrigger
    return _WAKE_TRIGGER


def wake_asset(integration: str, source: str, conn_id: str) -> Any:
    """The Asset a realtime source's DAG is scheduled on, watched on the source's wake channel.

    Not :func:`airflow_provider_contactsync.state.source_asset` (the load's outlet): a DAG scheduled on
    its own outlet would start a run after every run.

    :param conn_id: the Redis connection the triggerer subscribes through (``queue.wake_connection``).
    """
    from airflow.sdk import Asset, AssetWatcher

    trigger = _wake_trigger_class()(
        channels=[wake_channel(integration, source)], redis_conn_id=conn_id, poll_interval=POLL_INTERVAL_SECONDS
    )
    # "x-" scheme: no provider's URI handler applies (see state.source_asset).
    return Asset(
        name=f"contactsync/{integration}/{source}/events",
        uri=f"x-contactsync-events://{integration}/{source}",
        watchers=[AssetWatcher(name=f"contactsync_wake__{integration}__{source}", trigger=trigger)],
    )


def publish_wake(conn_id: str, integration: str, source: str) -> None:
    """Wake the source's DAG, throttled (:class:`WakeThrottle`); never raises: a failure is logged.

    Call it only once the event is durable: the wake may be published at once, in this thread.
    """
    _throttle.wake((conn_id, integration, source))


@dataclass
class _SourceWakes:
    last: float = float("-inf")  # when the last publish started
    trailing: threading.Timer | None = None  # a publish scheduled for the end of the interval
    publishing: int = 0  # publishes started and not yet returned


class WakeThrottle:
    """At most one publish per ``interval`` per key, and always one publish after the last wake.

    The rule, for a wake requested at time ``t`` (after its event was stored):

    - a publish is already scheduled (not yet started): nothing to do, it starts after ``t``;
    - else, the last publish started ``interval`` or more ago: publish now;
    - else: schedule one publish at ``last + interval`` (a timer thread).

    So every wake is followed by a publish that starts after it, at most ``interval`` later, and a
    burst of N events costs about ``duration / interval + 1`` publishes, not N. A publish that starts
    after the event was stored makes the run it wakes see the event (or a run already draining sees
    it). A timer pending when the process exits is lost; the safety sweep covers that, as it covers a
    wake published while the watcher was not subscribed.

    :param publish: ``publish(key)``; its exceptions are logged, never raised.
    """

    def __init__(
        self,
        publish: Callable[[Any], None],
        interval: float = WAKE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish, self._interval, self._clock = publish, interval, clock
        self._lock = threading.Lock()
        self._keys: dict[Any, _SourceWakes] = {}

    def wake(self, key: Any) -> None:
        with self._lock:
            state = self._keys.setdefault(key, _SourceWakes())
            if state.trailing is not None:
                return
            wait = state.last + self._interval - self._clock()
            if wait > 0:
                state.trailing = threading.Timer(wait, self._fire_trailing, args=(key,))
                state.trailing.daemon = True
                state.trailing.start()
                return
            state.last = self._clock()
        self._safe_publish(key)

    def _fire_trailing(self, key: Any) -> None:
        with self._lock:
            state = self._keys[key]
            state.trailing, state.last = None, self._clock()
        self._safe_publish(key)

    def _safe_publish(self, key: Any) -> None:
        with self._lock:
            self._keys[key].publishing += 1
        try:
            self._publish(key)
        except Exception:  # noqa: BLE001 - the event is durable; a lost wake is only late
            log.warning("wake-up %s not published; the event waits for the next wake or sweep", key, exc_info=True)
        finally:
            with self._lock:
                self._keys[key].publishing -= 1

    def pending(self) -> bool:
        """True while a publish is scheduled or running (tests wait on it: a trailing publish has left
        its timer slot when it starts, so that a wake during it schedules another)."""
        with self._lock:
            return any(state.trailing is not None or state.publishing for state in self._keys.values())


class _Publisher:
    """One Redis client per connection id, from ``RedisHook``, with short socket timeouts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def __call__(self, key: tuple[str, str, str]) -> None:
        conn_id, integration, source = key
        client = self._client(conn_id)
        message = json.dumps({"integration": integration, "source": source, "at": time.time()})
        try:
            client.publish(wake_channel(integration, source), message)
        except Exception:
            with self._lock:  # its connection may be broken: the next wake builds a new client
                if self._clients.get(conn_id) is client:
                    del self._clients[conn_id]
            raise

    def _client(self, conn_id: str) -> Any:
        with self._lock:
            client = self._clients.get(conn_id)
        if client is None:
            from airflow.providers.redis.hooks.redis import RedisHook

            client = RedisHook(redis_conn_id=conn_id).get_conn()
            pool = getattr(client, "connection_pool", None)  # RedisCluster has one per node
            if pool is not None:
                pool.connection_kwargs.update(
                    socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
                )
            with self._lock:
                client = self._clients.setdefault(conn_id, client)
        return client

    def forget(self) -> None:
        with self._lock:
            self._clients.clear()


_publisher = _Publisher()
_throttle = WakeThrottle(_publisher)

"""The events source's panels (issue 14): its queue right now, and what each recent run did with events.

- **Events queue**: the events waiting now and the latest dead letters, read live from the source's
  queue (the definition's ``queue``). A queue that cannot be reached is said in the panel: the page
  never waits long for it (short socket timeouts, and the read is abandoned after
  :data:`QUEUE_TIMEOUT_SECONDS`). A dead letter shows when it was received, its delivery id, topic,
  attempts and reason, never its body: bodies hold emails and names. Emails quoted in a reason are
  masked.
- **Events of the last runs**: from each run's load summary (``events``, ``event latency p50 s`` and
  ``p95 s``, ``events waiting``): events claimed and applied, success and error rates, latency.

Imported by :func:`.panels.panels_for` the first time an events source's page is shown (``BUILTIN``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

from airflow_provider_contactsync.core.masking import mask_email
from airflow_provider_contactsync.plugins.panels import Panel, register_panel

QUEUE_TIMEOUT_SECONDS = 3.0
"""How long the page waits for the queue; also the Redis client's connect and read timeout."""
DEAD_LETTERS_SHOWN = 20
REASON_LENGTH = 300

EVENT_COUNTS = ("claimed", "applied", "duplicate", "stale", "unreadable", "dead-lettered", "ignored", "customers")
"""The counts of a run summary's ``events``; ``claimed`` is the sum of the others but ``customers``."""
NOTHING_TO_APPLY = ("duplicate", "stale", "ignored")
"""Redeliveries (the state already holds them) and events the source does not act on: no failure."""
FAILED = ("unreadable", "dead-lettered")

_AT_WORD = re.compile(r"[^\s'\"<>(),;:`]+@[^\s'\"<>(),;:`]*")
"""Anything around an ``@``: an email, even one a reason cut short (``jane.doe@exa...``)."""

RUNS_NOTE = (
    "Success rate: events applied per event that had something to apply, that is per event claimed "
    "minus duplicate and stale redeliveries and ignored events (these change nothing and are no failure). "
    "Error rate: unreadable and dead-lettered events plus the run's rows not loaded (rejected, identity "
    "conflicts, refused by Brevo), per event claimed. Latency: from the webhook accepted to the contact "
    "settled in Brevo, over the events applied (none applied: no latency). Waiting after: events left in "
    "the queue when the run ended."
)


class QueueUnreachable(Exception):
    """The queue did not answer in time."""


@register_panel("events")
def events_queue(detail: Any) -> Panel:
    """Events waiting now and the latest dead letters, read live from the source's queue."""
    columns = ("received", "delivery id", "topic", "attempts", "reason")
    title = "Events queue"
    settings, problem = _queue_settings(detail)
    if settings is None:
        return Panel(title, columns, note=f"The queue is not shown: {problem}")
    where = f"{settings.backend} queue through connection {settings.conn_id}" + (
        f", table {settings.table}" if settings.table else ""
    )
    try:
        depth, letters = read_queue(
            settings, detail.source.integration, detail.source.name, timeout=QUEUE_TIMEOUT_SECONDS
        )
    except Exception as exc:  # the page shows the rest: a queue down is what this panel must tell
        return Panel(title, columns, note=f"The queue cannot be reached ({where}): {_error_text(exc)}", error=True)
    rows = [
        (
            _utc(event.received_at),
            _without_emails(event.delivery_id),
            _without_emails(event.topic or ""),
            event.attempts,
            _without_emails(reason)[:REASON_LENGTH],
        )
        for event, reason in letters
    ]
    waiting = f"{depth:,} event{'s' * (depth != 1)} waiting now ({where})."
    if not rows:
        return Panel(title, columns, note=f"{waiting} No dead letters.")
    return Panel(
        title,
        columns,
        rows,
        note=f"{waiting} The latest {len(rows)} dead letters, newest first. Received: when the webhook was "
        "accepted. Attempts: runs that claimed the event before the one that set it aside. Bodies are not "
        "shown: they hold personal data.",
    )


@register_panel("events")
def events_runs(detail: Any) -> Panel:
    """Per recent run, from its load summary: events claimed and applied, success and error rates, latency."""
    columns = (
        "run",
        "ended",
        "claimed",
        "applied",
        "duplicate",
        "stale",
        "ignored",
        "unreadable",
        "dead-lettered",
        "success rate",
        "error rate",
        "latency p50",
        "latency p95",
        "waiting after",
    )
    rows = []
    for run in detail.runs:
        counts = run_events(run.summary)
        if counts is None:
            continue
        summary = run.summary or {}
        rows.append(
            (
                run.run_id,
                _utc(run.when),
                *(counts[name] for name in columns[2:9]),
                _percent(success_rate(counts)),
                _percent(error_rate(counts, run.not_loaded or 0)),
                _seconds(summary.get("event latency p50 s")),
                _seconds(summary.get("event latency p95 s")),
                _count(summary.get("events waiting")),
            )
        )
    if not rows:
        return Panel("Events of the last runs", columns, note="No run has claimed events yet.")
    return Panel("Events of the last runs", columns, rows, note=RUNS_NOTE)


def run_events(summary: dict[str, Any] | None) -> dict[str, int] | None:
    """The ``events`` counts of a run summary (missing or malformed counts as 0); None without them."""
    events = (summary or {}).get("events")
    if not isinstance(events, dict):
        return None
    return {name: _int(events.get(name)) for name in EVENT_COUNTS}


def success_rate(counts: dict[str, int]) -> float | None:
    """Applied per event that had something to apply (claimed minus :data:`NOTHING_TO_APPLY`)."""
    to_apply = counts["claimed"] - sum(counts[name] for name in NOTHING_TO_APPLY)
    return counts["applied"] / to_apply if to_apply > 0 else None


def error_rate(counts: dict[str, int], rows_not_loaded: int) -> float | None:
    """Unreadable and dead-lettered events plus rows not loaded, per event claimed."""
    claimed = counts["claimed"]
    return (sum(counts[name] for name in FAILED) + rows_not_loaded) / claimed if claimed > 0 else None


def read_queue(settings: Any, integration: str, source: str, *, timeout: float) -> tuple[int, list[Any]]:
    """``(depth, latest dead letters)`` of a source's queue, or QueueUnreachable after ``timeout`` seconds.

    The read runs in a daemon thread so that no backend (a PostgreSQL connection has no timeout of its own
    unless its connection sets ``connect_timeout``) holds the page longer; a Redis client also gets
    ``timeout`` as its socket timeouts and no retries, so its thread ends soon after.
    """
    from airflow_provider_contactsync.sources.events.backends import open_event_queue

    result: dict[str, Any] = {}

    def read() -> None:
        try:
            queue = open_event_queue(
                settings.backend, settings.conn_id, integration=integration, source=source, table=settings.table
            )
            try:
                _short_redis_timeouts(queue, timeout)
                result["value"] = (queue.depth(), queue.dead_letters(limit=DEAD_LETTERS_SHOWN))
            finally:
                close = getattr(queue, "close", None)
                if close is not None:
                    close()
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=read, name=f"contactsync-events-panel-{integration}-{source}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise QueueUnreachable(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _short_redis_timeouts(queue: Any, seconds: float) -> None:
    from airflow_provider_contactsync.sources.events.redis_queue import RedisStreamQueue

    if not isinstance(queue, RedisStreamQueue):
        return
    client = queue.client  # built, not yet connected: redis-py connects on the first command
    if hasattr(client, "get_connection_kwargs") and hasattr(client, "set_retry"):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client.get_connection_kwargs().update(socket_connect_timeout=seconds, socket_timeout=seconds)
        client.set_retry(Retry(NoBackoff(), 0))


def _queue_settings(detail: Any) -> tuple[Any | None, str]:
    """The definition's ``source.queue``, read from the definition file the page shows (DAGs folder only)."""
    from airflow_provider_contactsync.core.spec.loader import parse_definition
    from airflow_provider_contactsync.plugins.app import _definition_text

    text, problem = _definition_text(detail)
    if text is None:
        return None, problem
    try:
        definition = parse_definition(text, file=detail.definition_file, formulas=False)
    except Exception as exc:
        return None, f"the definition file cannot be read: {_error_text(exc)}"
    queue = getattr(definition.source, "queue", None)
    if queue is None:
        return None, f"the definition file is of a {definition.source.type} source, not events."
    return queue, ""


def _without_emails(text: str) -> str:
    return _AT_WORD.sub(lambda found: mask_email(found.group(0)), text)


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _without_emails(f"{type(exc).__name__}: {text}")[:REASON_LENGTH]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "–"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _utc(value: dt.datetime | None) -> str:
    if value is None:
        return "–"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"

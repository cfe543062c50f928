"""Outbound webhooks (``notifications.webhooks``): a signed JSON summary of a run, posted to the user's endpoint.

What a payload holds: the source (DAG id, integration, name, type), the run id, the event, the run's
counts (integers only), the cursor's type and, when it is a date, time or number, its value, and the
link to the run's error report in the Contactsync UI. Never personal data: no refusal lines, reject
reasons, emails, row keys or values (those stay in the error report, behind Airflow's login).

Signing: the connection's password is the secret. Each request carries
``X-Contactsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, the event in
``X-Contactsync-Event`` and a delivery id in ``X-Contactsync-Delivery`` (the same for every attempt of
one notification, so a receiver can drop a duplicate). Receivers check with :func:`verify_signature`.

Delivery: through the HTTP provider's ``HttpHook`` (the connection gives host, schema, port and path),
retried after 1, 2 and 4 seconds on connection errors, timeouts, 429 and 5xx. A notification never
fails the sync: what could not be delivered is logged (connection id, event, status; no secret, no body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

from airflow_provider_contactsync.core.spec.models import NOTIFICATION_EVENTS, SourceDefinition, Webhook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Contactsync-Signature"
DELIVERY_HEADER = "X-Contactsync-Delivery"
EVENT_HEADER = "X-Contactsync-Event"
PAYLOAD_VERSION = 1
RETRY_DELAYS = (1.0, 2.0, 4.0)
"""Seconds to wait before the 2nd, 3rd and 4th attempt: at most 4 attempts and 7 s of waiting."""
REQUEST_TIMEOUT = 10.0
"""Seconds per attempt (connect and read); the connection's ``timeout`` extra is overridden."""
DEFAULT_TOLERANCE_SECONDS = 300
"""A signature older (or further in the future) than this is refused by :func:`verify_signature`: replays."""

_RETRY_STATUSES = frozenset({408, 425, 429})
_NON_COUNT = re.compile(r"[^a-z0-9]+")
_SIGNATURE_PART = re.compile(r"^\s*(t|v1)=([0-9a-f]+)\s*$")


# -- payload --------------------------------------------------------------------------------------------------


def build_payload(
    definition: SourceDefinition,
    event: str,
    summary: Mapping[str, Any] | None,
    *,
    run_id: str,
    failed_task: str | None = None,
    batch: int | None = None,
    dry_run: bool = False,
    occurred_at: float | None = None,
) -> dict[str, Any]:
    """The JSON document sent for ``event`` of run ``run_id``, from the load's run summary (None if there is none).

    Only integers are taken from the summary (``rows read`` -> ``rows_read``): lists such as ``refusals``
    and reasons quote emails and values, and never leave. ``failed_task`` names the task that failed
    (``sync_failed``); ``batch`` numbers the import batch (``batch_completed``).
    """
    from airflow_provider_contactsync.plugins.urls import report_url

    if event not in NOTIFICATION_EVENTS:
        raise ValueError(f"unknown event {event!r}: one of {', '.join(NOTIFICATION_EVENTS)}")
    summary = summary or {}
    run: dict[str, Any] = {
        "run_id": run_id,
        "error_report": report_url(definition.dag_id, run_id),
    }
    if failed_task is not None:
        run["failed_task"] = failed_task
    if batch is not None:
        run["batch"] = batch
    payload: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "event": event,
        "id": delivery_id(definition.dag_id, run_id, event, batch),
        "occurred_at": int(occurred_at if occurred_at is not None else time.time()),
        "source": {
            "dag_id": definition.dag_id,
            "integration": definition.integration,
            "name": definition.source.name,
            "type": definition.source.type,
        },
        "run": run,
        "counts": counts_of(summary),
        "cursor": _cursor(summary.get("cursor")),
    }
    if dry_run:  # nothing was sent to Brevo and the cursor did not move
        payload["dry_run"] = True
    return payload


def counts_of(summary: Mapping[str, Any]) -> dict[str, int]:
    """The summary's integer entries, keys in snake_case (``skipped (exists)`` -> ``skipped_exists``)."""
    counts: dict[str, int] = {}
    for name, value in summary.items():
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(name, str):
            key = _NON_COUNT.sub("_", name.lower()).strip("_")
            if key:
                counts[key] = value
    return counts


def _cursor(cursor: Any) -> dict[str, Any] | None:
    """Where the next run starts: the type, and the value only when it is a date, time or number.

    A string cursor value and the tie-break key may be personal data (an email as key): left out.
    """
    if not isinstance(cursor, Mapping) or not isinstance(cursor.get("type"), str):
        return None
    kind = cursor["type"]
    shown: dict[str, Any] = {"type": kind}
    value = cursor.get("value")
    if kind in ("timestamp", "date", "decimal") and isinstance(value, str) and len(value) <= 64:
        shown["value"] = value
    elif kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        shown["value"] = value
    return shown


def delivery_id(dag_id: str, run_id: str, event: str, batch: int | None = None) -> str:
    """The same for every attempt (and every re-send) of one notification: receivers deduplicate on it."""
    material = json.dumps([dag_id, run_id, event, batch], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def encode(payload: Mapping[str, Any]) -> bytes:
    """The body as sent (and signed): compact JSON, keys sorted, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


# -- signature ------------------------------------------------------------------------------------------------


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Contactsync-Signature`` header value: ``t=<timestamp>,v1=<hex HMAC-SHA256("<t>." + body)>``."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def _digest(secret: str | bytes, body: bytes, timestamp: int) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``header`` is a valid signature of ``body`` with ``secret``, made within ``tolerance_seconds``.

    For receivers: pass the raw request body (before any JSON parsing). Several ``v1=`` parts are allowed
    (one per secret during a rotation): one matching is enough. Compared in constant time.
    """
    if not header or not secret or len(header) > 4096:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        found = _SIGNATURE_PART.match(part)
        if found is None:
            continue
        if found.group(1) == "t":
            if timestamp is not None or len(found.group(2)) > 12:
                return False
            timestamp = int(found.group(2))
        else:
            candidates.append(found.group(2))
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# -- delivery -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What became of one notification to one endpoint."""

    conn_id: str
    event: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class _NoAuth:
    """``HttpHook`` auth that adds nothing: the connection's password is the signing secret, and a login on the
    connection must not make the hook send it as Basic auth. Authorization headers go in the extra."""

    def __init__(self, *_: Any) -> None:
        pass

    def __call__(self, request: Any) -> Any:
        return request


def _hook(conn_id: str) -> Any:
    from airflow.providers.http.hooks.http import HttpHook

    return HttpHook(method="POST", http_conn_id=conn_id, auth_type=_NoAuth)


def deliver(
    conn_id: str,
    event: str,
    body: bytes,
    delivery: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    delays: tuple[float, ...] = RETRY_DELAYS,
    clock: Callable[[], float] = time.time,
) -> Delivery:
    """POST ``body`` to the endpoint of connection ``conn_id``, signed, retried; never raises.

    Each attempt is signed afresh (its own timestamp), with the same delivery id.
    """
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    attempts = 0
    status: int | None = None
    error: str | None = None
    try:
        hook = _hook(conn_id)
        secret = hook.get_connection(conn_id).password
        if not secret:
            return _gave_up(conn_id, event, 0, None, "the connection has no password (the signing secret)")
        for attempt in range(len(delays) + 1):
            if attempt:
                sleep(delays[attempt - 1])
            attempts = attempt + 1
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "contactsync-webhook/1",
                EVENT_HEADER: event,
                DELIVERY_HEADER: delivery,
                SIGNATURE_HEADER: sign(secret, body, int(clock())),
            }
            try:
                response = hook.run(
                    data=body,
                    headers=headers,
                    extra_options={"check_response": False, "timeout": REQUEST_TIMEOUT, "allow_redirects": False},
                )
            except (RequestsConnectionError, Timeout) as exc:
                status, error = None, type(exc).__name__
                continue
            status, error = response.status_code, None
            if 200 <= status < 300:
                log.info("Webhook %s: %s delivered (HTTP %s, attempt %d)", conn_id, event, status, attempts)
                return Delivery(conn_id, event, True, attempts, status)
            if status not in _RETRY_STATUSES and status < 500:
                break  # the endpoint refuses this request: sending it again would not help
    except Exception as exc:  # a missing connection, a bad URL: logged, never the sync's failure
        from airflow_provider_contactsync.alerts import describe_error

        return _gave_up(conn_id, event, attempts, status, describe_error(exc))
    return _gave_up(conn_id, event, attempts, status, error)


def _gave_up(conn_id: str, event: str, attempts: int, status: int | None, error: str | None) -> Delivery:
    why = f"HTTP {status}" if status is not None else (error or "no answer")
    log.warning(
        "Webhook %s: %s not delivered after %d attempt(s): %s. The sync itself is not affected.",
        conn_id,
        event,
        attempts,
        why,
    )
    return Delivery(conn_id, event, False, attempts, status, error)


def listeners(definition: SourceDefinition, event: str) -> list[Webhook]:
    """The definition's webhooks that listen to ``event``."""
    return [webhook for webhook in definition.notifications.webhooks if event in webhook.events]


def notify_event(
    definition: SourceDefinition,
    event: str,
    summary: Mapping[str, Any] | None,
    *,
    run_id: str,
    failed_task: str | None = None,
    batch: int | None = None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Send ``event`` to every webhook of the definition listening to it; never raises.

    Returns one :class:`Delivery` per webhook (an empty list when none listens).
    """
    hooks = listeners(definition, event)
    if not hooks:
        return []
    try:
        payload = build_payload(
            definition, event, summary, run_id=run_id, failed_task=failed_task, batch=batch, dry_run=dry_run
        )
        body = encode(payload)
    except Exception:
        log.exception("Webhook payload for %s of %s could not be built; nothing sent", event, definition.dag_id)
        return []
    return [deliver(webhook.url_conn_id, event, body, payload["id"], sleep=sleep) for webhook in hooks]


# -- the Airflow notifier -------------------------------------------------------------------------------------

SUMMARY_TASK_ID = "load"
"""The task whose XCom holds the run summary (its return value; key ``summary`` when it failed)."""


class ContactsyncWebhookNotifier(BaseNotifier):
    """Posts one event of a run to the definition's webhooks: an ``on_success_callback`` / ``on_failure_callback``.

    ``ContactsyncWebhookNotifier(spec, "sync_completed")`` on the load task's ``on_success_callback``;
    ``ContactsyncWebhookNotifier(spec, "sync_failed")`` on every task's ``on_failure_callback``. The summary
    is read from the load task's XCom in the callback's context (none when an earlier task failed). Never
    raises: a failing endpoint is logged and the task keeps its own outcome.

    :param definition_json: the definition as the operators get it (``model_dump(mode="json")``), or its JSON text.
    :param event: ``sync_completed``, ``sync_failed`` or ``batch_completed``.
    :param summary_task_id: the task whose XCom holds the run summary.
    """

    template_fields = ()

    def __init__(
        self,
        definition_json: Mapping[str, Any] | str,
        event: str,
        *,
        summary_task_id: str = SUMMARY_TASK_ID,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        if event not in NOTIFICATION_EVENTS:
            raise ValueError(f"unknown event {event!r}: one of {', '.join(NOTIFICATION_EVENTS)}")
        self.definition_json = definition_json
        self.event = event
        self.summary_task_id = summary_task_id
        self.sleep = sleep

    def _definition(self) -> SourceDefinition:
        if isinstance(self.definition_json, str):
            return SourceDefinition.model_validate_json(self.definition_json)
        return SourceDefinition.model_validate(self.definition_json)

    def notify(self, context: Any) -> None:
        try:
            definition = self._definition()
            if not listeners(definition, self.event):
                return
            ti = context.get("ti") or context.get("task_instance")
            params = context.get("params") or {}
            notify_event(
                definition,
                self.event,
                summary_from_context(context, self.summary_task_id),
                run_id=str(context.get("run_id") or getattr(ti, "run_id", "")),
                failed_task=getattr(ti, "task_id", None) if self.event == "sync_failed" else None,
                dry_run=bool(params.get("dry_run")),
                sleep=self.sleep,
            )
        except Exception:  # the notifier must never change the task's outcome
            log.exception("Webhook notification %s could not be sent; the sync is not affected", self.event)


def summary_from_context(context: Any, task_id: str = SUMMARY_TASK_ID) -> dict[str, Any] | None:
    """The run summary the load pushed (its return value, or key ``summary`` when it failed), or None."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    for key in ("summary", "return_value"):
        try:
            value = ti.xcom_pull(task_ids=task_id, key=key)
        except Exception:  # no such task in this DAG, no XCom backend reachable: no counts
            log.debug("No XCom %s of task %s", key, task_id, exc_info=True)
            continue
        if isinstance(value, Mapping):
            return dict(value)
    return None

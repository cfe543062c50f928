"""Signed webhook intake: an ASGI app that verifies a shop's delivery and puts it in the source's queue.

``POST /<integration>/<source>``, mounted by the Contactsync plugin at ``/contactsync/webhooks``
inside Airflow's API server, and by ``contactsync-webhooks`` (:mod:`.intake_cli`) at ``/webhooks``.
These routes ask for no Airflow user: the shop calls them, and the signature is the authentication.

Where a delivery goes comes from :func:`resolve_endpoint`. For now it reads one Airflow connection
per source, found through Airflow's normal lookup (secrets backend, ``AIRFLOW_CONN_*`` variables,
the metadata DB):

- connection id ``contactsync_webhook__<integration>__<source>`` (double underscores: names may hold
  single ones), any type (``generic``);
- its **password** is the signing secret (Shopify's app secret, WooCommerce's webhook secret, or the
  secret shared with a custom platform);
- its **extra**: ``{"platform": "shopify" | "woocommerce" | "custom", "queue": "redis" | "postgres",
  "queue_conn_id": "redis_default", "table": "..."}`` (``table``: postgres only, optional; see
  :func:`.backends.open_event_queue`), and ``"wake_conn_id": "redis_default"`` for a
  ``sync_mode: realtime`` source (optional): the Redis connection to publish a wake-up on once a new
  delivery is queued, the server the source's ``queue.wake_connection`` names (:mod:`.wake`). Without
  it nothing is published, and the source's DAG runs on its schedule only.

For example::

    AIRFLOW_CONN_CONTACTSYNC_WEBHOOK__SHOP__CUSTOMERS='{"conn_type": "generic", "password": "<secret>",
      "extra": {"platform": "shopify", "queue": "redis", "queue_conn_id": "redis_default",
                "wake_conn_id": "redis_default"}}'

The ``events`` source type will resolve endpoints from definitions instead; only
:func:`resolve_endpoint` changes then.

Answers (JSON, ``{"status": ...}`` or ``{"detail": ...}``):

- 200 ``{"status": "queued"}`` once ``queue.put`` returned (the event is durable), or
  ``{"status": "duplicate"}`` when this delivery id is already stored (stored once); a queued
  delivery's wake-up, if any, is published after the answer is sent, throttled, and its failure is
  only logged (:func:`.wake.publish_wake`);
- 400 malformed body (not UTF-8 JSON, or not one JSON object), with the reason;
- 401 missing, wrong or replayed signature: nothing is queued;
- 404 unknown integration/source (the same answer for a bad name and a missing connection);
- 413 body over the limit (1 MiB by default), refused from ``Content-Length`` or while streaming;
- 500 the endpoint's connection is misconfigured (the reason goes to the log, not to the caller);
- 503 the queue (or the connection lookup) is down: the shop retries later. Never 2xx.

Order: the endpoint, then the size, then the signature, then the JSON, then the queue. The body is
stored as received (raw bytes); it is parsed only to check that it is one JSON object.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_contactsync.sources.events.backends import KINDS, open_event_queue
from airflow_provider_contactsync.sources.events.queue import EventQueue, QueuedEvent
from airflow_provider_contactsync.sources.events.signatures import (
    DEFAULT_REPLAY_WINDOW_SECONDS,
    PLATFORMS,
    SIGNATURE_HEADERS,
    SignatureError,
    verify,
)
from airflow_provider_contactsync.sources.events.wake import publish_wake

log = logging.getLogger(__name__)

CONN_ID_PREFIX = "contactsync_webhook"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")

DELIVERY_HEADERS = {
    "shopify": ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id"),
    "woocommerce": ("X-WC-Webhook-Delivery-ID",),
    "custom": ("X-Contactsync-Delivery-Id",),
}
TOPIC_HEADERS = {"shopify": "X-Shopify-Topic", "woocommerce": "X-WC-Webhook-Topic", "custom": None}
_KEPT_PREFIXES = ("x-shopify-", "x-wc-webhook-", "x-contactsync-")
_KEPT_HEADERS = ("content-type", "user-agent")
_SIGNATURES = {name.lower() for name in SIGNATURE_HEADERS.values()}


class UnknownEndpoint(LookupError):
    """No such integration/source takes webhooks (answered 404)."""


class EndpointMisconfigured(ValueError):
    """The endpoint exists but its configuration is unusable (answered 500; the reason is logged)."""


@dataclass(frozen=True)
class Endpoint:
    """Where one source's deliveries go and how they are signed.

    :param queue: the queue's kind (``redis``, ``postgres``); ``queue_conn_id`` its Airflow connection.
    :param wake_conn_id: the Redis connection realtime wake-ups are published on (None: not realtime).
    """

    integration: str
    source: str
    platform: str
    secret: str = field(repr=False)
    queue: str
    queue_conn_id: str
    table: str | None = None
    wake_conn_id: str | None = None

    def open_queue(self) -> EventQueue:
        return open_event_queue(
            self.queue, self.queue_conn_id, integration=self.integration, source=self.source, table=self.table
        )


def endpoint_conn_id(integration: str, source: str) -> str:
    return f"{CONN_ID_PREFIX}__{integration}__{source}"


def resolve_endpoint(integration: str, source: str) -> Endpoint:
    """The endpoint of ``integration``/``source`` from its Airflow connection (see the module docstring).

    :raises UnknownEndpoint: a name that cannot be a source's, or no such connection.
    :raises EndpointMisconfigured: the connection exists but lacks a secret or a valid extra.
    """
    if not (_NAME.fullmatch(integration) and _NAME.fullmatch(source)) or "__" in integration + source:
        raise UnknownEndpoint(f"{integration}/{source}")
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = endpoint_conn_id(integration, source)
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise UnknownEndpoint(f"{integration}/{source}") from None
    try:
        extra = conn.extra_dejson
    except Exception as exc:  # noqa: BLE001 - whatever the extra's parser raises
        raise EndpointMisconfigured(f"connection {conn_id}: extra is not JSON ({exc})") from None
    platform, queue, queue_conn_id = extra.get("platform"), extra.get("queue"), extra.get("queue_conn_id")
    if platform not in PLATFORMS:
        raise EndpointMisconfigured(f"connection {conn_id}: extra.platform {platform!r} is not one of {PLATFORMS}")
    if queue not in KINDS:
        raise EndpointMisconfigured(f"connection {conn_id}: extra.queue {queue!r} is not one of {KINDS}")
    if not queue_conn_id or not isinstance(queue_conn_id, str):
        raise EndpointMisconfigured(f"connection {conn_id}: extra.queue_conn_id is missing")
    if not conn.password:
        raise EndpointMisconfigured(f"connection {conn_id}: the password (the signing secret) is empty")
    wake_conn_id = extra.get("wake_conn_id")
    if wake_conn_id is not None and (not isinstance(wake_conn_id, str) or not wake_conn_id):
        raise EndpointMisconfigured(f"connection {conn_id}: extra.wake_conn_id must be a connection id")
    table = extra.get("table")
    return Endpoint(
        integration, source, platform, conn.password, queue, queue_conn_id, table or None, wake_conn_id or None
    )


class _Queues:
    """Open queues, one per endpoint, reused across requests (Redis keeps its connection pool).

    A put that fails drops its queue (its connection may be broken); the next request opens a new one.
    The PostgreSQL queue holds one connection, so its puts take turns.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Endpoint, tuple[EventQueue, contextlib.AbstractContextManager[Any]]] = {}

    def put(self, endpoint: Endpoint, event: QueuedEvent) -> bool:
        with self._lock:
            if endpoint not in self._open:
                turn = threading.Lock() if endpoint.queue == "postgres" else contextlib.nullcontext()
                self._open[endpoint] = (endpoint.open_queue(), turn)
            queue, turn = self._open[endpoint]
        try:
            with turn:
                return queue.put(event)
        except BaseException:
            with self._lock:
                if self._open.get(endpoint, (None,))[0] is queue:
                    del self._open[endpoint]
            with contextlib.suppress(Exception):
                queue.close()  # type: ignore[attr-defined]
            raise

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for queue, _ in opened:
            with contextlib.suppress(Exception):
                queue.close()  # type: ignore[attr-defined]


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (:class:`BodyTooLarge`) from ``Content-Length`` or once the stream passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def json_object_problem(body: bytes) -> str | None:
    """Why ``body`` is not one JSON object (None when it is)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "the body is not JSON: nested too deeply"
    if not isinstance(value, dict):
        return f"the body is a JSON {type(value).__name__}, expected one object"
    return None


def queued_event(platform: str, headers: Any, body: bytes, received_at: dt.datetime) -> QueuedEvent:
    """The delivery as the queue stores it: its id, topic and the headers worth keeping (no signature)."""
    delivery_id = next((headers[h] for h in DELIVERY_HEADERS[platform] if headers.get(h)), None)
    if not delivery_id:
        delivery_id = "sha256:" + hashlib.sha256(body).hexdigest()
    topic_header = TOPIC_HEADERS[platform]
    kept = {
        key: value
        for key, value in headers.items()
        if (key.startswith(_KEPT_PREFIXES) or key in _KEPT_HEADERS) and key not in _SIGNATURES
    }
    return QueuedEvent(
        delivery_id=delivery_id.strip(),
        platform=platform,
        topic=headers.get(topic_header) if topic_header else None,
        body=body,
        received_at=received_at,
        headers=kept,
    )


def create_app(
    *,
    resolver: Callable[[str, str], Endpoint] = resolve_endpoint,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    replay_window_seconds: float = DEFAULT_REPLAY_WINDOW_SECONDS,
) -> Starlette:
    """The intake app: ``POST /{integration}/{source}`` (mount it where it should live).

    :param resolver: ``(integration, source) -> Endpoint``; raises :class:`UnknownEndpoint` (404) or
        :class:`EndpointMisconfigured` (500).
    :param max_body_bytes: larger bodies are refused with 413.
    :param replay_window_seconds: the custom shape's allowed distance between its timestamp and now.
    """
    queues = _Queues()

    async def receive(request: Request) -> JSONResponse:
        integration, source = request.path_params["integration"], request.path_params["source"]
        try:
            endpoint = await run_in_threadpool(resolver, integration, source)
        except UnknownEndpoint:
            return _answer(404, detail="no such webhook endpoint")
        except EndpointMisconfigured as exc:
            log.error("webhook %s/%s: %s", integration, source, exc)
            return _answer(500, detail="this webhook endpoint is misconfigured; see the server's log")
        except Exception:
            log.exception("webhook %s/%s: looking up the endpoint failed", integration, source)
            return _answer(503, detail="the endpoint lookup is unavailable; retry later")
        try:
            body = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return _answer(413, detail=f"the body is over the {max_body_bytes} bytes limit")
        except ClientDisconnect:
            return _answer(400, detail="the client disconnected before the body ended")
        try:
            verify(
                endpoint.platform, endpoint.secret, request.headers, body, replay_window_seconds=replay_window_seconds
            )
        except SignatureError as exc:
            log.warning("webhook %s/%s refused: %s", integration, source, exc)
            return _answer(401, detail=f"signature refused: {exc}")
        problem = json_object_problem(body)
        if problem:
            return _answer(400, detail=problem)
        event = queued_event(endpoint.platform, request.headers, body, dt.datetime.now(dt.timezone.utc))
        try:
            added = await run_in_threadpool(queues.put, endpoint, event)
        except Exception:
            log.exception(
                "webhook %s/%s: the %s queue refused delivery %s",
                integration,
                source,
                endpoint.queue,
                event.delivery_id,
            )
            return _answer(503, detail="the queue is unavailable; retry later")
        wake = None
        if added and endpoint.wake_conn_id:
            wake = BackgroundTask(publish_wake, endpoint.wake_conn_id, integration, source)
        return _answer(200, background=wake, status="queued" if added else "duplicate", delivery_id=event.delivery_id)

    app = Starlette(routes=[Route("/{integration}/{source}", receive, methods=["POST"])])
    app.state.queues = queues
    return app


def _answer(code: int, background: BackgroundTask | None = None, **content: Any) -> JSONResponse:
    return JSONResponse(content, status_code=code, headers={"Cache-Control": "no-store"}, background=background)

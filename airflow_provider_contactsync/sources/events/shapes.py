"""What a platform's payload means: one :class:`QueuedEvent` into one normalized :class:`CustomerEvent`.

Three shapes, chosen by :attr:`QueuedEvent.platform`:

- ``custom``: the seed's JSON, ``{"event": "customer_created|customer_updated|customer_deleted",
  "timestamp": ISO 8601, "data": {"id": ..., ...}}``; an update may carry ``data.changes:
  {field: {"old": ..., "new": ...}}``.
- ``shopify``: ``customers/create|update|delete`` webhooks (topic in ``X-Shopify-Topic``); the body is
  the Customer resource.
- ``woocommerce``: ``customer.created|updated|deleted`` webhooks (topic in ``X-WC-Webhook-Topic``); the
  body is the customer resource of the REST API (a delete may hold only ``id``).

Pure: no I/O, no Airflow. A payload that cannot be understood raises :class:`EventError` with the
reason; the caller turns it into a per-event reject.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_contactsync.core.errors import ContactsyncError
from airflow_provider_contactsync.sources.events.queue import QueuedEvent

Kind = Literal["created", "updated", "deleted"]
KINDS: tuple[str, ...] = ("created", "updated", "deleted")
PLATFORMS: tuple[str, ...] = ("custom", "shopify", "woocommerce")

_CUSTOM_EVENTS = {"customer_created": "created", "customer_updated": "updated", "customer_deleted": "deleted"}
_SHOPIFY_TOPICS = {"customers/create": "created", "customers/update": "updated", "customers/delete": "deleted"}
_WOO_TOPICS = {"customer.created": "created", "customer.updated": "updated", "customer.deleted": "deleted"}

_TOPIC_HEADERS = {"shopify": "X-Shopify-Topic", "woocommerce": "X-WC-Webhook-Topic"}


class EventError(ContactsyncError):
    """A payload that cannot be understood: bad JSON, no customer id, an unknown event or topic.

    :param reason: what is wrong, in the user's terms (it is the reject's reason).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """One customer event, whatever the platform.

    :ivar event_id: the platform's event id (Shopify ``X-Shopify-Event-Id``, else ``X-Shopify-Webhook-Id``;
        WooCommerce ``X-WC-Webhook-Delivery-ID``; custom ``event_id`` or ``id`` at the top level), else
        the queue's delivery id.
    :ivar customer_id: the platform's customer id, as text.
    :ivar kind: ``created``, ``updated`` or ``deleted``.
    :ivar occurred_at: when it happened (aware, UTC): see :func:`parse_event`.
    :ivar fields: the customer's fields, flat, in the shape's own names (nested objects flattened with
        ``_``: WooCommerce ``billing.phone`` is ``billing_phone``); for an update with ``changes``, the
        ``new`` values over the rest of ``data``.
    :ivar changed: the fields an update with ``changes`` touches; None when the event carries the whole
        record (every create, delete, Shopify and WooCommerce update, a custom update without ``changes``).
    :ivar delivery_id: the queue's delivery id (for acks and the error report).
    :ivar time_from_payload: False when ``occurred_at`` fell back to the time intake received it.
    """

    event_id: str
    customer_id: str
    kind: Kind
    occurred_at: dt.datetime
    fields: Mapping[str, Any] = field(hash=False)
    changed: frozenset[str] | None = None
    delivery_id: str = ""
    time_from_payload: bool = True

    @property
    def key(self) -> tuple[dt.datetime, str]:
        """The event-time order: time, ties broken by event id."""
        return (self.occurred_at, self.event_id)


def parse_event(queued: QueuedEvent) -> CustomerEvent:
    """Understand one delivery.

    ``occurred_at`` is the payload's time: the custom shape's ``timestamp``, Shopify's ``updated_at``
    (else the ``X-Shopify-Triggered-At`` header: a delete body has no time), WooCommerce's
    ``date_modified_gmt``. When the payload gives none (a WooCommerce delete holds only ``id``), it is
    the time intake received the delivery (``received_at``), and ``time_from_payload`` is False: such
    an event is ordered by arrival, which is right for a delete (it comes after what it deletes) but
    can put a late delivery after newer events.

    :raises EventError: the payload is not JSON, not an object, names an unknown event or topic, has
        no customer id, or a time that is not ISO 8601.
    """
    if queued.platform not in PLATFORMS:
        raise EventError(f"unknown platform {queued.platform!r}: expected one of {', '.join(PLATFORMS)}")
    body = _json_object(queued.body)
    if queued.platform == "custom":
        return _custom(queued, body)
    return _webhook(queued, body)


# -- the custom shape ------------------------------------------------------------------------------


def _custom(queued: QueuedEvent, body: dict[str, Any]) -> CustomerEvent:
    name = body.get("event")
    if name is None:
        raise EventError("the body has no 'event' (customer_created, customer_updated or customer_deleted)")
    kind = _CUSTOM_EVENTS.get(name) if isinstance(name, str) else None
    if kind is None:
        expected = "customer_created, customer_updated or customer_deleted"
        raise EventError(f"unknown event {_short(name)}: expected {expected}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise EventError(f"'data' must be an object (the customer), not {_type_name(data)}")
    customer_id = _customer_id(data.get("id"), "data.id")
    occurred_at, from_payload = _time(body.get("timestamp"), "timestamp", queued.received_at)

    fields = _flatten({k: v for k, v in data.items() if k != "changes"})
    changed: frozenset[str] | None = None
    changes = data.get("changes")
    if changes is not None:
        if kind != "updated":
            raise EventError(f"'data.changes' is only for customer_updated, not {name}")
        if not isinstance(changes, dict):
            raise EventError(f"'data.changes' must be an object of {{field: {{old, new}}}}, not {_type_name(changes)}")
        touched: dict[str, Any] = {}
        for name_, change in changes.items():
            if not isinstance(change, dict) or "new" not in change:
                raise EventError(f"'data.changes.{name_}' must be an object with 'new' (and 'old')")
            if name_ == "id":
                raise EventError("'data.changes.id': a customer's id cannot change")
            touched.update(_flatten({name_: change["new"]}))
        fields.update(touched)
        changed = frozenset(touched)
    event_id = body.get("event_id", body.get("id"))
    return CustomerEvent(
        event_id=_text(event_id) if _is_id(event_id) else queued.delivery_id,
        customer_id=customer_id,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=occurred_at,
        fields=fields,
        changed=changed,
        delivery_id=queued.delivery_id,
        time_from_payload=from_payload,
    )


# -- Shopify and WooCommerce -----------------------------------------------------------------------


def _webhook(queued: QueuedEvent, body: dict[str, Any]) -> CustomerEvent:
    platform = queued.platform
    header = _TOPIC_HEADERS[platform]
    topic = queued.topic or _header(queued, header)
    topics = _SHOPIFY_TOPICS if platform == "shopify" else _WOO_TOPICS
    if not topic:
        raise EventError(f"no topic: the {header} header is missing")
    kind = topics.get(topic.strip())
    if kind is None:
        raise EventError(f"unknown {platform} topic {_short(topic)}: expected one of {', '.join(topics)}")
    customer_id = _customer_id(body.get("id"), "id")
    if platform == "shopify":
        stamp, where = body.get("updated_at"), "updated_at"
        if stamp is None:
            stamp, where = _header(queued, "X-Shopify-Triggered-At"), "X-Shopify-Triggered-At"
        event_id = _header(queued, "X-Shopify-Event-Id") or _header(queued, "X-Shopify-Webhook-Id")
    else:
        stamp, where = body.get("date_modified_gmt"), "date_modified_gmt"
        event_id = _header(queued, "X-WC-Webhook-Delivery-ID")
    occurred_at, from_payload = _time(stamp, where, queued.received_at)
    return CustomerEvent(
        event_id=event_id or queued.delivery_id,
        customer_id=customer_id,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=occurred_at,
        fields=_flatten(body),
        changed=None,
        delivery_id=queued.delivery_id,
        time_from_payload=from_payload,
    )


# -- helpers ---------------------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(f"the body is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise EventError("the body is empty")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"the body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise EventError("the body is not JSON this sync reads: nested too deeply") from None
    if not isinstance(body, dict):
        raise EventError(f"the body must be a JSON object, not {_type_name(body)}")
    return body


def _header(queued: QueuedEvent, name: str) -> str | None:
    wanted = name.lower()
    for key, value in queued.headers.items():
        if key.lower() == wanted and value and value.strip():
            return value.strip()
    return None


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and value.strip() != "") or (isinstance(value, int) and not isinstance(value, bool))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else str(value)


def _customer_id(value: Any, where: str) -> str:
    if value is None:
        raise EventError(f"'{where}' is missing: a customer event needs the customer's id")
    if not _is_id(value):
        raise EventError(f"'{where}' must be a text or an integer id, not {_type_name(value)} {_short(value)}")
    return _text(value)


def _time(value: Any, where: str, received_at: dt.datetime) -> tuple[dt.datetime, bool]:
    if value is None:
        return _utc(received_at), False
    if not isinstance(value, str):
        raise EventError(f"'{where}' must be an ISO 8601 time, not {_type_name(value)} {_short(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read Z
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise EventError(f"'{where}' is not an ISO 8601 time: {_short(value)}") from None
    if parsed.tzinfo is None:  # WooCommerce's *_gmt fields are UTC without an offset
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc), True


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects into ``parent_child`` names; lists and scalars kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a text", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

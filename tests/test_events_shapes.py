"""Customer event shapes (issue 14): custom, Shopify and WooCommerce payloads into CustomerEvents."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from airflow_provider_contactsync.sources.events.presets import PRESETS, preset
from airflow_provider_contactsync.sources.events.queue import QueuedEvent
from airflow_provider_contactsync.sources.events.shapes import CustomerEvent, EventError, parse_event

DATA = Path(__file__).parent / "data" / "events"
DELIVERIES = json.loads((DATA / "deliveries.json").read_text())
RECEIVED = dt.datetime(2024, 6, 20, 12, 0, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


def delivery(name: str, *, body: bytes | None = None, **headers: str) -> QueuedEvent:
    """A sample payload of tests/data/events as intake would queue it."""
    meta = DELIVERIES[name]
    all_headers = {**meta["headers"], **headers}
    topic = next((v for k, v in all_headers.items() if k.lower() in ("x-shopify-topic", "x-wc-webhook-topic")), None)
    return QueuedEvent(
        delivery_id=f"delivery-{name}",
        platform=meta["platform"],
        topic=topic,
        body=(DATA / name).read_bytes() if body is None else body,
        received_at=RECEIVED,
        headers=all_headers,
    )


def raw(platform: str, body: object, *, topic: str | None = None, headers: dict[str, str] | None = None) -> QueuedEvent:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return QueuedEvent("d-1", platform, topic, data, RECEIVED, headers=headers or {})


# -- custom ----------------------------------------------------------------------------------------


def test_custom_created() -> None:
    event = parse_event(delivery("custom_customer_created.json"))
    assert event.kind == "created"
    assert event.customer_id == "cust_12345"
    assert event.event_id == "delivery-custom_customer_created.json"  # no id in the seed's shape
    assert event.occurred_at == dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert event.time_from_payload
    assert event.changed is None
    assert event.fields["email"] == "jane@example.com"
    assert event.fields["acceptsMarketing"] is True
    assert event.fields["phone"] == "+1234567890"


def test_custom_updated_with_changes_takes_the_new_values() -> None:
    event = parse_event(delivery("custom_customer_updated.json"))
    assert event.kind == "updated"
    assert event.changed == frozenset({"phone"})
    assert event.fields == {"id": "cust_12345", "email": "jane@example.com", "phone": "+1234567890"}
    assert "changes" not in event.fields


def test_custom_update_without_changes_is_the_whole_record() -> None:
    event = parse_event(
        raw(
            "custom",
            {
                "event": "customer_updated",
                "timestamp": "2024-01-15T14:45:00+01:00",
                "data": {"id": 7, "email": "a@x.com", "totalOrders": 10},
            },
        )
    )
    assert event.changed is None
    assert event.customer_id == "7"
    assert event.occurred_at == dt.datetime(2024, 1, 15, 13, 45, tzinfo=UTC)
    assert event.fields == {"id": 7, "email": "a@x.com", "totalOrders": 10}


def test_custom_nested_changes_are_flattened() -> None:
    body = {
        "event": "customer_updated",
        "timestamp": "2024-01-15T14:45:00Z",
        "event_id": "evt-9",
        "data": {"id": "c1", "changes": {"address": {"old": None, "new": {"city": "Utrecht", "zip": "3511"}}}},
    }
    event = parse_event(raw("custom", body))
    assert event.event_id == "evt-9"
    assert event.changed == frozenset({"address_city", "address_zip"})
    assert event.fields["address_city"] == "Utrecht"


def test_custom_deleted() -> None:
    event = parse_event(delivery("custom_customer_deleted.json"))
    assert event.kind == "deleted"
    assert event.customer_id == "cust_12345"
    assert event.occurred_at == dt.datetime(2024, 1, 15, 16, 0, tzinfo=UTC)


def test_custom_without_timestamp_falls_back_to_received_at() -> None:
    event = parse_event(raw("custom", {"event": "customer_created", "data": {"id": "c1"}}))
    assert event.occurred_at == RECEIVED
    assert not event.time_from_payload


# -- Shopify ---------------------------------------------------------------------------------------


def test_shopify_create() -> None:
    event = parse_event(delivery("shopify_customers_create.json"))
    assert event.kind == "created"
    assert event.customer_id == "7324459221271"
    assert event.event_id == "98880550-7158-44d4-b7cd-2c97c8a091b5"  # X-Shopify-Event-Id
    assert event.occurred_at == dt.datetime(2024, 6, 11, 13, 14, 3, tzinfo=UTC)  # updated_at, -04:00
    assert event.occurred_at.tzinfo is UTC
    assert event.fields["first_name"] == "Jane"
    assert event.fields["email_marketing_consent_state"] == "subscribed"
    assert event.fields["default_address_city"] == "Amsterdam"
    assert isinstance(event.fields["addresses"], list)
    assert event.changed is None


def test_shopify_update() -> None:
    event = parse_event(delivery("shopify_customers_update.json"))
    assert event.kind == "updated"
    assert event.fields["last_name"] == "Smith-Jansen"
    assert event.fields["accepts_marketing"] is False
    assert event.fields["email_marketing_consent_state"] == "unsubscribed"
    assert event.fields["sms_marketing_consent"] is None
    assert event.occurred_at == dt.datetime(2024, 6, 12, 19, 40, 27, tzinfo=UTC)


def test_shopify_delete_takes_its_time_from_the_triggered_at_header() -> None:
    event = parse_event(delivery("shopify_customers_delete.json"))
    assert event.kind == "deleted"
    assert event.customer_id == "7324459221271"
    assert event.occurred_at == dt.datetime(2024, 6, 13, 8, 0, tzinfo=UTC)
    assert event.time_from_payload


def test_shopify_event_id_falls_back_to_the_webhook_id_then_the_delivery() -> None:
    body = {"id": 1, "updated_at": "2024-06-11T09:14:03-04:00"}
    webhook = parse_event(
        raw("shopify", body, headers={"X-Shopify-Topic": "customers/update", "x-shopify-webhook-id": "wh-1"})
    )
    assert webhook.event_id == "wh-1"
    assert parse_event(raw("shopify", body, topic="customers/update")).event_id == "d-1"


# -- WooCommerce -----------------------------------------------------------------------------------


def test_woocommerce_created() -> None:
    event = parse_event(delivery("woocommerce_customer_created.json"))
    assert event.kind == "created"
    assert event.customer_id == "25"
    assert event.event_id == "5f1b7c9e0a2d4c6e8f1a3b5d7c9e0f2a"
    assert event.occurred_at == dt.datetime(2024, 6, 11, 13, 9, 28, tzinfo=UTC)  # date_modified_gmt is UTC
    assert event.fields["billing_phone"] == "+31 6 12345679"
    assert event.fields["email"] == "john.doe@example.com"


def test_woocommerce_updated() -> None:
    event = parse_event(delivery("woocommerce_customer_updated.json"))
    assert event.kind == "updated"
    assert event.fields["first_name"] == "Johnny"
    assert event.fields["billing_company"] == "Doe BV"
    assert event.occurred_at == dt.datetime(2024, 6, 12, 8, 2, 11, tzinfo=UTC)


def test_woocommerce_delete_with_only_an_id_falls_back_to_received_at() -> None:
    event = parse_event(delivery("woocommerce_customer_deleted.json"))
    assert event.kind == "deleted"
    assert event.customer_id == "25"
    assert event.fields == {"id": 25}
    assert event.occurred_at == RECEIVED
    assert not event.time_from_payload


def test_events_are_frozen() -> None:
    event = parse_event(delivery("custom_customer_created.json"))
    assert isinstance(event, CustomerEvent)
    with pytest.raises(AttributeError):
        event.kind = "deleted"  # type: ignore[misc]


# -- payloads that cannot be understood ------------------------------------------------------------

BAD = [
    ("custom", b"{not json", None, "the body is not JSON: Expecting property name enclosed in double quotes"),
    ("custom", b"", None, "the body is empty"),
    ("custom", b"\xff\xfe", None, "the body is not UTF-8 text"),
    ("custom", b"[1, 2]", None, "the body must be a JSON object, not a list"),
    ("custom", {"timestamp": "2024-01-15T10:30:00Z", "data": {"id": 1}}, None, "the body has no 'event'"),
    ("custom", {"event": "customer_merged", "data": {"id": 1}}, None, "unknown event 'customer_merged'"),
    ("custom", {"event": 3, "data": {"id": 1}}, None, "unknown event 3"),
    (
        "custom",
        {"event": "customer_created", "data": "cust_1"},
        None,
        "'data' must be an object (the customer), not a text",
    ),
    ("custom", {"event": "customer_created"}, None, "'data' must be an object (the customer), not null"),
    ("custom", {"event": "customer_created", "data": {"email": "a@x.com"}}, None, "'data.id' is missing"),
    ("custom", {"event": "customer_created", "data": {"id": True}}, None, "'data.id' must be a text or an integer id"),
    (
        "custom",
        {"event": "customer_created", "data": {"id": {"x": 1}}},
        None,
        "'data.id' must be a text or an integer id, not an object",
    ),
    ("custom", {"event": "customer_created", "data": {"id": "  "}}, None, "'data.id' must be a text or an integer id"),
    (
        "custom",
        {"event": "customer_created", "timestamp": "yesterday", "data": {"id": 1}},
        None,
        "'timestamp' is not an ISO 8601 time: 'yesterday'",
    ),
    (
        "custom",
        {"event": "customer_created", "timestamp": 1705314600, "data": {"id": 1}},
        None,
        "'timestamp' must be an ISO 8601 time, not a number",
    ),
    (
        "custom",
        {"event": "customer_updated", "data": {"id": 1, "changes": ["phone"]}},
        None,
        "'data.changes' must be an object",
    ),
    (
        "custom",
        {"event": "customer_updated", "data": {"id": 1, "changes": {"phone": "+31"}}},
        None,
        "'data.changes.phone' must be an object with 'new'",
    ),
    (
        "custom",
        {"event": "customer_updated", "data": {"id": 1, "changes": {"id": {"old": 1, "new": 2}}}},
        None,
        "a customer's id cannot change",
    ),
    (
        "custom",
        {"event": "customer_created", "data": {"id": 1, "changes": {}}},
        None,
        "'data.changes' is only for customer_updated",
    ),
    ("shopify", {"id": 1}, None, "no topic: the X-Shopify-Topic header is missing"),
    ("shopify", {"id": 1}, "orders/create", "unknown shopify topic 'orders/create'"),
    ("shopify", {"email": "a@x.com"}, "customers/create", "'id' is missing"),
    ("shopify", {"id": 1, "updated_at": "not a time"}, "customers/update", "'updated_at' is not an ISO 8601 time"),
    ("woocommerce", {"id": 25}, None, "no topic: the X-WC-Webhook-Topic header is missing"),
    ("woocommerce", {"id": 25}, "customer.restored", "unknown woocommerce topic 'customer.restored'"),
    ("woocommerce", {}, "customer.deleted", "'id' is missing"),
    ("woocommerce", {"id": 1.5}, "customer.deleted", "'id' must be a text or an integer id, not a number 1.5"),
    ("magento", {"id": 1}, None, "unknown platform 'magento'"),
]


@pytest.mark.parametrize(("platform", "body", "topic", "reason"), BAD, ids=[b[3][:40] for b in BAD])
def test_bad_payloads_raise_an_event_error_with_the_reason(platform, body, topic, reason) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(raw(platform, body, topic=topic))
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert caught.value.__cause__ is None or not isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_deeply_nested_json_is_a_reason_not_a_crash() -> None:
    body = b'{"event": "customer_created", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(EventError, match="JSON"):
        parse_event(raw("custom", body))


# -- presets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["custom_customer_created.json", "shopify_customers_create.json", "woocommerce_customer_created.json"]
)
def test_a_preset_reads_fields_its_platform_sends(name: str) -> None:
    event = parse_event(delivery(name))
    chosen = PRESETS[DELIVERIES[name]["platform"]]
    assert set(chosen["mapping"]) <= set(chosen["fields"])
    assert set(chosen["mapping"]) <= set(event.fields)
    mapped = {attribute: event.fields[field] for field, attribute in chosen["mapping"].items()}
    assert mapped["EMAIL"] and mapped["FIRSTNAME"] and mapped["SMS"]
    assert set(mapped) == {"EXT_ID", "EMAIL", "FIRSTNAME", "LASTNAME", "SMS"}


def test_preset_is_a_copy() -> None:
    mine = preset("shopify")
    mine["mapping"]["first_name"] = "PRENOM"
    assert PRESETS["shopify"]["mapping"]["first_name"] == "FIRSTNAME"
    with pytest.raises(KeyError, match="magento"):
        preset("magento")


@pytest.mark.parametrize(
    ("platform", "row", "expected"),
    [
        ("custom", {"acceptsMarketing": True}, True),
        ("custom", {"acceptsMarketing": False}, False),
        ("custom", {}, None),
        ("shopify", {"email_marketing_consent_state": "subscribed"}, True),
        ("shopify", {"email_marketing_consent_state": "unsubscribed", "accepts_marketing": True}, False),
        ("shopify", {"email_marketing_consent_state": "not_subscribed"}, False),
        ("shopify", {"email_marketing_consent_state": "pending"}, None),
        ("shopify", {"accepts_marketing": True}, True),  # API versions before email_marketing_consent
        ("shopify", {}, None),  # a delete body
    ],
)
def test_preset_consent_conditions_compile_and_decide(platform: str, row: dict, expected: bool | None) -> None:
    from airflow_provider_contactsync.core.formulas.api import compile_formula

    chosen = PRESETS[platform]
    formula = compile_formula(chosen["consent_email"], chosen["fields"])
    assert formula.evaluate({name: row.get(name) for name in chosen["fields"]}) is expected


def test_woocommerce_has_no_consent_in_its_customer() -> None:
    assert PRESETS["woocommerce"]["consent_email"] is None

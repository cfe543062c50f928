"""Signed webhook intake (issue 14 item 2): both mounts, a real redis-server (and PostgreSQL) as the queue.

Every case runs twice: through the standalone app (``contactsync-webhooks``, ``/webhooks``) and through
the Contactsync plugin inside Airflow's own API server app (``/contactsync/webhooks``), with no Airflow
login at all. Endpoints are Airflow connections given as ``AIRFLOW_CONN_*`` variables; signatures are
computed here from the sample payloads in ``tests/data/events``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.processes import free_port, stop_process

from airflow_provider_contactsync.sources.events import signatures
from airflow_provider_contactsync.sources.events.backends import open_event_queue
from airflow_provider_contactsync.sources.events.intake import DEFAULT_MAX_BODY_BYTES, endpoint_conn_id
from airflow_provider_contactsync.sources.events.queue import QueuedEvent

EVENTS = Path(__file__).parent / "data" / "events"
SECRET = "whsec-0123456789abcdef"
NEVER_STALE = 3600.0


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def b64_hmac(secret: str, body: bytes) -> str:
    """Computed here independently of the module under test, as a platform would."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def custom_signature(secret: str, body: bytes, t: int) -> str:
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def set_endpoint(monkeypatch: pytest.MonkeyPatch, source: str, platform: str, queue_conn_id: str, **extra: Any) -> None:
    conn = {
        "conn_type": "generic",
        "password": SECRET,
        "extra": {"platform": platform, "queue": extra.pop("queue", "redis"), "queue_conn_id": queue_conn_id, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{endpoint_conn_id('shop', source).upper()}", json.dumps(conn))


@pytest.fixture
def endpoints(redis_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """shop/shopify, shop/woo and shop/custom, each into its own Redis stream."""
    set_endpoint(monkeypatch, "shopify", "shopify", redis_conn_id)
    set_endpoint(monkeypatch, "woo", "woocommerce", redis_conn_id)
    set_endpoint(monkeypatch, "custom", "custom", redis_conn_id)
    return redis_conn_id


@pytest.fixture(scope="module")
def standalone() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from airflow_provider_contactsync.sources.events.intake_cli import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="module")
def airflow_api(airflow_db: str) -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        purge_cached_app()
        with TestClient(create_app()) as client:
            yield client
        purge_cached_app()


class Poster:
    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def post(self, source: str, body: bytes, headers: dict[str, str], integration: str = "shop") -> Any:
        # No cookie, no Authorization header: the shop has no Airflow user.
        return self.client.post(f"{self.prefix}/{integration}/{source}", content=body, headers=headers)


@pytest.fixture(params=["standalone", "plugin"])
def intake(request: pytest.FixtureRequest) -> Poster:
    if request.param == "standalone":
        return Poster(request.getfixturevalue("standalone"), "/webhooks")
    return Poster(request.getfixturevalue("airflow_api"), "/contactsync/webhooks")


def claimed(conn_id: str, source: str, kind: str = "redis") -> list[QueuedEvent]:
    queue = open_event_queue(kind, conn_id, integration="shop", source=source)
    try:
        return queue.claim("test", max_events=100, stale_after_seconds=NEVER_STALE)
    finally:
        queue.close()


def shopify_headers(body: bytes, *, webhook_id: str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "customers/create",
        "X-Shopify-Hmac-Sha256": b64_hmac(SECRET, body),
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": "2025-03-01T12:00:00.000Z",
    }


# --- accepted deliveries ------------------------------------------------------------------------------


def test_a_signed_shopify_delivery_is_queued_as_received(intake: Poster, endpoints: str) -> None:
    body = sample("shopify_customers_create.json")
    response = intake.post("shopify", body, shopify_headers(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "queued", "delivery_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}

    [event] = claimed(endpoints, "shopify")
    assert (event.platform, event.topic, event.body) == ("shopify", "customers/create", body)
    assert event.delivery_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    headers = {k.lower(): v for k, v in event.headers.items()}
    assert headers["x-shopify-shop-domain"] == "example.myshopify.com"
    assert headers["x-shopify-triggered-at"] == "2025-03-01T12:00:00.000Z"
    assert "x-shopify-hmac-sha256" not in headers  # never the signature
    assert claimed(endpoints, "woo") == []  # its own source's queue only


def test_a_signed_woocommerce_delivery_is_queued(intake: Poster, endpoints: str) -> None:
    body = sample("woocommerce_customer_updated.json")
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "customer.updated",
        "X-WC-Webhook-Signature": b64_hmac(SECRET, body),
        "X-WC-Webhook-Delivery-ID": "8812",
        "X-WC-Webhook-Source": "https://shop.example.com/",
    }
    response = intake.post("woo", body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    [event] = claimed(endpoints, "woo")
    assert (event.platform, event.topic, event.delivery_id, event.body) == (
        "woocommerce",
        "customer.updated",
        "8812",
        body,
    )
    assert "x-wc-webhook-signature" not in {k.lower() for k in event.headers}


def test_a_custom_delivery_with_a_fresh_timestamp_is_queued(intake: Poster, endpoints: str) -> None:
    body = sample("custom_customer_updated.json")
    headers = {
        "X-Contactsync-Signature": custom_signature(SECRET, body, int(time.time()) - 30),
        "X-Contactsync-Delivery-Id": "evt-42",
    }
    response = intake.post("custom", body, headers)
    assert response.status_code == 200, response.text
    [event] = claimed(endpoints, "custom")
    assert (event.platform, event.topic, event.delivery_id, event.body) == ("custom", None, "evt-42", body)


def test_without_a_delivery_id_the_body_digest_is_the_id(intake: Poster, endpoints: str) -> None:
    body = sample("custom_customer_created.json")
    headers = {"X-Contactsync-Signature": signatures.sign_custom(SECRET, body)}
    assert intake.post("custom", body, headers).json()["status"] == "queued"
    assert intake.post("custom", body, headers).json()["status"] == "duplicate"
    [event] = claimed(endpoints, "custom")
    assert event.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_the_same_delivery_twice_is_stored_once(intake: Poster, endpoints: str) -> None:
    body = sample("shopify_customers_update.json")
    first = intake.post("shopify", body, shopify_headers(body, webhook_id="w-1"))
    again = intake.post("shopify", body, shopify_headers(body, webhook_id="w-1"))
    other = intake.post("shopify", body, shopify_headers(body, webhook_id="w-2"))
    assert [r.status_code for r in (first, again, other)] == [200, 200, 200]
    assert [r.json()["status"] for r in (first, again, other)] == ["queued", "duplicate", "queued"]
    assert [e.delivery_id for e in claimed(endpoints, "shopify")] == ["w-1", "w-2"]


def test_the_postgres_queue_takes_deliveries_too(
    standalone: Any, postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_endpoint(monkeypatch, "pgshop", "shopify", postgres_db, queue="postgres")
    intake = Poster(standalone, "/webhooks")
    body = sample("shopify_customers_delete.json")
    headers = shopify_headers(body, webhook_id="pg-1") | {"X-Shopify-Topic": "customers/delete"}
    assert [intake.post("pgshop", body, headers).json()["status"] for _ in range(2)] == ["queued", "duplicate"]
    [event] = claimed(postgres_db, "pgshop", kind="postgres")
    assert (event.delivery_id, event.topic, event.body) == ("pg-1", "customers/delete", body)


# --- refused deliveries: nothing queued ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "headers"),
    [
        ("shopify", {"X-Shopify-Hmac-Sha256": b64_hmac("another secret", b"{}")}),
        ("shopify", {"X-Shopify-Hmac-Sha256": "not base64!"}),
        ("shopify", {}),
        ("woo", {"X-WC-Webhook-Signature": b64_hmac("another secret", b"{}")}),
        ("woo", {"X-Shopify-Hmac-Sha256": "the other platform's header"}),
        ("custom", {"X-Contactsync-Signature": "v1=abc"}),
        ("custom", {}),
    ],
    ids=[
        "shopify-wrong",
        "shopify-garbled",
        "shopify-missing",
        "woo-wrong",
        "woo-missing",
        "custom-malformed",
        "custom-missing",
    ],
)
def test_a_bad_or_missing_signature_is_401(intake: Poster, endpoints: str, source: str, headers: dict) -> None:
    body = sample("shopify_customers_create.json")
    response = intake.post(source, body, headers)
    assert response.status_code == 401, response.text
    assert "signature refused" in response.json()["detail"]
    assert claimed(endpoints, source) == []


def test_a_signature_of_another_body_is_401(intake: Poster, endpoints: str) -> None:
    body = sample("shopify_customers_create.json")
    tampered = body.replace(b"@", b"+evil@", 1)
    response = intake.post("shopify", tampered, shopify_headers(body))
    assert response.status_code == 401
    assert claimed(endpoints, "shopify") == []


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_replayed_custom_delivery_is_401(intake: Poster, endpoints: str, age: int) -> None:
    body = sample("custom_customer_created.json")
    headers = {"X-Contactsync-Signature": custom_signature(SECRET, body, int(time.time()) - age)}
    response = intake.post("custom", body, headers)
    assert response.status_code == 401
    assert "replay window" in response.json()["detail"]
    assert claimed(endpoints, "custom") == []


def test_a_custom_timestamp_cannot_be_changed_without_the_secret(intake: Poster, endpoints: str) -> None:
    body = sample("custom_customer_created.json")
    old = custom_signature(SECRET, body, int(time.time()) - 3600)
    forged = f"t={int(time.time())}," + old.split(",", 1)[1]
    assert intake.post("custom", body, {"X-Contactsync-Signature": forged}).status_code == 401
    assert claimed(endpoints, "custom") == []


@pytest.mark.parametrize(
    ("integration", "source"),
    [("shop", "nosuch"), ("nosuch", "shopify"), ("shop", "a__b"), ("1shop", "shopify")],
)
def test_an_unknown_endpoint_is_404_whatever_the_reason(
    intake: Poster, endpoints: str, integration: str, source: str
) -> None:
    body = sample("shopify_customers_create.json")
    response = intake.post(source, body, shopify_headers(body), integration=integration)
    assert response.status_code == 404
    assert response.json() == {"detail": "no such webhook endpoint"}


def test_an_oversized_body_is_413_from_its_content_length(intake: Poster, endpoints: str) -> None:
    body = b'{"pad": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}'
    response = intake.post("shopify", body, shopify_headers(body))
    assert response.status_code == 413
    assert claimed(endpoints, "shopify") == []


def test_an_oversized_streamed_body_is_413_without_reading_it_all(intake: Poster, endpoints: str) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(64):
            sent.append(1)
            yield b"x" * (64 * 1024)

    response = intake.client.post(
        f"{intake.prefix}/shop/shopify", content=chunks(), headers={"X-Shopify-Hmac-Sha256": "AAAA"}
    )
    assert response.status_code == 413
    assert claimed(endpoints, "shopify") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"email": "a@example.com",', "not JSON"),
        (b"[1, 2]", "JSON list, expected one object"),
        (b'"text"', "JSON str, expected one object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not JSON"),
    ],
)
def test_a_malformed_body_is_400_with_the_reason(intake: Poster, endpoints: str, body: bytes, reason: str) -> None:
    response = intake.post("shopify", body, shopify_headers(body))
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert claimed(endpoints, "shopify") == []


def test_a_queue_that_is_down_is_503_and_nothing_is_stored(
    intake: Poster, endpoints: str, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = "contactsync_test_dead_redis"
    port = free_port()  # nothing listens there
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{dead.upper()}", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": port})
    )
    set_endpoint(monkeypatch, "shopify", "shopify", dead)
    body = sample("shopify_customers_create.json")
    response = intake.post("shopify", body, shopify_headers(body))
    assert response.status_code == 503
    assert response.json()["detail"] == "the queue is unavailable; retry later"
    with redis_server.client() as client:
        assert client.keys("*") == []  # not even a dedup marker
    assert claimed(endpoints, "shopify") == []

    # The shop retries once the queue is back: accepted then, stored once.
    set_endpoint(monkeypatch, "shopify", "shopify", endpoints)
    assert intake.post("shopify", body, shopify_headers(body)).json()["status"] == "queued"
    assert len(claimed(endpoints, "shopify")) == 1


def test_a_misconfigured_endpoint_is_500_without_details(
    intake: Poster, endpoints: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{endpoint_conn_id('shop', 'nosecret').upper()}",
        json.dumps({"conn_type": "generic", "extra": {"platform": "shopify", "queue": "redis", "queue_conn_id": "x"}}),
    )
    body = b"{}"
    response = intake.post("nosecret", body, {"X-Shopify-Hmac-Sha256": b64_hmac("", body)})
    assert response.status_code == 500
    assert "password" not in response.text


def test_other_plugin_routes_still_need_an_airflow_user(airflow_api: Any) -> None:
    assert airflow_api.get("/contactsync/api/sources").status_code == 401


# --- signatures, without HTTP -------------------------------------------------------------------------


def test_the_module_signs_as_the_platforms_do() -> None:
    body = sample("woocommerce_customer_created.json")
    assert signatures.sign_base64(SECRET, body) == b64_hmac(SECRET, body)
    assert signatures.sign_custom(SECRET, body, 1_700_000_000) == custom_signature(SECRET, body, 1_700_000_000)
    signatures.verify("custom", SECRET, {"x-contactsync-signature": custom_signature(SECRET, body, 100)}, body, now=150)


def test_a_rotated_secret_may_sign_alongside_the_old_one() -> None:
    body = b'{"event": "customer_created"}'
    old = custom_signature("old secret", body, 1000).split(",")[1]
    header = custom_signature(SECRET, body, 1000) + "," + old
    signatures.verify("custom", SECRET, {"X-Contactsync-Signature": header}, body, now=1000)
    signatures.verify("custom", "old secret", {"X-Contactsync-Signature": header}, body, now=1000)


def test_an_empty_secret_never_verifies() -> None:
    with pytest.raises(signatures.SignatureError, match="no signing secret"):
        signatures.verify("shopify", "", {"X-Shopify-Hmac-Sha256": b64_hmac("", b"{}")}, b"{}")


# --- the standalone server as a process -----------------------------------------------------------------


def test_the_standalone_server_listens_where_told_and_queues(endpoints: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port = free_port()
    env = dict(os.environ)  # the AIRFLOW_CONN_* of the endpoints and the Redis server
    args = ["--host", "127.0.0.1", "--port", str(port), "--max-body-bytes", "100000", "--log-level", "warning"]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_contactsync.sources.events.intake_cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    assert response.read() == b"ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.1)  # polling interval while the server starts
        body = sample("shopify_customers_create.json")
        request = urllib.request.Request(
            f"{base}/webhooks/shop/shopify", data=body, headers=shopify_headers(body), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert (response.status, json.loads(response.read())["status"]) == (200, "queued")
        big = urllib.request.Request(f"{base}/webhooks/shop/shopify", data=b"x" * 100_001, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(big, timeout=10)
        assert refused.value.code == 413
        assert [e.body for e in claimed(endpoints, "shopify")] == [body]
    finally:
        stop_process(process, 10)  # by its PID
        log.close()

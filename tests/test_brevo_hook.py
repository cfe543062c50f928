"""Unit tests of BrevoHook against httpx.MockTransport: no network, no real sleeps."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.hooks import _brevo_import
from airflow_provider_contactsync.hooks._brevo_http import DEFAULT_BASE_URL, resolve_base_url
from airflow_provider_contactsync.hooks._brevo_import import iter_import_bodies, to_import_item
from airflow_provider_contactsync.hooks.brevo import BrevoHook, BrevoOutcomeUnknownError

API_KEY = "xkeysib-0123456789abcdef-TESTKEY"
CONN_ID = "brevo_unit"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """sleep() advances monotonic(); sleeps are recorded instead of waited."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN_ID, **fields: Any) -> None:
    conn = {"conn_type": "brevo", "host": "https://brevo.test/v3", "password": API_KEY, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_hook(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Callable[..., BrevoHook]:
    set_connection(monkeypatch)

    def make(handler: Handler, rand: Callable[[], float] = lambda: 0.5, **kwargs: Any) -> BrevoHook:
        return BrevoHook(
            CONN_ID,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            rand=rand,
            transport=httpx.MockTransport(handler),
            **kwargs,
        )

    return make


def ok(body: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, message: str, code: str = "some_code", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message}, headers=headers)


# -- connection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, DEFAULT_BASE_URL),
        ("", None, DEFAULT_BASE_URL),
        ("http://127.0.0.1:8787/v3", None, "http://127.0.0.1:8787/v3"),
        ("http://127.0.0.1:8787", None, "http://127.0.0.1:8787/v3"),
        ("http://127.0.0.1:8787/v3/", None, "http://127.0.0.1:8787/v3"),
        ("127.0.0.1", 8787, "http://127.0.0.1:8787/v3"),
        ("127.0.0.1:8787/v3", None, "http://127.0.0.1:8787/v3"),
        ("localhost", 9000, "http://localhost:9000/v3"),
        ("api.brevo.com", None, "https://api.brevo.com/v3"),
        ("https://proxy.example.com/brevo/", None, "https://proxy.example.com/brevo/v3"),
        ("http://127.0.0.1:8787/v3", 9999, "http://127.0.0.1:8787/v3"),  # the URL's port wins
    ],
)
def test_base_url_resolution(host: str | None, port: int | None, expected: str) -> None:
    assert resolve_base_url(host, port) == expected


def test_hook_reads_url_key_and_extras_from_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="127.0.0.1", port=8787, extra={"timeout": "7", "max_retries": 2})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"email": "owner@example.com"})

    hook = BrevoHook(CONN_ID, transport=httpx.MockTransport(handler))
    client = hook.get_conn()
    assert client is hook.get_conn()  # cached keep-alive client
    assert str(client.base_url).rstrip("/") == "http://127.0.0.1:8787/v3"
    assert client.timeout.read == 7.0
    assert hook.http.policy.max_retries == 2
    assert hook.test_connection() == (
        True,
        "Connected to Brevo (owner@example.com) at http://127.0.0.1:8787/v3",
    )
    assert seen[0].url.path == "/v3/account"
    assert seen[0].headers["api-key"] == API_KEY
    hook.close()


def test_default_base_url_when_connection_has_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=None)
    hook = BrevoHook(CONN_ID, transport=httpx.MockTransport(lambda r: ok({})))
    assert str(hook.get_conn().base_url).rstrip("/") == "https://api.brevo.com/v3"
    assert hook.http.policy.max_retries == 5


def test_connection_without_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, password=None)
    ok_flag, message = BrevoHook(CONN_ID, transport=httpx.MockTransport(lambda r: ok({}))).test_connection()
    assert not ok_flag and "API key" in message


def test_api_key_never_in_repr_logs_or_errors(
    make_hook: Callable[..., BrevoHook], caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/account"):
            return error(401, f"Key not found: {API_KEY}", code="unauthorized")
        if request.url.path.endswith("/contacts/attributes"):
            raise httpx.ConnectError(f"cannot connect (key {API_KEY})", request=request)
        return error(503, "down", **{"x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "1"})

    caplog.set_level(logging.DEBUG)
    hook = make_hook(handler, max_retries=1)
    hook.get_conn()
    texts = [repr(hook), str(hook), repr(hook.get_conn()), repr(hook.http)]
    ok_flag, message = hook.test_connection()
    assert not ok_flag
    texts.append(message)
    for call in (hook.get_attributes, hook.get_lists):
        with pytest.raises(BrevoError) as info:
            call()
        texts += [str(info.value), repr(info.value), repr(info.value.__dict__)]
    texts.append(caplog.text)
    assert "Key not found: ***" in message
    for text in texts:
        assert API_KEY not in text


# -- request loop: rate limits, retries, idempotency ---------------------------------------------


def test_429_waits_for_reset_then_retries(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.now)
        if len(calls) == 1:
            return error(429, "Too many requests", **{"x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "7"})
        return ok({"attributes": [{"name": "FIRSTNAME"}]})

    hook = make_hook(handler)
    assert hook.get_attributes() == [{"name": "FIRSTNAME"}]
    assert len(calls) == 2
    jitter = hook.http.policy.rate_limit_jitter
    assert clock.sleeps == [7 + 0.5 * jitter]  # the reset plus jitter (rand=0.5)
    assert calls[1] - calls[0] >= 7
    assert hook.stats.rate_limited == 1 and hook.stats.retries == 1


def test_429_on_non_idempotent_create_is_retried(make_hook: Callable[..., BrevoHook]) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return error(429, "slow down", **{"x-sib-ratelimit-reset": "2"})
        return ok({"id": 42}, status=201)

    assert make_hook(handler).create_contact("a@example.com", attributes={"FNAME": "A"}) == 42
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert bodies[0]["updateEnabled"] is False


def test_429_gives_up_after_its_own_budget(make_hook: Callable[..., BrevoHook]) -> None:
    hook = make_hook(lambda r: error(429, "no", **{"x-sib-ratelimit-reset": "1"}))
    with pytest.raises(BrevoError) as info:
        hook.get_attributes()
    assert info.value.status == 429 and "still rate limited" in info.value.message
    assert hook.stats.rate_limited == hook.http.policy.max_rate_limit_retries + 1


def test_a_rate_limit_wait_past_max_wait_raises_instead_of_sleeping(
    make_hook: Callable[..., BrevoHook], clock: FakeClock
) -> None:
    from airflow_provider_contactsync.hooks.brevo import BrevoRateLimitedError

    hook = make_hook(lambda r: error(429, "hourly limit", **{"x-sib-ratelimit-reset": "3600"}))
    with pytest.raises(BrevoRateLimitedError) as info:
        hook.get_attributes()
    assert info.value.resume_in == pytest.approx(3600 + 0.5 * hook.http.policy.rate_limit_jitter)
    assert "max_wait_seconds" in info.value.message and info.value.bucket == "contacts"
    assert clock.sleeps == []  # not a second asleep

    paced = make_hook(
        lambda r: ok({"attributes": []}, headers={"x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "900"})
    )
    paced.get_attributes()
    with pytest.raises(BrevoRateLimitedError):  # the budget is known to be used up: no call, no sleep
        paced.get_attributes()
    assert paced.stats.total_requests == 1


def test_max_wait_seconds_comes_from_the_connection(
    make_hook: Callable[..., BrevoHook], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, extra=json.dumps({"max_wait_seconds": 4000}))
    hook = make_hook(lambda r: error(429, "no", **{"x-sib-ratelimit-reset": "3600"}))
    with pytest.raises(BrevoError) as info:
        hook.get_attributes()
    assert "still rate limited" in info.value.message  # it waited, up to its 429 budget
    assert clock.sleeps and max(clock.sleeps) > 3600


def test_proactive_pacing_when_remaining_is_zero(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.now)
        if len(calls) == 1:
            headers = {
                "x-sib-ratelimit-limit": "10",
                "x-sib-ratelimit-remaining": "0",
                "x-sib-ratelimit-reset": "5",
            }
        else:
            headers = {
                "x-sib-ratelimit-limit": "10",
                "x-sib-ratelimit-remaining": "9",
                "x-sib-ratelimit-reset": "1",
            }
        return ok({"attributes": []}, headers=headers)

    hook = make_hook(handler)
    hook.get_attributes()
    hook.get_attributes()  # must wait the window out first, without collecting a 429
    hook.get_attributes()  # budget known again: no wait
    assert calls[1] - calls[0] >= 5
    assert calls[2] == calls[1]
    assert hook.stats.rate_limited == 0 and hook.stats.retries == 0
    assert hook.stats.wait_seconds == pytest.approx(5 + 0.5 * hook.http.policy.rate_limit_jitter)


def test_pacing_is_per_bucket(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    """An exhausted /processes budget must not slow /contacts calls."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v3/processes"):
            headers = {"x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "3000"}
            return ok({"id": 1, "status": "completed"}, headers=headers)
        return ok({"attributes": []})

    hook = make_hook(handler)
    hook.get_process(1)
    hook.get_attributes()
    assert clock.sleeps == []


def test_5xx_backoff_grows_exponentially_and_gives_up(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(503, "Service unavailable", code="internal_error")

    hook = make_hook(handler, rand=lambda: 0.999999, max_retries=8)
    with pytest.raises(BrevoError) as info:
        hook.get_attributes()
    err = info.value
    assert len(calls) == 9
    assert err.status == 503 and err.code == "internal_error"
    assert "gave up after 8 retries" in str(err) and err.path == "/contacts/attributes"
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30]  # doubling from 0.5 s, capped at 30 s
    assert clock.sleeps == pytest.approx([c * 0.999999 for c in ceilings])
    assert hook.stats.retries == 8


def test_5xx_backoff_uses_full_jitter(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    draws = iter([0.1, 0.9, 0.3, 0.7])
    hook = make_hook(lambda r: error(500, "boom"), rand=lambda: next(draws), max_retries=4)
    with pytest.raises(BrevoError):
        hook.get_lists()
    assert clock.sleeps == pytest.approx([0.1 * 0.5, 0.9 * 1, 0.3 * 2, 0.7 * 4])


def test_timeout_on_idempotent_call_is_retried(make_hook: Callable[..., BrevoHook]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return ok(None, status=204)

    hook = make_hook(handler)
    hook.update_contact("a@example.com", attributes={"FNAME": "A"})
    assert len(calls) == 3 and hook.stats.retries == 2


def test_timeouts_give_up_with_clear_error(make_hook: Callable[..., BrevoHook]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(BrevoError) as info:
        make_hook(handler, max_retries=2).get_attributes()
    assert info.value.code == "timeout" and "after 3 attempts" in info.value.message


def test_dropped_connection_after_non_idempotent_create_is_not_retried(
    make_hook: Callable[..., BrevoHook],
) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    hook = make_hook(handler)
    with pytest.raises(BrevoOutcomeUnknownError) as info:
        hook.create_contact("new@example.com")
    assert len(calls) == 1
    assert "outcome unknown" in str(info.value) and info.value.method == "POST"
    assert isinstance(info.value, BrevoError)


def test_5xx_on_non_idempotent_create_is_not_retried(make_hook: Callable[..., BrevoHook]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(502, "Bad gateway")

    with pytest.raises(BrevoOutcomeUnknownError) as info:
        make_hook(handler).create_contact("new@example.com")
    assert len(calls) == 1 and info.value.status == 502 and "Bad gateway" in str(info.value)


def test_connect_error_is_retried_even_when_not_idempotent(make_hook: Callable[..., BrevoHook]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return ok({"id": 7}, status=201)

    assert make_hook(handler).create_contact("new@example.com") == 7
    assert len(calls) == 2


def test_upsert_create_is_retried_after_a_drop(make_hook: Callable[..., BrevoHook]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("dropped", request=request)
        return ok(None, status=204)

    assert make_hook(handler).create_contact("a@example.com", update_enabled=True) is None
    assert len(calls) == 2


def test_non_idempotent_import_is_not_retried(make_hook: Callable[..., BrevoHook]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(500, "oops")

    with pytest.raises(BrevoOutcomeUnknownError):
        make_hook(handler).import_contacts([{"email": "a@example.com"}], list_ids=[1], update_existing=False)
    assert len(calls) == 1


def test_client_errors_raise_parsed_brevo_error(make_hook: Callable[..., BrevoHook]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {
            "code": "duplicate_parameter",
            "message": "Contact already exist",
            "metadata": {"duplicate_identifiers": ["email"]},
        }
        return httpx.Response(400, json=body)

    with pytest.raises(BrevoError) as info:
        make_hook(handler).create_contact("a@example.com")
    err = info.value
    assert (err.status, err.code, err.message) == (400, "duplicate_parameter", "Contact already exist")
    assert err.metadata == {"duplicate_identifiers": ["email"]}
    assert (err.method, err.path) == ("POST", "/contacts")


# -- single-contact calls ---------------------------------------------------------------------


def test_get_contact_encodes_identifier_and_maps_identifier_type(make_hook: Callable[..., BrevoHook]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b"missing" in request.url.raw_path:
            return error(404, "Contact does not exist", code="document_not_found")
        return ok({"id": 3, "email": "a+b@example.com"})

    hook = make_hook(handler)
    assert hook.get_contact("a+b@example.com") == {"id": 3, "email": "a+b@example.com"}
    assert seen[0].url.raw_path == b"/v3/contacts/a%2Bb%40example.com"
    assert hook.get_contact("+33612345678", "SMS") is not None
    assert seen[1].url.params["identifierType"] == "phone_id"
    assert hook.get_contact("missing@example.com") is None
    with pytest.raises(ValueError):
        hook.get_contact("x", "PHONE_NUMBER")


def test_delete_contact_missing_ok(make_hook: Callable[..., BrevoHook]) -> None:
    hook = make_hook(lambda r: error(404, "Contact does not exist", code="document_not_found"))
    assert hook.delete_contact("x@example.com", missing_ok=True) is False
    with pytest.raises(BrevoError) as info:
        hook.delete_contact("x@example.com")
    assert info.value.status == 404


# -- reading --------------------------------------------------------------------------------------


def test_iter_contacts_paginates_in_ascending_order(make_hook: Callable[..., BrevoHook]) -> None:
    total = 2_500
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = [{"id": i, "email": f"c{i}@example.com"} for i in range(offset, min(offset + limit, total))]
        return ok({"contacts": page, "count": total})

    hook = make_hook(handler)
    since = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    contacts = list(hook.iter_contacts(modified_since=since, list_id=12))
    assert [c["id"] for c in contacts] == list(range(total))
    assert [r.url.params["offset"] for r in seen] == ["0", "1000", "2000"]
    assert all(r.url.params["sort"] == "asc" for r in seen)
    assert seen[0].url.params["modifiedSince"] == "2026-01-02T03:04:05.678Z"
    assert seen[0].url.params["listIds"] == "12"


def test_iter_contacts_stops_on_exact_multiple(make_hook: Callable[..., BrevoHook]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        offset = int(request.url.params["offset"])
        page = [{"id": i} for i in range(offset, min(offset + 2, 4))]
        return ok({"contacts": page, "count": 4})

    assert len(list(make_hook(handler).iter_contacts(page_size=2))) == 4
    assert len(seen) == 2  # count tells us we are done; no empty third page


def test_get_lists_pages_by_50(make_hook: Callable[..., BrevoHook]) -> None:
    lists = [{"id": i, "name": f"L{i}"} for i in range(120)]

    def handler(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        assert limit == 50
        return ok({"lists": lists[offset : offset + limit], "count": len(lists)})

    assert make_hook(handler).get_lists() == lists


# -- multi-contact writes -------------------------------------------------------------------------


def test_batch_update_404_is_surfaced_with_the_contacts(make_hook: Callable[..., BrevoHook]) -> None:
    chunks: list[list[dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        chunks.append(json.loads(request.content)["contacts"])
        if len(chunks) == 2:
            return error(404, "No contact found for indexes 3,4", code="document_not_found")
        return ok(None, status=204)

    contacts = [{"email": f"c{i}@example.com", "attributes": {"N": i}} for i in range(250)]
    with pytest.raises(BrevoError) as info:
        make_hook(handler).update_contacts_batch(contacts)
    err = info.value
    assert [len(c) for c in chunks] == [100, 100]  # stopped at the refused batch
    assert err.status == 404
    assert err.metadata["missing_indexes"] == [103, 104]
    assert err.metadata["updated_before"] == 100
    assert "c103@example.com" in str(err) and "c104@example.com" in str(err)
    assert "nothing in this batch was updated" in str(err)


def test_batch_update_chunks_and_counts(make_hook: Callable[..., BrevoHook]) -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)["contacts"]))
        return ok(None, status=204)

    assert make_hook(handler).update_contacts_batch([{"id": i} for i in range(230)], batch_size=100) == 230
    assert sizes == [100, 100, 30]


@pytest.mark.parametrize("action", ["add", "remove"])
def test_list_membership_chunks_at_150(make_hook: Callable[..., BrevoHook], action: str) -> None:
    seen: list[tuple[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        emails = json.loads(request.content)["emails"]
        seen.append((request.url.path, emails))
        return ok({"contacts": {"success": emails[:-1], "failure": emails[-1:]}}, status=201)

    emails = [f"c{i}@example.com" for i in range(400)]
    hook = make_hook(handler)
    result = getattr(hook, f"{action}_to_list" if action == "add" else "remove_from_list")(7, emails=emails)
    assert [len(e) for _, e in seen] == [150, 150, 100]
    assert {path for path, _ in seen} == {f"/v3/contacts/lists/7/contacts/{action}"}
    assert sorted(result["success"] + result["failure"]) == sorted(emails)
    assert len(result["failure"]) == 3


def test_list_membership_needs_exactly_one_kind(make_hook: Callable[..., BrevoHook]) -> None:
    hook = make_hook(lambda r: ok({}))
    with pytest.raises(ValueError):
        hook.add_to_list(1, emails=["a@example.com"], ids=[1])
    with pytest.raises(ValueError):
        hook.remove_from_list(1)


# -- import body splitting ----------------------------------------------------------------------


def _contacts(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "email": f"contact{i:07d}@example.com",
            "attributes": {"FIRSTNAME": f"Prénom{i}", "AGE": i % 90},
        }


def test_bodies_stay_under_limit_and_carry_every_contact_once() -> None:
    limit = 50_000
    envelope = {"listIds": [3], "updateExistingContacts": True}
    bodies = list(iter_import_bodies(_contacts(5_000), envelope, max_body_bytes=limit))
    assert len(bodies) > 5
    emails: list[str] = []
    for body in bodies:
        assert len(body.content) <= limit
        parsed = json.loads(body.content)
        assert parsed["listIds"] == [3] and parsed["updateExistingContacts"] is True
        assert len(parsed["jsonBody"]) == body.count
        emails += [item["email"] for item in parsed["jsonBody"]]
    assert emails == [c["email"] for c in _contacts(5_000)]
    # Bodies are filled: all but the last are within one contact of the limit.
    biggest_item = max(len(_brevo_import.dumps(to_import_item(c, 0))) for c in _contacts(5_000))
    assert all(len(b.content) > limit - biggest_item - 1 for b in bodies[:-1])


def test_each_contact_is_serialised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = _brevo_import.dumps

    def counting(value: Any) -> bytes:
        nonlocal calls
        calls += 1
        return real(value)

    monkeypatch.setattr(_brevo_import, "dumps", counting)
    bodies = list(iter_import_bodies(_contacts(3_000), {"listIds": [1]}, max_body_bytes=20_000))
    assert len(bodies) > 10
    assert calls == 3_000 + 1  # each contact once, plus the envelope


def test_identifiers_move_into_attributes_and_missing_ones_are_refused() -> None:
    item = to_import_item({"sms": "+33612345678", "ext_id": "X1", "attributes": {"FNAME": "A"}}, 0)
    assert item == {"attributes": {"FNAME": "A", "SMS": "+33612345678", "EXT_ID": "X1"}}
    assert to_import_item({"attributes": {"EXT_ID": "X2"}}, 0) == {"attributes": {"EXT_ID": "X2"}}
    with pytest.raises(ValueError, match="#4 has no identifier"):
        to_import_item({"attributes": {"FNAME": "A"}}, 4)
    with pytest.raises(ValueError, match="unsupported keys"):
        to_import_item({"email": "a@example.com", "listIds": [1]}, 0)


def test_oversized_contact_is_refused() -> None:
    huge = [{"email": "a@example.com", "attributes": {"NOTE": "x" * 5_000}}]
    with pytest.raises(ValueError, match="over the 1000-byte body limit"):
        list(iter_import_bodies(huge, {"listIds": [1]}, max_body_bytes=1_000))
    with pytest.raises(ValueError, match="10 MB"):
        list(iter_import_bodies(huge, {"listIds": [1]}, max_body_bytes=11_000_000))


def test_import_20k_contacts_at_most_one_request_per_1000(make_hook: Callable[..., BrevoHook]) -> None:
    n = 25_000
    limit = 400_000
    received: list[dict[str, Any]] = []
    yielded = 0
    yielded_at_first_post: list[int] = []

    def source() -> Iterator[dict[str, Any]]:
        nonlocal yielded
        for contact in _contacts(n):
            yielded += 1
            yield contact

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v3/contacts/import"
        assert len(request.content) <= limit
        if not received:
            yielded_at_first_post.append(yielded)
        received.append(json.loads(request.content))
        return ok({"processId": 100 + len(received)}, status=202)

    hook = make_hook(handler)
    process_ids = hook.import_contacts(source(), list_ids=[5], max_body_bytes=limit)
    assert process_ids == [101 + i for i in range(len(received))]
    emails = [item["email"] for body in received for item in body["jsonBody"]]
    assert len(emails) == n and len(set(emails)) == n
    assert all(body["listIds"] == [5] and body["disableNotification"] is True for body in received)
    assert hook.stats.total_requests / (n / 1000) <= 1
    assert hook.stats.import_bodies == len(received) and hook.stats.imported_contacts == n
    assert yielded_at_first_post[0] < n  # streamed: the first body went out before the source was drained


def test_import_retries_5xx_when_updating_existing(make_hook: Callable[..., BrevoHook]) -> None:
    calls: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.content)
        if len(calls) == 1:
            return error(503, "busy")
        return ok({"processId": 9}, status=202)

    assert make_hook(handler).import_contacts(_contacts(10), list_ids=[1]) == [9]
    assert len(calls) == 2 and calls[0] == calls[1]


def test_import_of_nothing_sends_nothing(make_hook: Callable[..., BrevoHook]) -> None:
    hook = make_hook(lambda r: pytest.fail("no request expected"))
    assert hook.import_contacts([], list_ids=[1]) == []
    with pytest.raises(ValueError):
        hook.import_contacts([{"email": "a@example.com"}], list_ids=[])


# -- process polling ------------------------------------------------------------------------------


class FakeProcesses:
    """/processes endpoints whose processes complete at given (fake) times; logs request times."""

    def __init__(self, clock: FakeClock, done_at: dict[int, float], *, headers: bool = True) -> None:
        self.clock = clock
        self.done_at = done_at
        self.failed: set[int] = set()
        self.headers = headers
        self.log: list[tuple[float, str]] = []
        self.window_start = clock.now
        self.used = 0

    def doc(self, pid: int) -> dict[str, Any]:
        if pid in self.failed:
            return {"id": pid, "name": "IMPORTUSER", "status": "failed", "error": "bad file"}
        status = "completed" if self.clock.now >= self.done_at[pid] else "in_process"
        return {"id": pid, "name": "IMPORTUSER", "status": status}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append((self.clock.now, request.url.path))
        if self.clock.now - self.window_start >= 3600:
            self.window_start, self.used = self.clock.now, 0
        self.used += 1
        headers = {}
        if self.headers:
            reset = 3600 - (self.clock.now - self.window_start)
            headers = {
                "x-sib-ratelimit-limit": "100",
                "x-sib-ratelimit-remaining": str(max(100 - self.used, 0)),
                "x-sib-ratelimit-reset": f"{reset:.0f}",
            }
        if self.used > 100:
            return error(429, "Too many requests", **headers)
        if request.url.path == "/v3/processes":
            others = [{"id": 1000 + i, "name": "CONTACT_EXPORT", "status": "completed"} for i in range(3)]
            docs = others + [self.doc(pid) for pid in sorted(self.done_at, reverse=True)]
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            return ok({"processes": docs[offset : offset + limit], "count": len(docs)}, headers=headers)
        pid = int(request.url.path.rsplit("/", 1)[1])
        return ok(self.doc(pid), headers=headers)


def _max_in_any_hour(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 3600) for start in times)


@pytest.mark.parametrize("headers", [True, False])
def test_polling_stays_within_processes_budget(
    make_hook: Callable[..., BrevoHook], clock: FakeClock, headers: bool
) -> None:
    start = clock.now
    server = FakeProcesses(clock, {11: start + 3 * 3600, 12: start + 3 * 3600 + 100}, headers=headers)
    hook = make_hook(server)
    docs = hook.wait_for_processes([11, 12], timeout=6 * 3600)
    assert [d["id"] for d in docs] == [11, 12] and all(d["status"] == "completed" for d in docs)
    times = [t for t, _ in server.log]
    assert _max_in_any_hour(times) <= 100
    assert hook.stats.rate_limited == 0
    assert hook.stats.requests["processes"] == len(times)
    # One listing per tick covers both ids; per-id polling only once a single process is left.
    assert all(path == "/v3/processes" for t, path in server.log if t < start + 3 * 3600)
    assert {path for t, path in server.log if t >= start + 3 * 3600} <= {"/v3/processes", "/v3/processes/12"}
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 2
    if not headers:  # no budget information: the doubling schedule alone paces the polls
        assert gaps[:5] == [4, 8, 16, 32, 60]


def test_polling_stretches_interval_when_budget_is_low(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.now)
        status = "completed" if len(times) >= 3 else "queued"
        headers = {"x-sib-ratelimit-remaining": "4", "x-sib-ratelimit-reset": "2000"}
        return ok({"id": 5, "name": "IMPORTUSER", "status": status}, headers=headers)

    make_hook(handler).wait_for_processes([5])
    assert times[1] - times[0] >= 2000 / 4  # the budget left must last until the window resets


def test_single_process_polls_by_id_and_few_times(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    server = FakeProcesses(clock, {21: clock.now + 30})
    docs = make_hook(server).wait_for_processes([21])
    assert docs[0]["status"] == "completed"
    assert {p for _, p in server.log} == {"/v3/processes/21"}
    assert len(server.log) <= 5  # 2, 4, 8, 16 s ...


def test_failed_process_raises(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    server = FakeProcesses(clock, {31: clock.now, 32: clock.now + 10_000})
    server.failed.add(32)
    with pytest.raises(BrevoError) as info:
        make_hook(server).wait_for_processes([31, 32])
    assert info.value.code == "process_failed" and "bad file" in str(info.value)
    assert info.value.metadata["process"]["id"] == 32


def test_process_wait_times_out(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    server = FakeProcesses(clock, {41: clock.now + 10**9})
    with pytest.raises(BrevoError) as info:
        make_hook(server).wait_for_processes([41], timeout=600)
    assert info.value.code == "process_timeout" and info.value.metadata["pending"] == [41]


def test_polling_falls_back_when_listing_is_unsupported(make_hook: Callable[..., BrevoHook], clock: FakeClock) -> None:
    server = FakeProcesses(clock, {51: clock.now, 52: clock.now})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/processes":
            return error(404, "Not found")
        return server(request)

    docs = make_hook(handler).wait_for_processes([51, 52])
    assert [d["id"] for d in docs] == [51, 52]


def test_stats_count_requests_per_endpoint_group(make_hook: Callable[..., BrevoHook]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/account"):
            return ok({"email": "x@example.com"})
        if request.url.path.startswith("/v3/processes"):
            return ok({"id": 1, "status": "completed"})
        return ok({"attributes": []})

    hook = make_hook(handler)
    hook.test_connection()
    hook.get_attributes()
    hook.get_attributes()
    hook.wait_for_processes([1])
    assert dict(hook.stats.requests) == {"account": 1, "contacts": 2, "processes": 1}
    assert hook.stats.total_requests == 4

"""Fault injection: 5xx answers, slow answers, and connections dropped before or after processing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from airflow_provider_contactsync.sandbox import BrevoSandbox


def api(sandbox: BrevoSandbox, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers={"api-key": sandbox.api_key}, timeout=timeout)


def test_status_rule_fires_the_given_number_of_times(brevo_sandbox: BrevoSandbox) -> None:
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=503, times=1)
    body = {"jsonBody": [{"email": "a@example.com"}], "listIds": [2]}
    with api(brevo_sandbox) as c:
        first = c.post("/contacts/import", json=body)
        assert first.status_code == 503 and "code" in first.json()
        assert c.post("/contacts/import", json=body).status_code == 202
    assert [e["status"] for e in brevo_sandbox.requests(path_prefix="/v3/contacts/import")] == [503, 202]
    assert brevo_sandbox.requests()[0]["fault"] == "status:503"


def test_rules_match_method_and_path(brevo_sandbox: BrevoSandbox) -> None:
    brevo_sandbox.add_fault(method="GET", path="/v3/contacts/*", action="status", status=500)
    with api(brevo_sandbox) as c:
        assert c.get("/contacts").status_code == 200  # prefix rule needs something after the slash
        assert c.get("/contacts/attributes").status_code == 500
        assert c.post("/contacts", json={"email": "a@example.com"}).status_code == 201
        brevo_sandbox.clear_faults()
        assert c.get("/contacts/attributes").status_code == 200


def test_drop_before_processing_writes_nothing(brevo_sandbox: BrevoSandbox) -> None:
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts", action="drop_before", times=1)
    with api(brevo_sandbox) as c, pytest.raises(httpx.TransportError):
        c.post("/contacts", json={"email": "a@example.com"})
    assert brevo_sandbox.contacts() == []
    entry = brevo_sandbox.requests()[-1]
    assert entry["status"] is None and entry["fault"] == "drop_before"


def test_drop_after_processing_keeps_the_write(brevo_sandbox: BrevoSandbox) -> None:
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts", action="drop_after", times=1)
    with api(brevo_sandbox) as c:
        with pytest.raises(httpx.TransportError):
            c.post("/contacts", json={"email": "a@example.com"})
        # the client cannot know: the contact exists, and a blind retry hits the duplicate rule
        retry = c.post("/contacts", json={"email": "a@example.com"})
        assert retry.status_code == 400 and retry.json()["code"] == "duplicate_parameter"
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["a@example.com"]
    entry = brevo_sandbox.requests()[0]
    assert entry["status"] == 201 and entry["fault"] == "drop_after"


def test_delay_rule_holds_the_answer(brevo_sandbox: BrevoSandbox) -> None:
    brevo_sandbox.add_fault(path="/v3/account", action="delay", ms=5000, times=1)
    with api(brevo_sandbox, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/account")
    with api(brevo_sandbox) as c:
        assert c.get("/account").status_code == 200


def test_faults_through_control_endpoints(brevo_sandbox: BrevoSandbox) -> None:
    ctl = httpx.Client(base_url=brevo_sandbox.base_url + "/_sandbox", headers={"api-key": brevo_sandbox.api_key})
    rule = ctl.post("/faults", json={"method": "GET", "path": "/v3/processes", "action": "status", "status": 502})
    assert rule.status_code == 201 and rule.json()["action"] == "status"
    assert ctl.get("/faults").json()["faults"][0]["status"] == 502
    with api(brevo_sandbox) as c:
        assert c.get("/processes").status_code == 502
        assert ctl.delete("/faults").status_code == 204
        assert c.get("/processes").status_code == 200
    assert ctl.post("/faults", json={"action": "explode"}).status_code == 400


@pytest.mark.parametrize(
    ("settings", "check"),
    [
        ({"fault_5xx": 1.0}, lambda r: r.status_code in (500, 502, 503, 504)),
        ({"rate_429": 1.0}, lambda r: r.status_code == 429),
    ],
)
def test_random_rates_at_one(
    brevo_sandbox_factory: Callable[..., BrevoSandbox], settings: dict[str, float], check: Callable
) -> None:
    sandbox = brevo_sandbox_factory(**settings)
    with api(sandbox) as c:
        assert all(check(c.get("/contacts")) for _ in range(5))


def test_random_drop_rate(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(fault_drop=1.0)
    with api(sandbox) as c:
        for _ in range(5):
            with pytest.raises(httpx.TransportError):
                c.get("/contacts")
    assert {e["fault"] for e in sandbox.requests()} <= {"drop_before", "drop_after"}


def test_slow_setting_delays_every_answer(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(slow_ms=3000)
    with api(sandbox, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/contacts")


def test_concurrent_clients_are_served(brevo_sandbox: BrevoSandbox) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with api(brevo_sandbox) as c:
                for i in range(10):
                    assert c.post("/contacts", json={"email": f"w{n}-{i}@example.com"}).status_code == 201
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(brevo_sandbox.contacts()) == 80

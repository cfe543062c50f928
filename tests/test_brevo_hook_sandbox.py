"""BrevoHook against the local Brevo sandbox: real HTTP, injected sleep (no real waiting on pacing)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.hooks.brevo import BrevoHook, BrevoOutcomeUnknownError
from airflow_provider_contactsync.sandbox import BrevoSandbox

CONN_ID = "brevo_sandbox_it"


class FakeClock:
    """Counts waits instead of waiting; yields the CPU briefly so the sandbox's worker can run."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        time.sleep(0.005)

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def hook_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., BrevoHook]]:
    hooks: list[BrevoHook] = []

    def make(sandbox: BrevoSandbox, *, api_key: str | None = None, **kwargs: Any) -> BrevoHook:
        conn = {"conn_type": "brevo", "host": sandbox.url, "password": api_key or sandbox.api_key}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        clock = FakeClock()
        hook = BrevoHook(CONN_ID, sleep=clock.sleep, monotonic=clock.monotonic, **kwargs)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


def logged(sandbox: BrevoSandbox, method: str | None = None, path_prefix: str | None = None) -> list[dict]:
    """The sandbox logs each request before the client sees the answer, so the log is complete here."""
    return sandbox.requests(method, path_prefix)


def contacts(n: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield {"email": f"user{i:06d}@example.com", "attributes": {"FIRSTNAME": f"F{i}", "LASTNAME": "Doe"}}


def import_and_wait(hook: BrevoHook, items: Any, list_id: int, **kwargs: Any) -> list[dict[str, Any]]:
    return hook.wait_for_processes(hook.import_contacts(items, list_ids=[list_id], **kwargs), first_interval=0.05)


def test_test_connection(brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]) -> None:
    assert hook_for(brevo_sandbox).test_connection()[0] is True
    bad_key = "xkeysib-wrong-key-0123456789"
    ok, message = hook_for(brevo_sandbox, api_key=bad_key).test_connection()
    assert ok is False and "401" in message and bad_key not in message


def test_single_contact_round_trip(brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]) -> None:
    hook = hook_for(brevo_sandbox)
    assert {a["name"] for a in hook.get_attributes()} >= {"FIRSTNAME", "LASTNAME"}
    contact_id = hook.create_contact("ann+tag@example.com", attributes={"FIRSTNAME": "Ann"})
    assert isinstance(contact_id, int)
    assert hook.get_contact("ann+tag@example.com")["attributes"]["FIRSTNAME"] == "Ann"
    with pytest.raises(BrevoError) as info:
        hook.create_contact("ann+tag@example.com")
    assert info.value.status == 400 and info.value.path == "/contacts"
    assert hook.create_contact("ann+tag@example.com", attributes={"LASTNAME": "Lee"}, update_enabled=True) is None
    hook.update_contact(contact_id, "ID", attributes={"FIRSTNAME": "Anne"})
    assert hook.get_contact(str(contact_id), "contact_id")["attributes"] == {
        "FIRSTNAME": "Anne",
        "LASTNAME": "Lee",
    }
    assert hook.delete_contact("ann+tag@example.com") is True
    assert hook.get_contact("ann+tag@example.com") is None
    assert hook.delete_contact("ann+tag@example.com", missing_ok=True) is False


def test_bulk_import_20k_under_one_request_per_1000(
    brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]
) -> None:
    list_id = brevo_sandbox.create_list("bulk")
    hook = hook_for(brevo_sandbox)
    brevo_sandbox.clear_requests()
    n, limit = 20_000, 500_000
    docs = import_and_wait(hook, contacts(n), list_id, max_body_bytes=limit)
    assert all(d["status"] == "completed" for d in docs)
    imports = logged(brevo_sandbox, "POST", "/v3/contacts/import")
    assert len(imports) == len(docs) > 1
    assert all(e["body_size"] <= limit for e in imports)
    non_polling = [e for e in logged(brevo_sandbox) if not e["path"].startswith("/v3/processes")]
    assert len(non_polling) / (n / 1000) <= 1
    stored = brevo_sandbox.contacts()
    assert len(stored) == n and len({c["email"] for c in stored}) == n
    assert all(list_id in c["listIds"] for c in stored)


def test_iter_contacts_paginates(brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]) -> None:
    list_id = brevo_sandbox.create_list("all")
    hook = hook_for(brevo_sandbox)
    import_and_wait(hook, contacts(250), list_id)
    brevo_sandbox.clear_requests()
    seen = list(hook.iter_contacts(page_size=100, list_id=list_id))
    assert len(seen) == 250
    assert [c["id"] for c in seen] == sorted(c["id"] for c in seen)
    assert [e["query"]["offset"] for e in logged(brevo_sandbox, "GET", "/v3/contacts")] == ["0", "100", "200"]


def test_batch_update_404_names_the_unknown_contact(
    brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]
) -> None:
    list_id = brevo_sandbox.create_list("batch")
    hook = hook_for(brevo_sandbox)
    import_and_wait(hook, contacts(3), list_id)
    batch = [
        {"email": "user000000@example.com", "attributes": {"LASTNAME": "Changed"}},
        {"email": "ghost@example.com", "attributes": {"LASTNAME": "Changed"}},
        {"email": "user000001@example.com", "attributes": {"LASTNAME": "Changed"}},
    ]
    with pytest.raises(BrevoError) as info:
        hook.update_contacts_batch(batch)
    assert info.value.status == 404 and info.value.metadata["missing_indexes"] == [1]
    assert "ghost@example.com" in str(info.value)
    assert {c["attributes"]["LASTNAME"] for c in brevo_sandbox.contacts()} == {"Doe"}  # nothing updated
    assert hook.update_contacts_batch([batch[0], batch[2]]) == 2


def test_list_add_and_remove_in_chunks_of_150(brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]) -> None:
    base_list, extra_list = brevo_sandbox.create_list("base"), brevo_sandbox.create_list("extra")
    hook = hook_for(brevo_sandbox)
    import_and_wait(hook, contacts(400), base_list)
    emails = [c["email"] for c in contacts(400)]
    brevo_sandbox.clear_requests()
    added = hook.add_to_list(extra_list, emails=emails)
    assert len(added["success"]) == 400 and added["failure"] == []
    assert len(logged(brevo_sandbox, "POST", f"/v3/contacts/lists/{extra_list}/contacts/add")) == 3
    assert sum(extra_list in c["listIds"] for c in brevo_sandbox.contacts()) == 400
    removed = hook.remove_from_list(extra_list, emails=emails[:200])
    assert len(removed["success"]) == 200
    assert sum(extra_list in c["listIds"] for c in brevo_sandbox.contacts()) == 200


def test_dropped_answer_after_create_is_not_retried(
    brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]
) -> None:
    hook = hook_for(brevo_sandbox)
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts", action="drop_after", times=1)
    with pytest.raises(BrevoOutcomeUnknownError, match="outcome unknown"):
        hook.create_contact("once@example.com")
    assert len(logged(brevo_sandbox, "POST", "/v3/contacts")) == 1
    # Brevo did create it: a blind retry would have failed as a duplicate (or doubled a side effect).
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["once@example.com"]


def test_dropped_connection_on_idempotent_read_is_retried(
    brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]
) -> None:
    hook = hook_for(brevo_sandbox)
    brevo_sandbox.add_fault(method="GET", path="/v3/contacts/attributes", action="drop_before", times=1)
    assert hook.get_attributes()
    assert len(logged(brevo_sandbox, "GET", "/v3/contacts/attributes")) == 2
    assert hook.stats.retries == 1


def test_import_retried_after_5xx_and_429(brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]) -> None:
    list_id = brevo_sandbox.create_list("retry")
    hook = hook_for(brevo_sandbox)
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=503, times=2)
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=429, times=1)
    docs = import_and_wait(hook, contacts(50), list_id)
    assert docs[0]["status"] == "completed"
    assert [e["status"] for e in logged(brevo_sandbox, "POST", "/v3/contacts/import")] == [503, 503, 429, 202]
    assert hook.stats.rate_limited == 1 and hook.stats.retries == 3
    assert len(brevo_sandbox.contacts()) == 50


def test_hook_reads_the_sandbox_rate_limit_headers(
    brevo_sandbox_factory: Callable[..., BrevoSandbox], hook_for: Callable[..., BrevoHook]
) -> None:
    sandbox = brevo_sandbox_factory(contacts_rps=7)
    hook = hook_for(sandbox)
    hook.get_attributes()
    bucket = hook.http.buckets["contacts"]
    assert bucket.limit == 7 and bucket.remaining == 6


def test_polling_several_imports_uses_one_listing_per_tick(
    brevo_sandbox_factory: Callable[..., BrevoSandbox], hook_for: Callable[..., BrevoHook]
) -> None:
    sandbox = brevo_sandbox_factory(import_delay=0.3)
    list_id = sandbox.create_list("poll")
    hook = hook_for(sandbox)
    ids = hook.import_contacts(contacts(3_000), list_ids=[list_id], max_body_bytes=50_000)
    assert len(ids) > 3
    sandbox.clear_requests()
    docs = hook.wait_for_processes(ids, first_interval=0.05)
    assert [d["id"] for d in docs] == ids and all(d["status"] == "completed" for d in docs)
    polls = logged(sandbox, path_prefix="/v3/processes")
    listings = [e for e in polls if e["path"] == "/v3/processes"]
    by_id = {e["path"] for e in polls if e["path"] != "/v3/processes"}
    assert listings and by_id <= {f"/v3/processes/{ids[-1]}"}  # per-id polling only for a last straggler
    assert len(polls) == hook.stats.requests["processes"]  # one request per tick


def test_multiple_choice_options_come_from_the_account(
    brevo_sandbox: BrevoSandbox, hook_for: Callable[..., BrevoHook]
) -> None:
    """GET /contacts/attributes gives a multiple-choice attribute's options as multiCategoryOptions."""
    from airflow_provider_contactsync.core.attributes import AttributeCatalog, converter_for
    from airflow_provider_contactsync.core.errors import RowError

    brevo_sandbox.create_attribute("INTERESTS", "multiple-choice", options=["News", "Sales", "Events"])
    catalog = AttributeCatalog.from_api(hook_for(brevo_sandbox).get_attributes())
    interests = catalog.get("INTERESTS")
    assert interests is not None and interests.kind == "multiple-choice"
    convert = converter_for(interests, text_max_length=100)
    assert convert(["news", "EVENTS"]) == ["News", "Events"]
    with pytest.raises(RowError, match="'jobs' is not one of the options: News, Sales, Events"):
        convert(["news", "jobs"])

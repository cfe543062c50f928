"""The loader sends only new or changed contacts, and a retried load resumes without re-sending."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_contactsync.core.spec import Destination
from airflow_provider_contactsync.hooks.brevo import BrevoHook
from airflow_provider_contactsync.load import ContactLoader
from airflow_provider_contactsync.sandbox import BrevoSandbox
from airflow_provider_contactsync.state import DigestStore


@pytest.fixture
def hook(brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrevoHook]:
    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    conn["extra"] = json.dumps({"poll_interval": 0.01})
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_LOAD", json.dumps(conn))
    with BrevoHook("brevo_load") as hook:
        yield hook


@pytest.fixture
def list_id(brevo_sandbox: BrevoSandbox) -> int:
    return brevo_sandbox.create_list("customers")


def chunk(n: int, *, name: str = "Ada", start: int = 0) -> list[tuple[Any, dict[str, Any]]]:
    return [
        (i, {"email": f"user{i}@example.com", "attributes": {"FIRSTNAME": name, "EXT_ID": str(i)}})
        for i in range(start, start + n)
    ]


def run(hook: BrevoHook, db: Path, list_id: int, chunks: list, *, full_refresh: bool = False) -> dict[str, int]:
    store = DigestStore(str(db))
    try:
        loader = ContactLoader(hook, store, Destination(list_ids=[list_id]), full_refresh=full_refresh)
        try:
            loader.recover()
            for c in chunks:
                loader.submit(c)
            return loader.finish()
        finally:
            loader.close()
    finally:
        store.close()


def imports(sandbox: BrevoSandbox) -> int:
    return len(sandbox.requests("POST", "/v3/contacts/import"))


def test_created_then_unchanged_then_updated(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "sent.sqlite"
    first = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert (first["created"], first["updated"], first["unchanged"]) == (5, 0, 0)
    assert imports(brevo_sandbox) == 2
    assert len(brevo_sandbox.contacts()) == 5

    again = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 5)
    assert imports(brevo_sandbox) == 2  # nothing changed: no write call at all

    changed = run(hook, db, list_id, [chunk(1, name="Grace", start=1)])
    assert (changed["created"], changed["updated"]) == (0, 1)
    firstnames = {c["email"]: c["attributes"].get("FIRSTNAME") for c in brevo_sandbox.contacts()}
    assert firstnames["user1@example.com"] == "Grace"


def test_later_row_with_same_identity_wins(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    rows = chunk(1, name="Old") + chunk(1, name="New")
    counts = run(hook, tmp_path / "sent.sqlite", list_id, [rows])
    assert counts["superseded"] == 1 and counts["created"] == 1
    (contact,) = brevo_sandbox.contacts()
    assert contact["attributes"]["FIRSTNAME"] == "New"


def test_full_refresh_sends_everything_again(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "sent.sqlite"
    run(hook, db, list_id, [chunk(4)])
    counts = run(hook, db, list_id, [chunk(4)], full_refresh=True)
    assert (counts["updated"], counts["unchanged"]) == (4, 0)
    assert imports(brevo_sandbox) == 2


def test_retry_after_crash_settles_pending_imports_and_sends_nothing_twice(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "sent.sqlite"
    store = DigestStore(str(db))
    crashed = ContactLoader(hook, store, Destination(list_ids=[list_id]), full_refresh=False)
    crashed.submit(chunk(3))
    crashed._collect(keep=0)  # the body was uploaded and recorded as pending...
    crashed.close()
    store.close()  # ...then the worker died before waiting for the import

    retry = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert retry["recovered"] == 3
    assert (retry["created"], retry["unchanged"]) == (2, 3)
    assert imports(brevo_sandbox) == 2  # the crashed attempt's import, then only the two new contacts
    assert len(brevo_sandbox.contacts()) == 5


def test_failed_import_is_not_recorded(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=400, times=1)
    from airflow_provider_contactsync.core.errors import BrevoError

    with pytest.raises(BrevoError):
        run(hook, tmp_path / "sent.sqlite", list_id, [chunk(2)])
    counts = run(hook, tmp_path / "sent.sqlite", list_id, [chunk(2)])
    assert counts["created"] == 2

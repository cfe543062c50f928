"""Bulk writes to existing contacts against the sandbox: contacts addressed by email, EXT_ID or phone
only, contacts Brevo no longer has, and the request counts (150 a list call, 100 a batch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_contactsync.core.spec import Deletes
from airflow_provider_contactsync.hooks.brevo import BrevoHook
from airflow_provider_contactsync.load.bulk import change_lists, update_batches
from airflow_provider_contactsync.load.identity import ContactIds
from airflow_provider_contactsync.load.ledger import ContactLedger, LedgerContact
from airflow_provider_contactsync.load.removal import Removal, remove
from airflow_provider_contactsync.sandbox import BrevoSandbox


@pytest.fixture
def hook(brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrevoHook]:
    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_BULK", json.dumps(conn))
    with BrevoHook("brevo_bulk") as made:
        yield made


def create(sandbox: BrevoSandbox, **body: object) -> None:
    httpx.post(f"{sandbox.url}/contacts", json=body, headers={"api-key": sandbox.api_key}).raise_for_status()


def people(sandbox: BrevoSandbox, list_id: int) -> list[LedgerContact]:
    """An email contact, an EXT_ID-only contact and a phone-only contact, all in the list."""
    create(sandbox, email="mail@example.com", listIds=[list_id])
    create(sandbox, ext_id="x-1", listIds=[list_id])
    create(sandbox, attributes={"SMS": "+33612345678"}, listIds=[list_id])
    return [
        LedgerContact("K:1", ContactIds(email="mail@example.com"), 1, (), None),
        LedgerContact("K:2", ContactIds(ext_id="x-1"), 1, (), None),
        LedgerContact("K:3", ContactIds(sms="33612345678"), 1, (), None),
    ]


def test_list_changes_reach_contacts_by_email_ext_id_and_phone(brevo_sandbox: BrevoSandbox, hook: BrevoHook) -> None:
    source, gold = brevo_sandbox.create_list("source"), brevo_sandbox.create_list("gold")
    members = [c.ids for c in people(brevo_sandbox, source)]

    assert change_lists(hook, gold, "add", members) == 3
    assert change_lists(hook, source, "remove", members) == 3

    assert all(c["listIds"] == [gold] for c in brevo_sandbox.contacts())


@pytest.mark.parametrize("behavior", ["unlink", "blacklist", "delete"])
def test_removals_reach_every_kind_of_contact_and_count_those_already_gone(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, tmp_path: Path, behavior: str
) -> None:
    source = brevo_sandbox.create_list("source")
    contacts = people(brevo_sandbox, source)
    gone = LedgerContact("K:4", ContactIds(email="gone@example.com"), 1, (), None)  # deleted in Brevo by someone
    ledger = ContactLedger(str(tmp_path / "ledger.sqlite"))

    counts = remove(hook, ledger, Deletes(behavior=behavior), [Removal(c, "test") for c in [*contacts, gone]], [source])

    left = brevo_sandbox.contacts()
    if behavior == "unlink":
        assert counts["unlinked"] == 4 and len(left) == 3 and all(c["listIds"] == [] for c in left)
    elif behavior == "blacklist":
        assert (counts["blacklisted"], counts["already gone from Brevo"]) == (3, 1)
        assert all(c["emailBlacklisted"] and c["smsBlacklisted"] for c in left)
    else:
        assert (counts["deleted"], counts["already gone from Brevo"], left) == (3, 1, [])


def test_a_batch_naming_unknown_contacts_is_sent_again_without_them(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook
) -> None:
    for n in range(5):
        create(brevo_sandbox, email=f"k{n}@example.com")
    bodies = [
        {"email": f"{'k' if n % 2 == 0 else 'u'}{n}@example.com", "attributes": {"FIRSTNAME": "X"}} for n in range(5)
    ]
    brevo_sandbox.clear_requests()

    missing = update_batches(hook, bodies, batch_size=100)

    assert missing == {1, 3}
    assert len(brevo_sandbox.requests("POST", "/v3/contacts/batch")) == 2  # refused whole once, then the rest
    names = {c["email"]: c["attributes"].get("FIRSTNAME") for c in brevo_sandbox.contacts()}
    assert names == {
        "k0@example.com": "X",
        "k1@example.com": None,
        "k2@example.com": "X",
        "k3@example.com": None,
        "k4@example.com": "X",
    }

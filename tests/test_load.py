"""The loader against the Brevo sandbox: counts are what Brevo did, refusals are found and named, identity
changes update the contact, and refused contacts are sent again next run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.core.spec import Destination
from airflow_provider_contactsync.hooks.brevo import BrevoHook
from airflow_provider_contactsync.load import ContactLedger, ContactLoader, LoadResult
from airflow_provider_contactsync.sandbox import BrevoSandbox

Chunk = list[tuple[Any, dict[str, Any]]]


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


def contact(key: Any, email: str | None, name: str = "Ada", *, ext_id: Any = "same", sms: str | None = None) -> tuple:
    attributes: dict[str, Any] = {"FIRSTNAME": name, "EXT_ID": str(key) if ext_id == "same" else ext_id}
    if attributes["EXT_ID"] is None:
        del attributes["EXT_ID"]
    if sms:
        attributes["SMS"] = sms
    item: dict[str, Any] = {"attributes": attributes}
    if email:
        item["email"] = email
    return key, item


def chunk(n: int, *, name: str = "Ada", start: int = 0) -> Chunk:
    return [contact(i, f"user{i}@example.com", name) for i in range(start, start + n)]


def run(
    hook: BrevoHook,
    db: Path,
    list_id: int,
    chunks: list[Chunk],
    *,
    full_refresh: bool = False,
    update_existing: bool = True,
    keyed: bool = True,
) -> LoadResult:
    """One load as the load task runs it (chunks staged in memory)."""
    staged = {f"chunk-{i}": c for i, c in enumerate(chunks)}
    ledger = ContactLedger(str(db))
    try:
        loader = ContactLoader(
            hook,
            ledger,
            Destination(list_ids=[list_id], update_existing=update_existing),
            full_refresh=full_refresh,
            keyed=keyed,
            run_id="run",
            read_chunk=staged.__getitem__,
        )
        return loader.run(list(staged))
    finally:
        ledger.close()


def by_ext_id(sandbox: BrevoSandbox) -> dict[str, dict[str, Any]]:
    return {c["attributes"].get("EXT_ID"): c for c in sandbox.contacts()}


def imports(sandbox: BrevoSandbox) -> int:
    return len(sandbox.requests("POST", "/v3/contacts/import"))


def existing(sandbox: BrevoSandbox, email: str | None, **attributes: Any) -> int:
    """A contact created in Brevo by someone else (not through the loader)."""
    body: dict[str, Any] = {"attributes": attributes}
    if email:
        body["email"] = email
    response = httpx.post(f"{sandbox.url}/contacts", json=body, headers={"api-key": sandbox.api_key})
    response.raise_for_status()
    return int(response.json()["id"])


def counts(result: LoadResult, *names: str) -> tuple[int, ...]:
    return tuple(result.counts[name] for name in names)


def test_created_then_unchanged_then_updated(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "ledger.sqlite"
    first = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert counts(first, "created", "updated", "unchanged", "refused") == (5, 0, 0, 0)
    assert imports(brevo_sandbox) == 2
    assert len(brevo_sandbox.contacts()) == 5

    again = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert counts(again, "created", "updated", "unchanged") == (0, 0, 5)
    assert imports(brevo_sandbox) == 2  # nothing changed: no write call at all

    changed = run(hook, db, list_id, [chunk(1, name="Grace", start=1)])
    assert counts(changed, "created", "updated") == (0, 1)
    assert by_ext_id(brevo_sandbox)["1"]["attributes"]["FIRSTNAME"] == "Grace"


def test_a_contact_brevo_already_had_counts_as_updated_not_created(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    existing(brevo_sandbox, "user0@example.com", FIRSTNAME="Old")
    result = run(hook, tmp_path / "l.sqlite", list_id, [chunk(2)])
    assert counts(result, "created", "updated", "refused") == (1, 1, 0)
    assert by_ext_id(brevo_sandbox)["0"]["attributes"]["FIRSTNAME"] == "Ada"


def test_create_only_leaves_existing_contacts_alone_and_says_so(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    existing(brevo_sandbox, "user0@example.com", FIRSTNAME="Old")
    result = run(hook, tmp_path / "l.sqlite", list_id, [chunk(3)], update_existing=False)
    assert counts(result, "created", "updated", "skipped (exists)") == (2, 0, 1)
    names = {c["email"]: c["attributes"]["FIRSTNAME"] for c in brevo_sandbox.contacts()}
    assert names == {"user0@example.com": "Old", "user1@example.com": "Ada", "user2@example.com": "Ada"}


def test_later_row_of_the_same_contact_wins_and_the_older_is_reported_superseded(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    rows = chunk(1, name="Old") + chunk(1, name="New")
    result = run(hook, tmp_path / "l.sqlite", list_id, [rows[:1], rows[1:]])  # across two chunks
    assert counts(result, "superseded", "created") == (1, 1)
    (problem,) = result.problems
    assert (problem.row, problem.outcome) == (0, "skipped") and "superseded by row 0" in problem.reason
    (only,) = brevo_sandbox.contacts()
    assert only["attributes"]["FIRSTNAME"] == "New"


def test_same_email_on_two_rows_of_a_run_loads_the_newest_and_names_it(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    rows = [
        contact(1, "shared@example.com", "First"),
        contact(2, "other@example.com"),
        contact(3, "shared@example.com"),
    ]
    result = run(hook, tmp_path / "l.sqlite", list_id, [rows])
    assert counts(result, "identity conflicts", "created", "refused") == (1, 2, 0)
    (problem,) = result.problems
    assert (problem.row, problem.outcome, problem.field, problem.value) == (
        1,
        "rejected",
        "EMAIL",
        "shared@example.com",
    )
    assert "also on row 3" in problem.reason
    assert by_ext_id(brevo_sandbox)["3"]["email"] == "shared@example.com" and "1" not in by_ext_id(brevo_sandbox)


def test_email_change_on_a_known_ext_id_updates_the_contact(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [[contact(42, "zoe.martin@example.com", "Zoe")]])
    result = run(hook, db, list_id, [[contact(42, "zoe.new@example.com", "Zoe")]])
    assert counts(result, "updated", "created", "refused") == (1, 0, 0)
    (zoe,) = brevo_sandbox.contacts()
    assert (zoe["email"], zoe["attributes"]["EXT_ID"]) == ("zoe.new@example.com", "42")
    again = run(hook, db, list_id, [[contact(42, "zoe.new@example.com", "Zoe")]])
    assert counts(again, "unchanged") == (1,)


def test_email_change_on_a_source_without_ext_id_follows_the_row_key(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [[contact(7, "old@example.com", ext_id=None)]])
    result = run(hook, db, list_id, [[contact(7, "new@example.com", ext_id=None)]])
    assert counts(result, "updated", "created") == (1, 0)
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["new@example.com"]


def test_new_ext_id_on_a_known_email_updates_the_contact(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [[contact(1, "a@example.com", ext_id="OLD-1")]], keyed=False)
    result = run(hook, db, list_id, [[contact(1, "a@example.com", ext_id="NEW-1")]], keyed=False)
    assert counts(result, "updated", "created", "refused") == (1, 0, 0)
    assert list(by_ext_id(brevo_sandbox)) == ["NEW-1"]


def test_new_identifier_already_taken_is_refused_named_and_retried_until_fixed(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [[contact(1, "a@example.com"), contact(2, "b@example.com")]])
    holder = by_ext_id(brevo_sandbox)["2"]["id"]

    taken = run(hook, db, list_id, [[contact(1, "b@example.com", "Moved")]])  # row 2 still has b@
    assert counts(taken, "refused", "updated", "created") == (1, 0, 0)
    (problem,) = taken.problems
    assert (problem.row, problem.outcome, problem.field, problem.value) == (1, "refused", "EMAIL", "b@example.com")
    assert problem.reason == f"refused by Brevo: EMAIL b@example.com belongs to contact {holder} whose EXT_ID is 2"
    assert by_ext_id(brevo_sandbox)["1"]["email"] == "a@example.com"  # nothing was merged or duplicated

    still = run(hook, db, list_id, [])  # not fixed yet: sent again, refused again
    assert counts(still, "retried", "refused") == (1, 1)

    fixed = run(hook, db, list_id, [[contact(2, "c@example.com")]])  # row 2 moves away from b@
    assert counts(fixed, "retried", "refused", "updated") == (1, 0, 2)
    state = {k: (c["email"], c["attributes"]["FIRSTNAME"]) for k, c in by_ext_id(brevo_sandbox).items()}
    assert state == {"1": ("b@example.com", "Moved"), "2": ("c@example.com", "Ada")}
    assert counts(run(hook, db, list_id, []), "retried") == (0,)


@pytest.mark.parametrize(
    ("kind", "sent", "holder_email", "field", "value"),
    [
        ("EXT_ID", contact(1, "new@example.com", ext_id="99"), "owner@example.com", "EXT_ID", "99"),
        ("SMS", contact(1, "new@example.com", sms="+33612345678"), "owner@example.com", "SMS", "+33612345678"),
    ],
)
def test_identifier_held_by_another_contact_is_refused_with_the_holder_named(
    brevo_sandbox: BrevoSandbox,
    hook: BrevoHook,
    list_id: int,
    tmp_path: Path,
    kind: str,
    sent: tuple,
    holder_email: str,
    field: str,
    value: str,
) -> None:
    attributes = {"EXT_ID": "99"} if kind == "EXT_ID" else {"SMS": "+33612345678"}
    holder = existing(brevo_sandbox, holder_email, **attributes)
    db = tmp_path / "l.sqlite"
    result = run(hook, db, list_id, [[contact(0, "fine@example.com"), sent]])
    assert counts(result, "created", "refused") == (1, 1)
    (problem,) = result.problems
    assert (problem.row, problem.field, problem.value) == (1, field, value)
    assert (
        problem.reason == f"refused by Brevo: {field} {value} belongs to contact {holder} whose EMAIL is {holder_email}"
    )
    assert "new@example.com" not in {c.get("email") for c in brevo_sandbox.contacts()}

    httpx.delete(f"{brevo_sandbox.url}/contacts/{holder}", headers={"api-key": brevo_sandbox.api_key})
    retried = run(hook, db, list_id, [])
    assert counts(retried, "retried", "created", "refused") == (1, 1, 0)
    assert "new@example.com" in {c.get("email") for c in brevo_sandbox.contacts()}


def test_email_brevo_finds_invalid_is_refused_and_the_rest_loads(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    result = run(hook, tmp_path / "l.sqlite", list_id, [[contact(1, "a@b.c"), contact(2, "fine@example.com")]])
    assert counts(result, "refused", "created") == (1, 1)
    (problem,) = result.problems
    assert (problem.row, problem.field, problem.value) == (1, "EMAIL", "a@b.c")
    assert "is invalid for Brevo" in problem.reason


def test_full_refresh_finds_refusals_too(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [chunk(3)])
    existing(brevo_sandbox, "owner@example.com", SMS="+33612345678")
    rows = chunk(3)
    rows[1][1]["attributes"]["SMS"] = "+33612345678"
    result = run(hook, db, list_id, [rows], full_refresh=True)
    assert counts(result, "updated", "refused", "unchanged") == (2, 1, 0)
    assert [p.row for p in result.problems] == [1]


def test_retry_after_crash_settles_pending_imports_and_sends_nothing_twice(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    ledger = ContactLedger(str(db))
    staged = {"c": chunk(3)}
    crashed = ContactLoader(
        hook, ledger, Destination(list_ids=[list_id]), full_refresh=False, keyed=True, read_chunk=staged.__getitem__
    )
    crashed.plan(["c"])
    crashed.submit(chunk(3))
    crashed._collect(keep=0)  # the body was uploaded and recorded as pending...
    crashed.close()
    ledger.close()  # ...then the worker died before waiting for the import

    retry = run(hook, db, list_id, [chunk(3), chunk(2, start=3)])
    assert counts(retry, "recovered", "unchanged", "created") == (3, 3, 2)
    assert imports(brevo_sandbox) == 2  # the crashed attempt's import, then only the two new contacts
    assert len(brevo_sandbox.contacts()) == 5


def test_failed_import_is_not_recorded(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=400, times=1)
    with pytest.raises(BrevoError):
        run(hook, tmp_path / "l.sqlite", list_id, [chunk(2)])
    result = run(hook, tmp_path / "l.sqlite", list_id, [chunk(2)])
    assert counts(result, "created") == (2,)


def test_counting_what_brevo_did_costs_two_requests_without_refusals(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    run(hook, tmp_path / "clean.sqlite", list_id, [chunk(1500)])
    listing = brevo_sandbox.requests("GET", "/v3/contacts")
    assert [r["query"].get("limit") for r in listing] == ["1", "1"]  # contacts counted before and after, that's all


def test_finding_refusals_reads_back_the_modified_contacts_a_page_per_thousand(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    existing(brevo_sandbox, "owner@example.com", EXT_ID="X")
    rows = chunk(1500, start=2000)
    rows[10] = contact(2010, "user2010@example.com", ext_id="X")
    result = run(hook, tmp_path / "refused.sqlite", list_id, [rows])
    assert counts(result, "refused", "created") == (1, 1499)
    reads = [r for r in brevo_sandbox.requests("GET") if r["path"].startswith("/v3/contacts")]
    pages = [r for r in reads if "modifiedSince" in r["query"]]
    assert len(pages) == 2  # 1,500 modified contacts: two pages of 1,000
    assert len(reads) - len(pages) - 2 <= 3  # besides the two counts: at most a lookup per identifier


def test_email_change_to_an_address_brevo_finds_invalid_is_refused_with_brevos_words(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    db = tmp_path / "l.sqlite"
    run(hook, db, list_id, [[contact(5, "ok@example.com")]])
    result = run(hook, db, list_id, [[contact(5, "broken@b.c")]])
    (problem,) = result.problems
    assert (problem.outcome, problem.field, problem.value) == ("refused", "EMAIL", "broken@b.c")
    assert problem.reason == "refused by Brevo: Invalid email address"
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["ok@example.com"]


def test_identity_check_reads_only_chunks_with_shared_identifiers_when_the_map_task_hashed_them(
    brevo_sandbox: BrevoSandbox, hook: BrevoHook, list_id: int, tmp_path: Path
) -> None:
    from airflow_provider_contactsync.core.identifiers import IdentityColumns

    staged = {"c0": chunk(5), "c1": chunk(5, start=5), "c2": [*chunk(4, start=10), contact(99, "user2@example.com")]}
    reads: list[str] = []

    def read_chunk(url: str) -> Chunk:
        reads.append(url)
        return staged[url]

    def read_identities(url: str) -> IdentityColumns:
        identities = IdentityColumns()
        identities.add_chunk(staged[url], keyed=True)
        return identities

    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    loader = ContactLoader(
        hook,
        ledger,
        Destination(list_ids=[list_id]),
        full_refresh=False,
        keyed=True,
        read_chunk=read_chunk,
        read_identities=read_identities,
    )
    loader.plan(list(staged))
    assert reads == ["c0", "c2"]  # user2@ is on rows 2 (c0) and 99 (c2); c1 is never read
    for url in staged:
        loader.submit(staged[url], chunk_url=url)
    result = loader.finish()
    ledger.close()
    assert counts(result, "identity conflicts", "created") == (1, 14)

"""Property test of the load against the Brevo sandbox: random histories of source rows (inserts, updates,
email changes, duplicates inside a run) and random refusals (other contacts holding identifiers).

After every run, every row is accounted for exactly once, and every row loaded is in Brevo as sent.
After the conflicts are removed, later runs bring Brevo to exactly the source's state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_contactsync.core.spec import Destination
from airflow_provider_contactsync.hooks.brevo import BrevoHook
from airflow_provider_contactsync.load import ContactLedger, ContactLoader, LoadResult
from airflow_provider_contactsync.sandbox import BrevoSandbox

LIST_ID = 2  # the sandbox's default list, kept by reset()
KEYS = list(range(1, 9))
EMAILS = [f"p{i}@example.com" for i in range(8)]
OUTCOMES = ("identity conflicts", "superseded", "unchanged", "created", "updated", "skipped (exists)", "refused")

row_event = st.tuples(st.sampled_from(KEYS), st.sampled_from(EMAILS), st.sampled_from(["Ann", "Bob", "Cy"]))
squat = st.tuples(st.sampled_from(["EMAIL", "EXT_ID"]), st.integers(0, 7))
history = st.lists(
    st.tuples(st.lists(row_event, min_size=0, max_size=6), st.lists(squat, max_size=2), st.booleans()),
    min_size=1,
    max_size=4,
)


@pytest.fixture
def hook(brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrevoHook]:
    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    conn["extra"] = json.dumps({"poll_interval": 0.001})
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_PROPS", json.dumps(conn))
    with BrevoHook("brevo_props") as hook:
        yield hook


class Account:
    """The sandbox seen from outside: squatters (contacts someone else created) and the state."""

    def __init__(self, sandbox: BrevoSandbox) -> None:
        self.sandbox = sandbox
        self.squatters: list[int] = []

    def squat(self, kind: str, index: int) -> None:
        body = (
            {"email": f"other{index}@example.com", "attributes": {"EXT_ID": str(KEYS[index])}}
            if kind == "EXT_ID"
            else {"email": EMAILS[index], "attributes": {"EXT_ID": f"other-{index}"}}
        )
        response = httpx.post(f"{self.sandbox.url}/contacts", json=body, headers={"api-key": self.sandbox.api_key})
        if response.status_code == 201:  # refused when the identifier is already taken: no squat then
            self.squatters.append(int(response.json()["id"]))

    def evict(self) -> None:
        for contact_id in self.squatters:
            httpx.delete(f"{self.sandbox.url}/contacts/{contact_id}", headers={"api-key": self.sandbox.api_key})
        self.squatters.clear()

    def ours(self) -> dict[str, tuple[str | None, str | None]]:
        squatters = set(self.squatters)
        return {
            c["attributes"].get("EXT_ID"): (c.get("email"), c["attributes"].get("FIRSTNAME"))
            for c in self.sandbox.contacts()
            if c["id"] not in squatters
        }


def load(hook: BrevoHook, ledger_path: Path, rows: list[tuple[int, str, str]], *, full_refresh: bool) -> LoadResult:
    chunk = [
        (key, {"email": email, "attributes": {"EXT_ID": str(key), "FIRSTNAME": name}}) for key, email, name in rows
    ]
    halves = {"a": chunk[: len(chunk) // 2], "b": chunk[len(chunk) // 2 :]}  # conflicts may span chunks
    ledger = ContactLedger(str(ledger_path))
    try:
        loader = ContactLoader(
            hook, ledger, Destination(list_ids=[LIST_ID]), full_refresh=full_refresh, keyed=True, read_chunk=halves.get
        )
        return loader.run(list(halves))
    finally:
        ledger.close()


def check_run(result: LoadResult, rows: list[tuple[int, str, str]], account: Account) -> None:
    counts = result.counts
    assert len(rows) + counts["retried"] == sum(counts[name] for name in OUTCOMES), counts
    assert all(p.reason for p in result.problems)
    not_loaded = {p.row for p in result.problems if p.outcome in ("rejected", "refused")}
    latest = {key: (email, name) for key, email, name in rows}  # the run's newest version of each row
    state = account.ours()
    for key, (email, name) in latest.items():
        if key not in not_loaded:
            assert state.get(str(key)) == (email, name), (key, state)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=history)
def test_every_row_is_accounted_for_and_brevo_converges_to_the_source(
    runs: list[tuple[list[tuple[int, str, str]], list[tuple[str, int]], bool]],
    brevo_sandbox: BrevoSandbox,
    hook: BrevoHook,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    brevo_sandbox.reset()
    ledger_path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    account = Account(brevo_sandbox)
    source: dict[int, tuple[str, str]] = {}
    for rows, squats, full_refresh in runs:
        for kind, index in squats:
            account.squat(kind, index)
        for key, email, name in rows:
            source[key] = (email, name)
        check_run(load(hook, ledger_path, rows, full_refresh=full_refresh), rows, account)

    # Remove every conflict: squatters go, and each source row gets an email of its own.
    account.evict()
    final = {key: (f"final{key}@example.com", name) for key, (_, name) in source.items()}
    rows = [(key, email, name) for key, (email, name) in final.items()]
    check_run(load(hook, ledger_path, rows, full_refresh=True), rows, account)
    for _ in range(3):  # refused contacts are sent again until none is left
        result = load(hook, ledger_path, [], full_refresh=False)
        check_run(result, [], account)
        if not result.counts["retried"]:
            break
    assert result.counts["retried"] == 0 and result.counts["refused"] == 0
    assert account.ours() == {str(key): value for key, value in final.items()}

"""Property test of mirror-mode sync semantics through real Airflow DAG runs (docs/sync-semantics.md).

Random histories of 3-5 CSV snapshots over ids 1..6 (inserts, renames, tier and consent changes, soft
and hard deletes, rows coming back, one full refresh), a random delete behaviour, and 0-2 contacts
that existed in Brevo before the first run. After every run the sandbox must equal what a small
pure-Python model of the documented rules says: which contacts exist, their FIRSTNAME, their
membership of the source list and of the conditional list, and their emailBlacklisted flag.

``BLACKLISTED_AND_BACK`` is the history that found a bug: a contact removed with ``deletes.behavior:
blacklist`` stays in the conditional lists this source put it in, and once its row came back with the
condition false it was never taken out, because the ledger had forgotten those lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from servers.airflow_db import task_states
from test_sync_semantics import Sync, use_sandbox

from airflow_provider_contactsync.sandbox import BrevoSandbox

pytestmark = pytest.mark.slow

KEYS = range(1, 7)
BEHAVIORS = ("unlink", "blacklist", "delete")
DEFINITION = """
destination:
  conn_id: brevo_sync
  mode: mirror
  list_ids: [{source_list}]
  lists: {{{gold_list}: "tier == 'gold'"}}
deletes: {{behavior: {behavior}, max_per_run: 100%, ownership: created}}
consent:
  email: "accepts == 'yes' ? true : accepts == 'no' ? false : null"
"""


# --- the source: rows, snapshots, and what changes between runs -----------------------------------


@dataclass(frozen=True)
class Row:
    """One CSV row; an empty cell is null to the formulas (docs/formulas.md, "Null")."""

    first_name: str = "Ann"
    tier: str = ""
    accepts: str = ""
    deleted: bool = False

    def csv(self, key: int) -> str:
        deleted = "yes" if self.deleted else ""
        return f"{key},c{key}@example.com,{self.first_name},{self.tier},{deleted},{self.accepts},,2026-11-20T08:00:00Z"


Snapshot = dict[int, Row]


@dataclass(frozen=True)
class Change:
    """One edit of the snapshot: ``insert`` puts a whole row (new, or a new version of one), the other
    edits change one column of a row (inserting a default row first if the snapshot lacks it)."""

    kind: str  # insert | rename | tier | consent | soft_delete | restore | hard_delete
    key: int
    row: Row = Row()
    value: str = ""

    def apply(self, snapshot: Snapshot) -> None:
        if self.kind == "hard_delete":
            snapshot.pop(self.key, None)
            return
        current = snapshot.get(self.key) or Row()  # editing a row the snapshot lacks inserts it
        if self.kind == "insert":
            snapshot[self.key] = self.row
        elif self.kind in ("soft_delete", "restore"):
            snapshot[self.key] = replace(current, deleted=self.kind == "soft_delete")
        else:
            column = {"rename": "first_name", "tier": "tier", "consent": "accepts"}[self.kind]
            snapshot[self.key] = replace(current, **{column: self.value})


@dataclass(frozen=True)
class History:
    behavior: str
    pre_existing: dict[int, bool]  # key -> emailBlacklisted, contacts made in Brevo before the first run
    first: Snapshot
    steps: list[list[Change]]
    full_refresh_run: int  # index of the run triggered with full_refresh=True

    def snapshots(self) -> list[Snapshot]:
        current = dict(self.first)
        out = [dict(current)]
        for step in self.steps:
            for change in step:
                change.apply(current)
            out.append(dict(current))
        return out


names = st.sampled_from(["Ann", "Bob", "Cy", ""])  # "" is a null first_name: FIRSTNAME left as it is
tiers = st.sampled_from(["gold", "silver", ""])
accepts = st.sampled_from(["yes", "no", ""])
rows = st.builds(Row, first_name=names, tier=tiers, accepts=accepts, deleted=st.sampled_from([False, False, True]))
some_key = st.sampled_from(list(KEYS))
changes = st.one_of(
    st.builds(Change, kind=st.just("insert"), key=some_key, row=rows),
    st.builds(Change, kind=st.just("rename"), key=some_key, value=names),
    st.builds(Change, kind=st.just("tier"), key=some_key, value=tiers),
    st.builds(Change, kind=st.just("consent"), key=some_key, value=accepts),
    st.builds(Change, kind=st.just("soft_delete"), key=some_key),
    st.builds(Change, kind=st.just("restore"), key=some_key),
    st.builds(Change, kind=st.just("hard_delete"), key=some_key),
)


@st.composite
def histories(draw: st.DrawFn) -> History:
    steps = draw(st.lists(st.lists(changes, min_size=1, max_size=4), min_size=2, max_size=4))
    return History(
        behavior=draw(st.sampled_from(BEHAVIORS)),
        pre_existing=draw(st.dictionaries(some_key, st.booleans(), max_size=2)),
        first=draw(st.dictionaries(some_key, rows, min_size=1, max_size=6)),
        steps=steps,
        full_refresh_run=draw(st.integers(0, len(steps))),
    )


# --- the model: the rules of docs/sync-semantics.md, written independently of the package --------


@dataclass
class Contact:
    first_name: str | None
    blacklisted: bool = False
    in_source_list: bool = False
    in_gold_list: bool = False  # only this source puts contacts in the gold list in this test
    created_by_source: bool = False


@dataclass
class Model:
    behavior: str
    brevo: dict[int, Contact] = field(default_factory=dict)

    @classmethod
    def start(cls, behavior: str, pre_existing: dict[int, bool]) -> Model:
        return cls(behavior, {key: Contact(f"Pre{key}", blacklisted) for key, blacklisted in pre_existing.items()})

    def run(self, snapshot: Snapshot) -> None:
        """A mirror run reads the whole snapshot: live rows are sent (sending is idempotent, so whether
        the ledger's digest lets a row through does not change the result), soft-deleted rows are never
        sent, and contacts this source created whose row is missing or soft-deleted are removed."""
        for key, row in snapshot.items():
            if not row.deleted:
                self.send(key, row)
        for key in sorted(self.brevo):
            row = snapshot.get(key)
            if self.brevo[key].created_by_source and (row is None or row.deleted):
                self.remove(key)

    def send(self, key: int, row: Row) -> None:
        contact = self.brevo.get(key)
        if contact is None:  # new to Brevo (or deleted by an earlier run): created, so owned
            contact = self.brevo[key] = Contact(None, created_by_source=True)
        if row.first_name:  # a null attribute leaves Brevo's value (empty_attributes is false)
            contact.first_name = row.first_name
        if row.accepts == "no":  # opted out: blacklisted; opted in never lifts a blacklist without a date
            contact.blacklisted = True
        contact.in_source_list = True
        contact.in_gold_list = row.tier == "gold"  # a null tier is not 'gold': the condition is false

    def remove(self, key: int) -> None:
        if self.behavior == "delete":
            del self.brevo[key]
        elif self.behavior == "unlink":
            self.brevo[key].in_source_list = self.brevo[key].in_gold_list = False
        else:
            self.brevo[key].blacklisted = True

    def state(self) -> dict[str, tuple[Any, ...]]:
        return {
            f"c{key}@example.com": (c.first_name, c.blacklisted, c.in_source_list, c.in_gold_list)
            for key, c in self.brevo.items()
        }


def brevo_state(sandbox: BrevoSandbox, source_list: int, gold_list: int) -> dict[str, tuple[Any, ...]]:
    return {
        c["email"]: (
            c["attributes"].get("FIRSTNAME"),
            c["emailBlacklisted"],
            source_list in c["listIds"],
            gold_list in c["listIds"],
        )
        for c in sandbox.contacts()
    }


# --- the test ---------------------------------------------------------------------------------------


@pytest.fixture
def brevo_conn(brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str) -> BrevoSandbox:
    use_sandbox(monkeypatch, brevo_sandbox)
    return brevo_sandbox


def _comes_back(behavior: str, tier_back: str = "silver") -> History:
    """Created contacts removed (1 missing, 4 soft-deleted) that come back, next to pre-existing contacts
    (2 blacklisted, soft-deleted then missing; 3 opted out, then in) and a first delivery in a later run."""
    return History(
        behavior=behavior,
        pre_existing={2: True, 3: False},
        first={1: Row("Ann", "gold", "yes"), 2: Row("Bob", "gold", "yes"), 3: Row("", "silver", "no")},
        steps=[
            [Change("hard_delete", 1), Change("soft_delete", 2), Change("insert", 4, Row("Dee", "gold", "no"))],
            [Change("insert", 1, Row("Eve", tier_back)), Change("hard_delete", 2), Change("soft_delete", 4)],
            [Change("restore", 4), Change("tier", 1, "gold"), Change("consent", 3, "yes"), Change("insert", 2)],
        ],
        full_refresh_run=2,
    )


def _emptied(behavior: str) -> History:
    """A snapshot with no rows removes every contact this source created, and keeps the others."""
    everyone = {1: Row("Ann"), 2: Row("Bob", "gold"), 3: Row("Cy", "gold", "no")}
    gone = [Change("hard_delete", key) for key in everyone]
    return History(behavior, {3: False}, everyone, [gone, [Change("insert", 2, Row("Bob", "gold", "yes"))]], 1)


# Histories a few random draws may miss: rows back after removal, one snapshot emptied, a row that
# first appears soft-deleted, a removal of a contact already removed, the same content twice apart,
# and contacts created, re-created and first delivered (pre-existing) in one run.
EXAMPLES = [
    _comes_back("unlink"),
    _comes_back("delete"),
    _comes_back("blacklist", tier_back="gold"),
    _emptied("delete"),
    _emptied("unlink"),
    History(
        "delete",
        {2: True},
        {1: Row("Ann", "gold", "", True), 2: Row("Bob", "gold", "yes", True)},
        [[Change("restore", 1), Change("restore", 2)], [Change("hard_delete", 1), Change("hard_delete", 2)]],
        0,
    ),
    History(
        "blacklist",
        {},
        {1: Row("Ann", "gold"), 2: Row("Bob")},
        [
            [Change("hard_delete", 1)],
            [Change("insert", 1, Row("Ann", "gold", "", True))],
            [Change("hard_delete", 1)],
            [Change("insert", 1, Row("Ann", "gold"))],
        ],
        4,
    ),
    History(
        "delete",
        {4: False, 5: True},
        {1: Row("Ann")},
        [
            [Change("hard_delete", 1), Change("insert", 2, Row("Bob"))],
            [
                Change("insert", 1, Row("Ann")),
                Change("insert", 4, Row("Dee", "gold")),
                Change("insert", 5, Row("Eve", "gold", "yes")),
                Change("insert", 6, Row("Fay")),
            ],
            [Change("hard_delete", key) for key in (1, 2, 4, 5, 6)],
        ],
        1,
    ),
]
# Found by this test: a contact removed by blacklisting stays in the conditional list, so when its row
# comes back with the condition false it must leave it (the ledger once forgot the lists it was in).
BLACKLISTED_AND_BACK = History(
    "blacklist",
    {},
    {1: Row("Ann", "gold")},
    [[Change("hard_delete", 1)], [Change("insert", 1, Row("Ann", "silver"))]],
    0,
)


def _with_examples(test: Any) -> Any:
    for history in reversed(EXAMPLES):
        test = example(history=history)(test)
    return test


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
@_with_examples
@example(history=BLACKLISTED_AND_BACK)
def test_mirror_runs_bring_brevo_to_the_modelled_state(
    history: History, brevo_conn: BrevoSandbox, smtp_conn_id: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = brevo_conn
    sandbox.reset()  # a fresh account per example; a fresh folder, staging and integration (ledger) too
    source_list, gold_list = sandbox.create_list("source"), sandbox.create_list("gold")
    for key, blacklisted in history.pre_existing.items():
        response = httpx.post(
            f"{sandbox.url}/contacts",
            headers={"api-key": sandbox.api_key},
            json={
                "email": f"c{key}@example.com",
                "attributes": {"FIRSTNAME": f"Pre{key}"},
                "emailBlacklisted": blacklisted,
            },
        )
        response.raise_for_status()
    definition = DEFINITION.format(source_list=source_list, gold_list=gold_list, behavior=history.behavior)
    root: Path = tmp_path_factory.mktemp("mirror")
    sync = Sync(root, sandbox, smtp_conn_id, definition, source="deleted_when: deleted == 'yes'")
    model = Model.start(history.behavior, history.pre_existing)
    assert brevo_state(sandbox, source_list, gold_list) == model.state()

    note(repr(history))
    imported: Snapshot | None = None
    for run, snapshot in enumerate(history.snapshots()):
        sync.drop(*(row.csv(key) for key, row in sorted(snapshot.items())))
        full_refresh = run == history.full_refresh_run
        dag_run = sync.run(full_refresh=True) if full_refresh else sync.run()
        load = task_states(dag_run)["load"]
        same_file = snapshot == imported and not full_refresh
        if not (same_file and load == "skipped"):  # the same content again is no new file: nothing loads
            assert load == "success", (run, sync.summary(dag_run))
            model.run(snapshot)
            imported = snapshot
        assert brevo_state(sandbox, source_list, gold_list) == model.state(), (
            f"run {run} (full_refresh={full_refresh}) of {snapshot}; summary {sync.summary(dag_run)}"
        )

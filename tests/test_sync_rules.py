"""Sync semantics without a server: the definition's rules, their checks, the removal plan and the guardrail."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec import Deletes, parse_definition
from airflow_provider_contactsync.core.sync_rules import SyncRules
from airflow_provider_contactsync.load.identity import ContactIds
from airflow_provider_contactsync.load.ledger import ContactLedger
from airflow_provider_contactsync.load.removal import MassDeleteError, check_guardrail, plan_removals

BASE = textwrap.dedent(
    """\
    integration: crm
    source:
      type: postgres
      name: customers
      conn_id: crm_pg
      table: public.customers
      fields: [id, email, tier, deleted_at, accepts, consent_at, updated_at]
      updated_field: updated_at
      key: id
    mapping: {email: EMAIL, id: EXT_ID}
    destination:
      list_ids: [5]
    """
)


def definition(extra: str = "", *, source: str = "", destination: str = "") -> object:
    text = BASE.replace("  key: id\n", f"  key: id\n{textwrap.indent(source, '  ')}")
    text = text.replace("  list_ids: [5]\n", f"  list_ids: [5]\n{textwrap.indent(destination, '  ')}")
    return parse_definition(text + textwrap.dedent(extra), file="crm.yaml")


def errors_of(extra: str = "", **kwargs: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        definition(extra, **kwargs)
    return str(caught.value)


def test_rules_give_each_row_its_intent() -> None:
    spec = definition(
        "consent: {email: \"accepts == 'yes' ? true : accepts == 'no' ? false : null\", email_opt_in_at: consent_at}\n",
        source="deleted_when: deleted_at != null\n",
        destination="lists: {7: \"tier == 'gold'\", 8: \"tier == 'silver'\"}\n",
    )
    rules = SyncRules.compile(spec)  # type: ignore[arg-type]

    assert rules.deleted({"deleted_at": "2026-11-01"}) == (True, None)
    intent, problems = rules.intent(
        {"tier": "gold", "accepts": "yes", "consent_at": "2026-11-20T08:00:00Z", "deleted_at": None}
    )
    assert problems == []
    assert intent == {"in": [7], "out": [8], "email": True, "email_at": "2026-11-20T08:00:00+00:00"}
    unknown, _ = rules.intent({"tier": None, "accepts": "", "consent_at": None})
    assert unknown == {"out": [7, 8]}  # null == 'gold' is false; consent unknown leaves no key


def test_a_rule_that_fails_on_a_row_rejects_it_naming_the_rule() -> None:
    spec = definition(destination="lists: {7: 'tier.size() > 2'}\n")
    _, problems = SyncRules.compile(spec).intent({"tier": 5})  # type: ignore[arg-type]
    (problem,) = problems
    assert problem.field == "destination.lists.7" and "destination.lists.7" in problem.reason


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"destination": "mode: mirror\n"}, None),
        ({"destination": 'lists: {7: "tier + 1"}\n'}, "crm.yaml:13: destination.lists.7: its type is int"),
        ({"destination": "lists: {7: \"tierz == 'gold'\"}\n"}, "unknown field 'tierz'"),
        ({"destination": "lists: {5: \"tier == 'gold'\"}\n"}, "list 5 appears in more than one"),
        ({"destination": "lists: {true: \"tier == 'gold'\"}\n"}, "True is not a list id"),
        ({"destination": "unlink_list_ids: [5]\n"}, "list 5 appears in more than one"),
        ({"destination": "mode: create_only\n", "source": "deleted_when: deleted_at != null\n"}, "create_only"),
        ({"destination": "update_existing: false\nmode: update_only\n"}, "contradicts mode update_only"),
        ({"extra": "deletes: {behavior: delete}\n"}, "deletes: nothing to act on"),
        ({"extra": "deletes: {max_per_run: '150%'}\n", "destination": "mode: mirror\n"}, "max_per_run"),
        ({"extra": "consent: {email_opt_in_at: consent_at}\n"}, "consent: needs email or sms"),
        ({"source": "deleted_when: deleted_at\n"}, None),  # dyn: checked per row
    ],
)
def test_definitions_with_rules_are_checked_with_file_line_and_key(
    kwargs: dict[str, str], expected: str | None
) -> None:
    extra = kwargs.pop("extra", "")
    if expected is None:
        definition(extra, **kwargs)
        return
    assert expected in errors_of(extra, **kwargs)


def test_mirror_needs_a_key() -> None:
    text = BASE.replace("  updated_field: updated_at\n  key: id\n", "").replace(
        "  list_ids: [5]\n", "  list_ids: [5]\n  mode: mirror\n"
    )
    with pytest.raises(ConfigurationError, match="mirror needs source.key"):
        parse_definition(text, file="crm.yaml")


def test_update_existing_false_still_means_create_only() -> None:
    spec = definition(destination="update_existing: false\n")
    assert spec.destination.mode == "create_only"  # type: ignore[attr-defined]


def _ledger(tmp_path: Path, owned: dict[str, int | None]) -> ContactLedger:
    ledger = ContactLedger(str(tmp_path / "ledger.sqlite"))
    with ledger._db:
        ledger._db.executemany(
            "INSERT INTO delivered (identity, email, ext_id, sms, digest, owned) VALUES (?, ?, ?, NULL, 'd', ?)",
            [(f"K:{k}", f"c{k}@example.com", k, o) for k, o in owned.items()],
        )
    return ledger


def test_removal_plan_removes_only_owned_contacts_and_says_why_it_keeps_the_others(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {"1": 1, "2": 0, "3": None, "4": 1, "5": 1})
    ledger.begin_seen()
    ledger.add_seen(["K:1", "K:5"])

    plan = plan_removals(ledger, Deletes(), [("5", "K:5"), ("9", "K:9")], mirror=True)

    assert sorted(r.contact.identity for r in plan.removals) == ["K:4", "K:5"]
    kept = dict(plan.kept)
    assert "not created by this source" in kept["K:2"]
    assert "before contactsync recorded" in kept["K:3"]
    assert "never delivered" in kept["9"]
    assert plan_removals(ledger, Deletes(ownership="delivered"), [], mirror=True).removals[0].contact.ids == (
        ContactIds("c2@example.com", "2")
    )


def test_a_held_mirror_read_removes_nothing_but_soft_deletes(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {"1": 1, "2": 1})
    ledger.begin_seen()
    plan = plan_removals(ledger, Deletes(), [("1", "K:1")], mirror=True, held="2 rows rejected before their key")
    assert [r.contact.identity for r in plan.removals] == ["K:1"] and plan.held


@pytest.mark.parametrize(
    ("setting", "owned", "removing", "stops"), [("10%", 100, 11, True), ("10%", 100, 10, False), (0, 5, 1, True)]
)
def test_the_guardrail_counts_against_what_the_source_owns(
    tmp_path: Path, setting: int | str, owned: int, removing: int, stops: bool
) -> None:
    ledger = _ledger(tmp_path, {str(n): 1 for n in range(owned)})
    ledger.begin_seen()
    ledger.add_seen(f"K:{n}" for n in range(removing, owned))
    deletes = Deletes(max_per_run=setting)
    plan = plan_removals(ledger, deletes, [], mirror=True)
    assert len(plan.removals) == removing
    if not stops:
        check_guardrail(ledger, deletes, plan, allowed=False)
        return
    with pytest.raises(MassDeleteError) as caught:
        check_guardrail(ledger, deletes, plan, allowed=False)
    assert f"would remove {removing:,} contacts" in str(caught.value) and "allow_mass_delete" in str(caught.value)
    check_guardrail(ledger, deletes, plan, allowed=True)  # the manual param lets it through

"""Identity rules of the load, without HTTP: identifiers, identities, conflicts in a run, re-keys."""

from __future__ import annotations

from airflow_provider_contactsync.load.identity import (
    ContactIds,
    RunRow,
    identity_of,
    ids_of,
    needs_rekey,
    rekey_target,
    resolve_conflicts,
)
from airflow_provider_contactsync.load.preflight import find_conflicts


def row(
    seq: int, key: object, email: str | None = None, ext_id: str | None = None, sms: str | None = None, *, keyed=True
):
    ids = ContactIds(email, ext_id, sms)
    return RunRow(seq, key, identity_of(ids, key, keyed=keyed), ids)


def test_ids_are_compared_the_way_brevo_compares_them() -> None:
    ids = ids_of({"email": " Zoe@Example.COM ", "attributes": {"EXT_ID": 42, "SMS": "+33612345678", "X": 1}})
    assert ids == ContactIds("zoe@example.com", "42", "33612345678")
    assert ids_of({"attributes": {"SMS": "0033612345678"}}).sms == "33612345678"
    assert ids.primary == ("EMAIL", "zoe@example.com")
    assert ContactIds(None, "42", "336").primary == ("EXT_ID", "42")


def test_identity_is_the_row_key_when_the_source_has_one() -> None:
    ids = ContactIds("a@x.io", "7", None)
    assert identity_of(ids, 42, keyed=True) == "K:42"
    assert identity_of(ids, 42, keyed=False) == "EXT_ID:7"
    assert identity_of(ContactIds("a@x.io"), 3, keyed=False) == "EMAIL:a@x.io"


def test_same_email_on_two_rows_with_different_ext_ids_keeps_the_newest() -> None:
    verdicts = resolve_conflicts([row(1, 10, "a@x.io", "10"), row(2, 11, "a@x.io", "11")])
    (verdict,) = verdicts
    assert verdict.key == 10 and verdict.winner_key == 11 and not verdict.superseded
    assert verdict.kind == "EMAIL" and verdict.value == "a@x.io"
    assert "also on row 11" in verdict.reason and "EXT_ID 11, not 10" in verdict.reason


def test_same_ext_id_with_different_emails_is_a_conflict_in_unkeyed_sources() -> None:
    (verdict,) = resolve_conflicts([row(1, 1, "a@x.io", "7", keyed=False), row(2, 2, "b@x.io", "7", keyed=False)])
    assert verdict.key == 1 and not verdict.superseded and verdict.kind == "EXT_ID"


def test_an_older_version_of_the_same_row_is_superseded_even_with_another_email() -> None:
    (verdict,) = resolve_conflicts([row(1, 42, "old@x.io", "42"), row(5, 42, "new@x.io", "42")])
    assert verdict.superseded and verdict.key == 42 and "superseded by row 42" in verdict.reason


def test_the_same_contact_twice_is_superseded_not_a_conflict() -> None:
    (verdict,) = resolve_conflicts([row(1, "a", "a@x.io", keyed=False), row(2, "b", "a@x.io", "9", keyed=False)])
    assert verdict.superseded and verdict.winner_key == "b"


def test_a_row_only_loses_to_rows_that_were_loaded() -> None:
    # row 3 wins over row 2 (same email b, other EXT_ID); row 1 shares only EXT_ID 1 with the loser: it loads.
    verdicts = resolve_conflicts([row(1, 1, "a@x.io", "1"), row(2, 2, "b@x.io", "1"), row(3, 3, "b@x.io", "2")])
    assert [(v.key, v.superseded) for v in verdicts] == [(2, False)]


def test_preflight_finds_conflicts_across_a_large_run_and_only_those() -> None:
    rows = [row(i, i, f"u{i}@x.io", str(i)) for i in range(20_000)]
    rows.append(row(20_000, 20_000, "u3@x.io", "20000"))  # email of row 3, much later
    rows.append(row(20_001, 5, "u5@x.io", "5"))  # row 5 again, newer
    verdicts = {v.key: v for v in find_conflicts(iter(rows))}
    assert set(verdicts) == {3, 5}
    assert not verdicts[3].superseded and verdicts[3].winner_key == 20_000
    assert verdicts[5].superseded


def test_preflight_keeps_odd_keys() -> None:
    from decimal import Decimal

    verdicts = find_conflicts([row(0, Decimal("1.5"), "a@x.io"), row(1, 2**70, "a@x.io")])
    assert [(str(v.key), str(v.winner_key)) for v in verdicts] == [("1.5", str(2**70))]


def test_rekey_when_the_identifier_the_import_looks_up_changed() -> None:
    old = ContactIds("zoe.martin@x.io", "42", None)
    assert needs_rekey(old, ContactIds("zoe.new@x.io", "42", None))  # email changed on a known EXT_ID
    assert needs_rekey(ContactIds(None, "42", "336"), ContactIds("zoe@x.io", "42", "336"))  # email added
    assert not needs_rekey(old, ContactIds("zoe.martin@x.io", "43", None))  # new EXT_ID: the import finds the email
    assert not needs_rekey(old, old)
    assert rekey_target(old) == ("EMAIL", "zoe.martin@x.io")
    assert rekey_target(ContactIds(None, "42", "336")) == ("SMS", "336")
    assert rekey_target(ContactIds(None, "42", None)) == ("EXT_ID", "42")


def test_preflight_counts_large_runs_in_partitions(monkeypatch) -> None:
    import airflow_provider_contactsync.load.preflight as preflight

    monkeypatch.setattr(preflight, "_PARTITION", 8)  # 100 rows: counted in 16 partitions
    rows = [row(i, i, f"u{i}@x.io", f"x{i}", sms=f"33{i:08d}") for i in range(100)]
    rows += [row(100, 100, "u42@x.io", "x100"), row(101, 101, "u101@x.io", "x101", sms="3300000007")]
    verdicts = {v.key: v.kind for v in find_conflicts(rows)}
    assert verdicts == {42: "EMAIL", 7: "SMS"}


def test_preflight_reads_chunks_as_the_loader_stages_them() -> None:
    from airflow_provider_contactsync.load.preflight import Preflight

    chunk = [(1, {"email": "A@x.io ", "attributes": {"EXT_ID": 1, "SMS": "+3361"}}), (2, {"email": "a@x.io"})]
    preflight = Preflight()
    preflight.add_chunk(chunk, keyed=True)
    assert preflight.candidates() == [0, 1]  # the same email once normalised


def test_refusal_names_the_holder_found_first_by_the_counters_identifier() -> None:
    from airflow_provider_contactsync.load.outcomes import BrevoContact, refusal

    holder = BrevoContact(77, ContactIds("taken@x.io", "9", None), None)
    asked: list[tuple[str, str]] = []

    def lookup(kind: str, value: str) -> BrevoContact | None:
        asked.append((kind, value))
        return holder if (kind, value) == ("EMAIL", "taken@x.io") else None

    sent = ContactIds("taken@x.io", "1", "3361")
    kind, value, reason, found = refusal(sent, {"duplicate_email_id": 1}, holder=lookup)
    assert (kind, value, found) == ("EMAIL", "taken@x.io", holder)
    assert reason == "refused by Brevo: EMAIL taken@x.io belongs to contact 77 whose EXT_ID is 9"
    assert asked == [("EMAIL", "taken@x.io")]
    asked.clear()
    refusal(ContactIds("free@x.io", "1", "3361"), {"duplicate_phone_id": 1}, holder=lookup)
    assert asked[0] == ("SMS", "3361")  # the counter says SMS: looked up first

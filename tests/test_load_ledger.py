"""The contact ledger: delivered identities, in-flight imports, the retry queue, and old stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from airflow_provider_contactsync.load.identity import ContactIds
from airflow_provider_contactsync.load.ledger import ContactLedger, Delivered, PendingContact, contact_digest


def pending(
    seq: int, identity: str, ids: ContactIds, digest: str = "d", prior: Delivered | None = None
) -> PendingContact:
    return PendingContact(0, seq, seq, seq, identity, ids, digest, prior)


def test_digest_ignores_key_order() -> None:
    one = contact_digest({"email": "a@x.io", "attributes": {"FIRSTNAME": "A", "EXT_ID": "1"}})
    assert one == contact_digest({"attributes": {"EXT_ID": "1", "FIRSTNAME": "A"}, "email": "a@x.io"})


def test_pending_batches_survive_a_crash_and_settle_all_but_the_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    ledger = ContactLedger(path)
    batch = ledger.add_pending(
        [11, 12],
        [pending(0, "K:1", ContactIds("a@x.io", "1")), pending(1, "K:2", ContactIds("b@x.io", "2"))],
        run_id="r",
        chunk_url="file:///c0",
        submitted_at="2026-11-27T12:00:00+00:00",
    )
    ledger.close()
    reopened = ContactLedger(path)  # a crashed attempt left the batch pending
    (found,) = reopened.batches()
    assert (found.batch, found.process_ids, found.chunk_url) == (batch, [11, 12], "file:///c0")
    assert [c.row_key for c in reopened.pending(batch)] == [0, 1]  # keys keep their type
    assert reopened.settle(batch, refused=[1]) == 1
    assert set(reopened.lookup(["K:1", "K:2"])) == {"K:1"}
    assert reopened.batches() == []


def test_recording_a_contact_takes_its_identifiers_from_others_and_replaces_its_old_identity(tmp_path: Path) -> None:
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    first = ledger.add_pending(
        [1],
        [pending(0, "EXT_ID:1", ContactIds("a@x.io", "1")), pending(1, "EXT_ID:2", ContactIds("b@x.io", "2"))],
        run_id=None,
        chunk_url=None,
        submitted_at=None,
    )
    ledger.settle(first)
    ledger.begin_run()
    # EXT_ID 1 moves to b@ (which contact 2 gave up), and a@ shows up under a new EXT_ID 3.
    second = ledger.add_pending(
        [2],
        [
            pending(0, "EXT_ID:1", ContactIds("b@x.io", "1")),
            pending(
                1, "EXT_ID:3", ContactIds("a@x.io", "3"), prior=Delivered("EXT_ID:1", ContactIds("a@x.io", "1"), "d")
            ),
        ],
        run_id=None,
        chunk_url=None,
        submitted_at=None,
    )
    ledger.settle(second)
    state = {k: v.ids for k, v in ledger.lookup(["EXT_ID:1", "EXT_ID:2", "EXT_ID:3"]).items()}
    assert state == {
        "EXT_ID:1": ContactIds("b@x.io", "1"),
        "EXT_ID:2": ContactIds(None, "2"),  # b@ went to contact 1
        "EXT_ID:3": ContactIds("a@x.io", "3"),
    }


def test_a_contact_recorded_under_a_new_identity_leaves_its_old_one(tmp_path: Path) -> None:
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    ledger.settle(
        ledger.add_pending(
            [1], [pending(0, "EXT_ID:1", ContactIds("a@x.io", "1"))], run_id=None, chunk_url=None, submitted_at=None
        )
    )
    known = Delivered("EXT_ID:1", ContactIds("a@x.io", "1"), "d")
    moved = pending(0, "EXT_ID:9", ContactIds("a@x.io", "9"), prior=known)  # a new EXT_ID on a known email
    ledger.settle(ledger.add_pending([2], [moved], run_id=None, chunk_url=None, submitted_at=None))
    assert set(ledger.lookup(["EXT_ID:1", "EXT_ID:9"])) == {"EXT_ID:9"}


def test_retry_queue_keeps_items_and_counts_attempts(tmp_path: Path) -> None:
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    item = {"email": "a@x.io", "attributes": {"EXT_ID": "1"}}
    ledger.queue_retry("K:1", 1, item, "taken", "2026-11-27T12:00:00+00:00")
    ledger.queue_retry("K:1", 1, item, "still taken", "2026-11-27T13:00:00+00:00")
    (entry,) = ledger.retries()
    assert (entry.identity, entry.row_key, entry.item, entry.reason, entry.attempts) == (
        "K:1",
        1,
        item,
        "still taken",
        2,
    )
    assert entry.first_refused_at == "2026-11-27T12:00:00+00:00"
    batch = ledger.add_pending(
        [5], [pending(-1, "K:1", ContactIds("a@x.io", "1"))], run_id=None, chunk_url=None, submitted_at=None
    )
    ledger.settle(batch)  # accepted this time: it leaves the queue
    assert ledger.retry_count() == 0


def test_a_store_from_before_identities_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE sent (identity TEXT PRIMARY KEY, digest TEXT NOT NULL);"
        "CREATE TABLE batches (batch INTEGER PRIMARY KEY, process_ids TEXT NOT NULL);"
        "CREATE TABLE pending (batch INTEGER NOT NULL, identity TEXT NOT NULL, digest TEXT NOT NULL);"
        "INSERT INTO sent VALUES ('EXT_ID:7', 'd7'), ('EMAIL:a@x.io', 'da');"
    )
    db.commit()
    db.close()
    ledger = ContactLedger(str(path))
    found = ledger.lookup(["EXT_ID:7", "EMAIL:a@x.io"])
    assert found["EXT_ID:7"].ids == ContactIds(None, "7") and found["EXT_ID:7"].digest == "d7"
    assert found["EMAIL:a@x.io"].ids == ContactIds("a@x.io") and ledger.batches() == []


def test_contacts_are_recorded_when_sent_and_a_refused_one_is_undone_with_what_it_took(tmp_path: Path) -> None:
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    first = [pending(0, "K:1", ContactIds("a@x.io", "1"), "d1"), pending(1, "K:2", ContactIds("b@x.io", "2"), "d2")]
    ledger.settle(ledger.add_pending([1], first, run_id=None, chunk_url=None, submitted_at=None))
    before = ledger.lookup(["K:1", "K:2"])
    ledger.begin_run()
    # row 1 moves to b@ (taking it from row 2 in the ledger) and row 3 is new; Brevo will refuse row 1
    sent = [
        pending(0, "K:1", ContactIds("b@x.io", "1"), "d1b", prior=before["K:1"]),
        pending(1, "K:3", ContactIds("c@x.io", "3"), "d3"),
    ]
    batch = ledger.add_pending([2], sent, run_id=None, chunk_url=None, submitted_at=None)
    recorded = ledger.lookup(["K:1", "K:2", "K:3"])  # recorded as soon as sent
    assert recorded["K:1"].ids.email == "b@x.io" and recorded["K:2"].ids.email is None and "K:3" in recorded
    assert ledger.settle(batch, refused=[0]) == 1
    after = ledger.lookup(["K:1", "K:2", "K:3"])
    assert after["K:1"] == before["K:1"] and after["K:2"] == before["K:2"]  # as they were, b@ given back
    assert after["K:3"].ids.email == "c@x.io"


def test_a_failed_import_is_forgotten_and_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    ledger.settle(
        ledger.add_pending(
            [1], [pending(0, "K:1", ContactIds("a@x.io", "1"), "d1")], run_id=None, chunk_url=None, submitted_at=None
        )
    )
    before = ledger.lookup(["K:1"])
    batch = ledger.add_pending(
        [2],
        [
            pending(0, "K:1", ContactIds("z@x.io", "1"), "dz", prior=before["K:1"]),
            pending(1, "K:2", ContactIds("b@x.io")),
        ],
        run_id=None,
        chunk_url=None,
        submitted_at=None,
    )
    ledger.forget(batch)
    assert ledger.lookup(["K:1", "K:2"]) == before and ledger.batches() == []


def test_the_ledger_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_contactsync.load.ledger import open_ledger

    root = ObjectStoragePath(f"file://{tmp_path}/dag")
    with open_ledger(root) as ledger:
        ledger.settle(
            ledger.add_pending(
                [1], [pending(0, "K:1", ContactIds("a@x.io", "1"))], run_id=None, chunk_url=None, submitted_at=None
            )
        )
        files = [tmp_path / "dag" / "state" / name for name in ("sent-contacts.sqlite", "sent-contacts.sqlite-wal")]
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files if f.exists())
    assert stat.S_IMODE((tmp_path / "dag" / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "dag" / "state" / "sent-contacts.sqlite").stat().st_mode) == 0o600


def test_keys_and_items_beyond_64_bits_are_kept_in_pending_batches_and_the_retry_queue(tmp_path: Path) -> None:
    """A 22-digit id (JSON's ``{"id": 1180591620717411303424}``) is data, not a reason to fail the load."""
    big = 2**70
    ledger = ContactLedger(str(tmp_path / "l.sqlite"))
    batch = ledger.add_pending(
        [1], [pending(big, f"K:{big}", ContactIds("a@x.io", str(big)))], run_id=None, chunk_url=None, submitted_at=None
    )
    assert [c.row_key for c in ledger.pending(batch)] == [big]
    item = {"email": "a@x.io", "attributes": {"EXT_ID": big, "SCORE": -(2**80)}}
    ledger.queue_retry(f"K:{big}", big, item, "taken", "2026-11-27T12:00:00+00:00")
    (entry,) = ledger.retries()
    assert (entry.row_key, entry.item) == (big, item)

"""The stages run with the garbage collector tuned for bulk work, and give the defaults back."""

from __future__ import annotations

import gc
from typing import Any

from airflow_provider_contactsync.core.gc_policy import BULK_THRESHOLDS, bulk_collection
from airflow_provider_contactsync.operators.contactsync import ContactsyncExtractOperator

DEFINITION = {
    "integration": "gc",
    "source": {"name": "rows", "type": "local", "path": "/nonexistent", "pattern": "*.csv", "format": "csv"},
    "mapping": {"email": "EMAIL"},
    "destination": {"conn_id": "brevo_default", "list_ids": [1]},
}


def test_bulk_collection_sets_and_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with bulk_collection():
        assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what lived before is out of every scan
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_thresholds_come_back_when_the_stage_fails() -> None:
    before = gc.get_threshold()
    try:
        with bulk_collection():
            raise RuntimeError("the stage failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_a_stage_runs_inside_it(monkeypatch: Any) -> None:
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(ContactsyncExtractOperator, "run_stage", lambda self, context: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    ContactsyncExtractOperator(task_id="extract", definition=DEFINITION).execute({})
    assert seen == [BULK_THRESHOLDS]
    assert gc.get_threshold() == before

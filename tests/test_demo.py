"""The README's demo: the example CSV synced into a sandbox, with its rejects reported."""

from __future__ import annotations

import csv
from pathlib import Path

from airflow_provider_contactsync.demo import run_demo


def test_demo_syncs_the_example_and_reports_rejects(tmp_path: Path) -> None:
    printed: list[str] = []
    summary = run_demo(tmp_path, out=printed.append)
    assert summary["rows read"] == 10
    assert summary["rows rejected"] == 3
    assert summary["contacts sent"] == 7
    assert summary["import processes"] == 1
    with open(summary["error report"], newline="") as stream:
        report = list(csv.DictReader(stream))
    assert {(r["row"], r["field"]) for r in report} == {
        ("4", "email"),
        ("5", "phone"),
        ("6", "loyalty_points"),
    }
    text = "\n".join(printed)
    assert "ada.lovelace@example.com" in text  # read back from the sandbox, normalised
    assert "BIRTHDAY=1912-06-23" in text  # day-first date parsed and formatted

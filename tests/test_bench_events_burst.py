"""benchmarks/bench_events_burst.py cannot rot: its main on a tiny burst, on each queue backend.

What is checked is the benchmark's accounting, read from what it prints (speed is never asserted):
every answer, the queue depth, the run's event counts and the sandbox's contacts add up to what the
burst holds, which is counted here again from the burst itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_events_burst.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_events_burst", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def figure(pattern: str, text: str) -> list[int]:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output:\n{text}"
    return [int(group.replace(",", "")) for group in found.groups()]


def test_the_burst_holds_the_announced_mix() -> None:
    bench = bench_module()
    burst = bench.make_burst(2000)
    events = [json.loads(delivery.body) for delivery in burst.deliveries]
    kinds = Counter(event["event"] for event in events)
    ids = [delivery.delivery_id for delivery in burst.deliveries]
    assert len(set(ids)) == burst.distinct_deliveries == 2000 - burst.kinds["retried"]
    assert len({event["event_id"] for event in events}) == burst.distinct_events
    assert 0.55 < burst.kinds["created"] / 2000 < 0.65 and 0.25 < burst.kinds["updated"] / 2000 < 0.35
    assert 0.03 < burst.kinds["deleted"] / 2000 < 0.07
    assert 0.03 < (burst.kinds["retried"] + burst.kinds["resent"]) / 2000 < 0.07 and burst.kinds["retried"]
    created = {event["data"]["id"] for event in events if event["event"] == "customer_created"}
    assert len(created) == burst.kinds["created"]  # distinct customers
    assert kinds["customer_created"] >= burst.kinds["created"]  # resent events repeat some
    updates = [event for event in events if event["event"] == "customer_updated"]
    assert updates and all(event["data"]["changes"] for event in updates)
    deleted = {event["data"]["id"] for event in events if event["event"] == "customer_deleted"}
    assert len(deleted) == burst.deleted_customers and deleted <= created
    assert bench.make_burst(2000).deliveries == burst.deliveries  # the same burst every time


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_a_small_burst_is_accounted_for(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    bench = bench_module()
    burst = bench.make_burst(300)
    assert bench.main(["--events", "300", "--backend", backend, "--concurrency", "8"]) == 0
    out = capsys.readouterr().out
    queued, distinct = figure(r"answers queued ([\d,]+) = distinct deliveries ([\d,]+)", out)
    assert queued == distinct == burst.distinct_deliveries
    (duplicate_answers,) = figure(r"duplicate ([\d,]+) = retried", out)
    assert duplicate_answers == burst.kinds["retried"]
    (depth,) = figure(r"queue depth after the burst ([\d,]+)", out)
    assert depth == burst.distinct_deliveries
    claimed, *counts = figure(
        r"claimed ([\d,]+) = applied ([\d,]+) \+ duplicate ([\d,]+) \+ stale ([\d,]+) \+ unreadable ([\d,]+)"
        r" \+ dead-lettered ([\d,]+) \+ ignored ([\d,]+)",
        out,
    )
    assert claimed == sum(counts) == burst.distinct_deliveries
    assert counts[:2] == [burst.distinct_events, burst.kinds["resent"]]
    (contacts,) = figure(r"contacts in sandbox ([\d,]+) =", out)
    assert contacts == burst.kinds["created"] - burst.deleted_customers > 0
    assert "WRONG" not in out

"""Run every generated bad input (tests/bad_inputs/) and print how they end: the tally by outcome.

    .venv/bin/python benchmarks/bad_inputs.py                    # every case, the tally and the time
    .venv/bin/python benchmarks/bad_inputs.py -v                 # ... and one line per case
    .venv/bin/python benchmarks/bad_inputs.py --channel preview -k jsonl
    PYTHONPATH=/tmp/wt-f .venv/bin/python benchmarks/bad_inputs.py   # another checkout of the package

Outcomes: clear error, per-row reject, accepted (good when the case allows it); unclear error,
crash, hang (over the 60 s deadline), silent drop, wrong pass (bad). Cases run one by one in one
long-lived worker process (bad_inputs.harness.Worker), restarted after a hang or a crash that kills it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"

# Before anything imports Airflow (the DAG-run cases' worker inherits this): a throw-away home.
_HOME = tempfile.mkdtemp(prefix="contactsync-bad-inputs-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.environ["AIRFLOW_HOME"], "dags"))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db")
# tests/ first: this script's own folder would otherwise give its name to `import bad_inputs`.
sys.path.insert(0, str(TESTS))

from bad_inputs import OUTCOMES, all_cases  # noqa: E402
from bad_inputs.cases import GOOD_OUTCOMES  # noqa: E402
from bad_inputs.harness import DEADLINE, Result, Worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", action="append", help="only this channel (repeatable)")
    parser.add_argument("-k", dest="contains", action="append", help="only cases whose name contains this")
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds before a case is a hang")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    args = parser.parse_args()

    cases = [
        case
        for case in all_cases()
        if (not args.channel or case.channel in args.channel)
        and (not args.contains or any(text in case.name for text in args.contains))
    ]
    import airflow_provider_contactsync

    print(f"{len(cases)} cases; package from {Path(airflow_provider_contactsync.__file__).parent}", flush=True)
    results: list[Result] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bad-inputs-") as root,
        Worker(Path(root), deadline=args.deadline) as worker,
    ):
        for case in cases:
            result = worker.run(case)
            results.append(result)
            if args.verbose or result.outcome not in case.good:
                mark = "ok " if result.outcome in case.good else "BAD"
                first = result.detail.strip().splitlines()[0][:150] if result.detail.strip() else ""
                print(f"{mark} {result.seconds:6.1f}s {result.outcome:<15} {case.name}: {first}", flush=True)
        restarts = worker.restarts
    elapsed = time.monotonic() - started

    by_name = {case.name: case for case in cases}
    tally = Counter(result.outcome for result in results)
    print(f"\n{len(results)} bad inputs in {elapsed:.0f} s ({restarts} worker restarts)")
    channels = sorted({case.channel for case in cases}, key=["validate", "parse", "preview", "dag_run"].index)
    print(f"{'outcome':<16}{'all':>6}" + "".join(f"{channel:>10}" for channel in channels))
    for outcome in OUTCOMES:
        per_channel = Counter(by_name[r.name].channel for r in results if r.outcome == outcome)
        marker = "" if outcome in GOOD_OUTCOMES else " *"
        print(
            f"{outcome + marker:<16}{tally[outcome]:>6}"
            + "".join(f"{per_channel[channel]:>10}" for channel in channels)
        )
    failing = [r for r in results if r.outcome not in by_name[r.name].good]
    print(f"(* never good) cases not ending as they should: {len(failing)} of {len(results)}")
    if args.json:
        args.json.write_text(
            json.dumps([{**r.__dict__, "good": sorted(by_name[r.name].good)} for r in results], indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

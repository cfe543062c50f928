"""A task process's start-up: interpreter, Airflow's task runner, the one-DAG build, the stage's imports.

    python benchmarks/bench_task_startup.py [--repeat 3] [--dag contactsync__crm__customers]

What a worker's task process does before a contactsync operator's ``execute()`` does any work:
start Python, import Airflow's task runner, build the one DAG it runs (``load_dags`` with the
parsing context set to its dag id, as Airflow sets it on workers), import what the four stages
import lazily (the operators, staging, formulas, mapping, the PostgreSQL source, the Brevo hook).

Measured in fresh processes, three ways:

- **no bytecode cache**: ``PYTHONPYCACHEPREFIX`` at an empty folder and ``PYTHONDONTWRITEBYTECODE=1``,
  so every module is compiled from source, as in an image built with ``uv pip install`` without
  ``--compile-bytecode`` and run with ``PYTHONDONTWRITEBYTECODE=1``;
- **bytecode cache**: the same prefix folder filled by a first run, as after ``--compile-bytecode``;
- **as installed**: this ``.venv`` as it is (after ``scripts/setup.sh``, compiled).

Prints each part's median wall time over ``--repeat`` runs and the ratio without / with a cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_dag_parse import PARSING_CONTEXT_ENV

ROOT = Path(__file__).resolve().parents[1]
STAGE_MODULES = (
    "airflow_provider_contactsync.operators.contactsync",
    "airflow_provider_contactsync.core.parallel",
    "airflow_provider_contactsync.core.formulas.codegen",
    "airflow_provider_contactsync.load.loader",
    "airflow_provider_contactsync.sources.postgres",
    "airflow_provider_contactsync.hooks.brevo",
)
PARTS = ("interpreter", "task runner import", "one-DAG build", "stage imports", "total")


def child(dag_id: str) -> dict[str, float]:
    """Run in the measured process: the parts after the interpreter's own start."""
    started = time.perf_counter()
    import importlib

    import airflow.sdk.execution_time.task_runner  # noqa: F401  (what a task process runs)

    imported = time.perf_counter()
    from airflow_provider_contactsync.dag_factory import load_dags

    os.environ[PARSING_CONTEXT_ENV] = dag_id
    dags = load_dags(str(ROOT / "example_dags" / "definitions"))
    if dag_id not in dags:
        raise SystemExit(f"{dag_id} was not built: {sorted(dags)}")
    built = time.perf_counter()
    for name in STAGE_MODULES:
        importlib.import_module(name)
    done = time.perf_counter()
    return {
        "task runner import": imported - started,
        "one-DAG build": built - imported,
        "stage imports": done - built,
    }


def measure(dag_id: str, env: dict[str, str]) -> dict[str, float]:
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", dag_id], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    total = time.perf_counter() - began
    parts = json.loads(out.stdout.strip().splitlines()[-1])
    parts["total"] = total
    parts["interpreter"] = total - sum(v for k, v in parts.items() if k != "total")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dag", default="contactsync__crm__customers")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    base = dict(os.environ)
    base["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    base.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-task-startup-home-"))
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as tmp:
        cold = dict(base, PYTHONPYCACHEPREFIX=str(Path(tmp) / "empty"), PYTHONDONTWRITEBYTECODE="1")
        warm = dict(base, PYTHONPYCACHEPREFIX=str(Path(tmp) / "filled"), PYTHONDONTWRITEBYTECODE="1")
        fill = dict(warm)
        fill.pop("PYTHONDONTWRITEBYTECODE")
        measure(args.dag, fill)  # writes every module's bytecode into the prefix folder
        installed = dict(base)
        installed.pop("PYTHONPYCACHEPREFIX", None)
        modes = {"no bytecode cache": cold, "bytecode cache": warm, "as installed (.venv)": installed}
        for _ in range(args.repeat):  # interleaved, so machine load hits every mode alike
            for mode, env in modes.items():
                results.setdefault(mode, []).append(measure(args.dag, env))

    print(f"task process start-up for {args.dag}, median of {args.repeat} fresh processes (seconds)")
    print(f"{'':<22}" + "".join(f"{part:>20}" for part in PARTS))
    medians: dict[str, dict[str, float]] = {}
    for mode, runs in results.items():
        medians[mode] = {part: statistics.median(run[part] for run in runs) for part in PARTS}
        print(f"{mode:<22}" + "".join(f"{medians[mode][part]:>20.2f}" for part in PARTS))
    cold_total, warm_total = medians["no bytecode cache"]["total"], medians["bytecode cache"]["total"]
    print(f"no cache / cache: {cold_total / warm_total:.1f}x ({cold_total - warm_total:.1f} s more per task process)")


if __name__ == "__main__":
    main()

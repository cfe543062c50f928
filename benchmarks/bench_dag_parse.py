"""DAG parse time: contactsync's factory against the dag-factory package, and the worker case.

    python benchmarks/bench_dag_parse.py [--definitions 500] [--repeat 3] [--seed 11]

Generates ``--definitions`` varied source definitions (integrations, source types, fields,
formulas and schedules all differ) into a temporary folder, plus the same number of equivalent
dag-factory YAML files (four tasks, same schedule, retries, tags and params), then measures in one
run, each measurement in a fresh Python process so imports and caches of one do not help another:

(a) contactsync ``load_dags`` over the definitions: read, validate, check every formula, build;
(b) dag-factory ``load_yaml_dags`` building the equivalent DAGs (our operator classes, so the
    tasks are the same; dag-factory validates nothing about the definitions);
(c) contactsync ``load_dags`` with a parsing-context dag id set: what a worker does to run a task;
(d) contactsync ``check_definitions`` over the definitions: what the second DAG file (the one whose
    import error names broken files) costs the dag-processor: the same reading, validation and
    formula checks, and each DAG built and thrown away;
(e) the first ``Asset`` made in a fresh process, a one-time cost included in (a) to (d) (the tasks
    of both factories have asset inlets): an asset URI makes Airflow's SDK discover every installed
    provider's URI handlers.

Each child times only the build, wall clock and CPU (imports are reported apart; a lazy import
made by the build counts as build); the best of ``--repeat`` runs is shown. On a busy machine the
CPU column is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARSING_CONTEXT_ENV = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"

INTEGRATIONS = ["crm", "shop", "billing", "support", "events", "newsletter", "erp", "app", "loyalty", "b2b"]
SCHEDULES = ["manual", "hourly", "daily", "*/15 * * * *", "5 3 * * 1", "0 */6 * * *", "30 2 * * *"]
EMAIL_FIELDS = ["email", "mail", "email_address", "contact_email", "courriel"]
PHONE_FIELDS = ["phone", "mobile", "tel", "phone_number", "cell"]
EMAIL_FORMULAS = ["{f}.normalizeEmail()", "{f}.lower().trim()", "{f}.trim().normalizeEmail()"]
PHONE_FORMULAS = [
    '{f}.normalizePhoneNumber("FR")',
    '{f}.normalizePhoneNumber(["FR", "BE", "CH"])',
    '{f}.normalizePhoneNumber([country.ifNull("FR"), "FR"])',
]


def make_definition(index: int, rng: random.Random) -> tuple[dict[str, Any], str]:
    """One plausible definition as a dict (for YAML), with its dag id."""
    integration = INTEGRATIONS[index % len(INTEGRATIONS)]
    name = f"source_{index:04d}"
    email, phone = rng.choice(EMAIL_FIELDS), rng.choice(PHONE_FIELDS)
    extra = [f"attr_{index % 41}_{k}" for k in range(rng.randrange(1, 6))]
    fields = ["id", email, phone, "first_name", "last_name", "country", "points", "updated_at", *extra]
    transform = {
        email: rng.choice(EMAIL_FORMULAS).format(f=email),
        phone: rng.choice(PHONE_FORMULAS).format(f=phone),
        "full_name": "(first_name.ifNull('') + ' ' + last_name.ifNull('')).trim()",
        "points": rng.choice(["points.asInt()", f"points.asInt() * {index % 7 + 1}"]),
        # unique per definition: exercises the uncached formula path
        "tier": f'points.asInt() > {index * 10} ? "gold" : "{extra[0]}".upper()',
    }
    if rng.random() < 0.5:
        transform["vip"] = f"{extra[-1]}.isNull() || {extra[-1]}.asBool()"
    mapping = {email: "EMAIL", phone: "SMS", "id": "EXT_ID", "first_name": "FIRSTNAME", "tier": "TIER"}
    kind = index % 4
    source: dict[str, Any] = {"name": name, "fields": fields, "updated_field": "updated_at", "key": "id"}
    if kind == 0:
        source |= {"type": "postgres", "conn_id": f"{integration}_pg", "table": f"public.t_{index}"}
    elif kind == 1:
        source |= {"type": "postgres", "conn_id": f"{integration}_pg", "query": f"SELECT * FROM v_{index}"}
    elif kind == 2:
        source |= {"type": "mongo", "conn_id": f"{integration}_mongo", "collection": f"c_{index}"}
    else:
        source |= {"type": "sftp", "conn_id": f"{integration}_sftp", "path": "exports", "pattern": "*.csv"}
    definition = {
        "integration": integration,
        "description": f"Benchmark source {index} of {integration}.",
        "source": source,
        "schedule": SCHEDULES[index % len(SCHEDULES)],
        "transform": transform,
        "mapping": mapping,
        "destination": {"conn_id": "brevo_default", "list_ids": [index % 9 + 1]},
        "alerts": {"emails": [f"team-{integration}@example.com"], "max_error_rate": 0.05},
    }
    return definition, f"contactsync__{integration}__{name}"


def generate(folder: Path, count: int, seed: int) -> list[str]:
    """Write ``count`` contactsync definitions and the equivalent dag-factory files; return dag ids."""
    import yaml

    from airflow_provider_contactsync.core.spec.models import SCHEDULE_PRESETS

    rng = random.Random(seed)
    (folder / "contactsync").mkdir(parents=True)
    (folder / "dagfactory").mkdir(parents=True)
    dag_ids = []
    for index in range(count):
        definition, dag_id = make_definition(index, rng)
        dag_ids.append(dag_id)
        text = yaml.safe_dump(definition, sort_keys=False)
        (folder / "contactsync" / f"{definition['source']['name']}.yaml").write_text(text)
        schedule = SCHEDULE_PRESETS.get(definition["schedule"], definition["schedule"])
        (folder / "dagfactory" / f"{dag_id}.yaml").write_text(
            yaml.safe_dump(dag_factory_config(dag_id, definition, schedule), sort_keys=False)
        )
    return dag_ids


def dag_factory_config(dag_id: str, definition: dict[str, Any], schedule: str | None) -> dict[str, Any]:
    """The same DAG in dag-factory's format: four tasks of our operator classes, in a chain."""
    module = "airflow_provider_contactsync.operators"
    stages = [("extract", "Extract"), ("transform", "Transform"), ("map", "Map"), ("load", "Load")]
    tasks = {}
    previous = None
    for task_id, cls in stages:
        task: dict[str, Any] = {"operator": f"{module}.Contactsync{cls}Operator", "definition": definition}
        if previous:
            task["dependencies"] = [previous]
        tasks[task_id] = task
        previous = task_id
    return {
        dag_id: {
            "default_args": {
                "owner": "contactsync",
                "start_date": "2024-01-01",
                "retries": 3,
                "retry_delay_sec": 60,
                "retry_exponential_backoff": 2.0,
                "max_retry_delay": 1800,
            },
            "description": definition["description"],
            "schedule": schedule,
            "catchup": False,
            "max_active_runs": 1,
            "tags": ["contactsync", f"integration:{definition['integration']}"],
            "params": {"full_refresh": False},
            "tasks": tasks,
        }
    }


# --- children: one measurement each, in a fresh process --------------------------------------


def child(kind: str, folder: str) -> dict[str, Any]:
    started = time.perf_counter()
    import airflow.sdk  # noqa: F401  (import cost reported apart)

    if kind == "dagfactory":
        import dagfactory

        imported, cpu_imported = time.perf_counter(), time.process_time()
        scope: dict[str, Any] = {}
        dagfactory.load_yaml_dags(globals_dict=scope, dags_folder=folder, defaults_config_path=folder)
        dags = {k: v for k, v in scope.items() if isinstance(v, airflow.sdk.DAG)}
    elif kind == "first-asset":
        imported, cpu_imported = time.perf_counter(), time.process_time()
        # what the first task of a build pays once per process for the source's asset (an Asset URI with
        # a scheme no provider handles, and no "x-" prefix, would make the SDK discover every
        # provider's URI handlers: about a second with the Google provider installed)
        from airflow_provider_contactsync.state import source_asset

        source_asset("a", "b")
        dags = {}
    elif kind == "check":
        from airflow_provider_contactsync.dag_factory import check_definitions

        imported, cpu_imported = time.perf_counter(), time.process_time()
        check_definitions(folder)  # raises if a definition is broken (none is)
        done, cpu_done = time.perf_counter(), time.process_time()
        from airflow_provider_contactsync.core.spec import iter_definition_files

        checked = len(iter_definition_files(folder))  # the "dags" column: definitions checked
        return {
            "dags": checked,
            "tasks": 0,
            "import_s": imported - started,
            "build_s": done - imported,
            "build_cpu_s": cpu_done - cpu_imported,
        }
    else:
        from airflow_provider_contactsync.dag_factory import load_dags

        imported, cpu_imported = time.perf_counter(), time.process_time()
        dags = load_dags(folder)
    done, cpu_done = time.perf_counter(), time.process_time()
    tasks = sum(len(dag.tasks) for dag in dags.values())
    return {
        "dags": len(dags),
        "tasks": tasks,
        "import_s": imported - started,
        "build_s": done - imported,
        "build_cpu_s": cpu_done - cpu_imported,
    }


def measure(kind: str, folder: Path, dag_id: str | None, repeat: int) -> dict[str, Any]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(folder / "airflow-home"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.pop(PARSING_CONTEXT_ENV, None)
    if dag_id:
        env[PARSING_CONTEXT_ENV] = dag_id
    target = folder / ("dagfactory" if kind == "dagfactory" else "contactsync")  # check: the contactsync files
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(target)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["build_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--definitions", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-dag-parse-") as tmp:
        folder = Path(tmp)
        dag_ids = generate(folder, args.definitions, args.seed)
        worker_dag = dag_ids[len(dag_ids) // 2]
        results = {
            "contactsync load_dags": measure("contactsync", folder, None, args.repeat),
            "dag-factory load_yaml_dags": measure("dagfactory", folder, None, args.repeat),
            "contactsync, worker (1 dag id)": measure("contactsync", folder, worker_dag, args.repeat),
            "contactsync check_definitions": measure("check", folder, None, args.repeat),
            "first Asset in a process": measure("first-asset", folder, None, args.repeat),
        }
    print(f"{args.definitions} definitions, best of {args.repeat} runs, each in a fresh process")
    print(f"{'':32} {'dags':>5} {'tasks':>6} {'build s':>8} {'cpu s':>7} {'dags/s':>8} {'import s':>9}")
    for name, r in results.items():
        rate = r["dags"] / r["build_s"] if r["build_s"] else float("inf")
        print(
            f"{name:32} {r['dags']:>5} {r['tasks']:>6} {r['build_s']:>8.3f} {r['build_cpu_s']:>7.3f} "
            f"{rate:>8.0f} {r['import_s']:>9.2f}"
        )
    ours, theirs = results["contactsync load_dags"], results["dag-factory load_yaml_dags"]
    worker = results["contactsync, worker (1 dag id)"]
    print(
        f"dag-factory / contactsync build time: {theirs['build_s'] / ours['build_s']:.2f}x wall, "
        f"{theirs['build_cpu_s'] / ours['build_cpu_s']:.2f}x CPU"
    )
    print(f"full parse / worker parse: {ours['build_s'] / worker['build_s']:.0f}x")
    print(
        "every other row includes the one-time cost of the first Asset (our tasks' inlets), "
        f"{results['first Asset in a process']['build_cpu_s']:.2f} s CPU"
    )


if __name__ == "__main__":
    main()

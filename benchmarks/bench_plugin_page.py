"""Server time of the Contactsync page: the overview and one source's page, 200 sources x 30 runs.

    python benchmarks/bench_plugin_page.py [--sources 200] [--runs 30] [--repeat 20]

Builds a SQLite metadata DB in a temporary AIRFLOW_HOME: ``--sources`` contactsync DAGs (built by the
factory and serialized as the dag-processor does, so tags, schedules and doc_md are real), then for
each ``--runs`` finished DAG runs written directly as rows: a DagRun, its four task instances and the
XComs the tasks leave (the load's run summary, the map task's error report URL and the extra link).
One run in ten failed at map (no summary), one in twenty loaded with refusals.

Then it asks Airflow's own API server app (``create_app``, plugins and auth manager included) for
the overview (HTML and JSON) and a source page, ``--repeat`` times each, as an admin user with the
UI's JWT cookie, and prints the median and best server time and the SQL statements each request ran
(the overview's stay the same whatever the number of sources: runs and XComs are read in bulk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ("extract", "transform", "map", "load")


def prepare_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="contactsync-bench-plugin-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CONTACTSYNC__STAGING": f"file://{home}/staging",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    (home / "dags").mkdir()
    return home


def definition(index: int, definitions: Path) -> Any:
    from airflow_provider_contactsync.core.spec import load_definition

    integration = ("crm", "shop", "billing", "support", "events", "newsletter", "erp", "app")[index % 8]
    kind = ("postgres", "file", "mongo", "snowflake")[index % 4]
    source = {
        "postgres": "conn_id: pg\n  table: public.customers",
        "snowflake": "conn_id: sf\n  table: customers",
        "mongo": "conn_id: mongo\n  database: app\n  collection: users",
        "file": "path: drop\n  pattern: '*.csv'",
    }[kind]
    path = definitions / f"source_{index:04d}.yaml"
    path.write_text(
        f"integration: {integration}\n"
        f"source:\n  name: source_{index:04d}\n  type: {kind}\n  {source}\n"
        "  fields: [id, email, first_name, updated_at]\n  updated_field: updated_at\n  key: id\n"
        f"schedule: '{('hourly', 'daily', '*/15 * * * *')[index % 3]}'\n"
        "transform: {email: email.normalizeEmail()}\n"
        "mapping: {email: EMAIL, id: EXT_ID, first_name: FIRSTNAME}\n"
        "destination: {conn_id: brevo_default, list_ids: [2]}\n"
    )
    return load_definition(path)


def summary(run: int, rows: int, refused: int) -> dict[str, Any]:
    rejected = rows // 40
    created = rows // 3
    return {
        "rows read": rows,
        "rejected": rejected,
        "identity conflicts": 0,
        "superseded": 0,
        "unchanged": rows - rejected - created - rows // 4 - refused,
        "created": created,
        "updated": rows // 4,
        "skipped (exists)": 0,
        "refused": refused,
        "retried": 0,
        "recovered": 0,
        "skipped at source": 0,
        "cursor": {"type": "timestamp", "value": f"2026-11-{1 + run % 28:02d}T08:00:00+00:00", "key": str(rows)},
        "error report": "",
        "refusals": [f"row {i}: refused by Brevo: EXT_ID {i} belongs to contact 9" for i in range(refused)],
        "brevo requests": {"POST /contacts/import": 2, "GET /processes/{id}": 3},
        "load seconds": 1.5,
    }


def build_world(sources: int, runs: int, home: Path) -> list[str]:
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag_version import DagVersion
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert

    from airflow_provider_contactsync.dag_factory import build_dag
    from airflow_provider_contactsync.local_run import prepare_metadata_db

    prepare_metadata_db()
    definitions = home / "dags" / "contactsync"
    definitions.mkdir()
    bag = DagBag(collect_dags=False)
    for index in range(sources):
        spec = definition(index, definitions)
        bag.bag_dag(build_dag(spec, file=str(definitions / f"source_{index:04d}.yaml"), register=False))
    sync_bag_to_db(bag, "dags-folder", None)
    dag_ids = sorted(bag.dags)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    with create_session() as session:
        versions = {v.dag_id: v.id for v in session.query(DagVersion).all()}
        for position, dag_id in enumerate(dag_ids):
            dag_runs = []
            for run in range(runs):
                began = start + dt.timedelta(hours=run, minutes=position % 60)
                failed = (run + position) % 10 == 9
                dag_runs.append(
                    DagRun(
                        dag_id=dag_id,
                        run_id=f"scheduled__{began.isoformat()}",
                        run_type="scheduled",
                        logical_date=began,
                        run_after=began,
                        start_date=began,
                        state="failed" if failed else "success",
                        conf={},
                    )
                )
            session.add_all(dag_runs)
            session.flush()
            tis: list[dict[str, Any]] = []
            xcoms: list[dict[str, Any]] = []
            for run, dag_run in enumerate(dag_runs):
                dag_run.end_date = dag_run.start_date + dt.timedelta(seconds=20 + (run * 7) % 90)
                failed = dag_run.state == "failed"
                for task in TASKS:
                    state = "success"
                    if failed:
                        state = "failed" if task == "map" else ("upstream_failed" if task == "load" else "success")
                    tis.append(
                        {
                            "task_id": task,
                            "dag_id": dag_id,
                            "run_id": dag_run.run_id,
                            "map_index": -1,
                            "state": state,
                            "pool": "default_pool",
                            "try_number": 1,
                            "dag_version_id": versions[dag_id],
                        }
                    )
                report = f"file://{home}/staging/{dag_id}/reports/{dag_run.run_id}.csv"
                values = {("map", "error_report"): report, ("map", "_link_ErrorReportLink"): report}
                if not failed:
                    values[("load", "return_value")] = summary(run, 1_000 + run * 13, 3 if run % 20 == 7 else 0)
                for (task, key), value in values.items():
                    xcoms.append(
                        {
                            "dag_run_id": dag_run.id,
                            "task_id": task,
                            "map_index": -1,
                            "key": key,
                            "dag_id": dag_id,
                            "run_id": dag_run.run_id,
                            "value": XComModel.serialize_value(value),
                            "timestamp": dag_run.end_date,
                        }
                    )
            session.execute(insert(TaskInstance.__table__), tis)
            session.execute(insert(XComModel.__table__), xcoms)
    return dag_ids


def measure(client: Any, url: str, repeat: int, engine: Any) -> tuple[list[float], int, int]:
    from sqlalchemy import event

    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    times = []
    size = 0
    for index in range(repeat + 1):
        statements = 0
        event.listen(engine, "before_cursor_execute", count)
        began = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - began
        event.remove(engine, "before_cursor_execute", count)
        response.raise_for_status()
        size = len(response.content)
        if index:  # the first request warms caches (templates, serialized DAG class, auth manager)
            times.append(elapsed)
    return times, statements, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    home = prepare_home()
    began = time.perf_counter()
    dag_ids = build_world(args.sources, args.runs, home)
    print(f"metadata DB: {len(dag_ids)} sources x {args.runs} runs in {time.perf_counter() - began:.1f} s ({home})")

    from airflow import settings
    from airflow.api_fastapi.app import create_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app()
    token = app.state.auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    client = TestClient(app)
    client.cookies.set("_token", token)
    middle = dag_ids[len(dag_ids) // 2]
    pages = {
        "overview (HTML)": "/contactsync/",
        "overview (JSON)": "/contactsync/api/sources",
        "source page (HTML)": f"/contactsync/sources/{middle}",
        "source page (JSON)": f"/contactsync/api/sources/{middle}",
    }
    print(f"{'page':<20} {'median ms':>10} {'best ms':>8} {'SQL statements':>15} {'bytes':>9}")
    results = {}
    for name, url in pages.items():
        times, statements, size = measure(client, url, args.repeat, settings.engine)
        results[name] = {"median_ms": statistics.median(times) * 1000, "best_ms": min(times) * 1000}
        print(
            f"{name:<20} {statistics.median(times) * 1000:>10.1f} {min(times) * 1000:>8.1f} {statements:>15} {size:>9,}"
        )
    print(json.dumps({"sources": len(dag_ids), "runs": args.runs, **results}))


if __name__ == "__main__":
    main()

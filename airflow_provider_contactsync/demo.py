"""The embedded end-to-end demo: the example DAG run twice by Airflow against a local Brevo sandbox.

Needs no account and no server: it starts the Brevo sandbox in-process, points the example's
Brevo connection at it (an ``AIRFLOW_CONN_*`` variable, as deployments do), migrates a SQLite
metadata DB under the work folder, and runs the example DAG with ``dag.test()``: a first full
sync, then a second run that finds nothing new and makes no write call. ``scripts/demo.sh`` starts
from a fresh work folder each time, so every run of it shows the sync (``--keep`` continues).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from airflow_provider_contactsync._layout import example_dags_dir

EXAMPLES = example_dags_dir()
DEMO_DEFINITION = EXAMPLES / "definitions" / "demo_customers.yaml"
DEMO_ATTRIBUTES = {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}


def configure_airflow(workdir: Path) -> None:
    """Point Airflow at the demo's own home and SQLite DB (set before Airflow is imported)."""
    home = workdir / "airflow-home"
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLES)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CONTACTSYNC__STAGING"] = f"file://{workdir / 'staging'}"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    import warnings

    # Deprecation notices from third-party providers would bury the demo's own output.
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    # A kept work folder holds one serialised version of the DAG per earlier demo: SQLAlchemy warns
    # when dag.test() reads the run's version through a relationship that expects one row.
    warnings.filterwarnings("ignore", message="Multiple rows returned with uselist=False")


def quiet_dag_test() -> None:
    """Silence dag.test()'s "No tasks to run" warning, logged each second while a skip propagates.

    Called after Airflow has configured logging (which resets levels). The demo prints each run's
    task states, so the warning adds nothing but lines between the demo's sections.
    """
    logging.getLogger("airflow.sdk.definitions.dag").setLevel(logging.ERROR)


def is_demo_folder(workdir: Path) -> bool:
    """True for a missing or empty folder, or one the demo made (it always holds the sandbox's API key)."""
    return not workdir.exists() or not any(workdir.iterdir()) or (workdir / "sandbox-api-key").is_file()


def run_demo(workdir: Path, *, fresh: bool = False, show: int = 5, out: Any = print) -> list[dict[str, Any]]:
    """Run the example DAG twice in ``workdir``; return the two run summaries."""
    workdir = workdir.resolve()
    if fresh and workdir.exists():
        if not is_demo_folder(workdir):
            raise SystemExit(f"contactsync demo: {workdir} is not a demo folder (no sandbox-api-key): not removing it")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    configure_airflow(workdir)

    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag
    from airflow_provider_contactsync.local_run import prepare_metadata_db, run_dag, task_states, xcom_value
    from airflow_provider_contactsync.operators.contactsync import format_summary
    from airflow_provider_contactsync.sandbox import BrevoSandbox

    definition = load_definition(DEMO_DEFINITION)
    key_file = workdir / "sandbox-api-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(16))
    api_key = key_file.read_text().strip()
    out("Preparing the Airflow metadata DB (SQLite) ...")
    prepare_metadata_db()
    quiet_dag_test()
    summaries = []
    with BrevoSandbox(workdir / "sandbox.db", api_key) as sandbox:
        existing = {a["name"] for a in _attributes(sandbox)}
        for name, kind in DEMO_ATTRIBUTES.items():
            if name not in existing:
                sandbox.create_attribute(name, kind)
        connection = {"conn_type": "brevo", "host": sandbox.url, "password": api_key}
        connection["extra"] = json.dumps({"poll_interval": 0.2})
        os.environ[f"AIRFLOW_CONN_{definition.destination.conn_id.upper()}"] = json.dumps(connection)
        dag = build_dag(definition)
        out(f"Brevo sandbox at {sandbox.url}; DAG {dag.dag_id}: {' >> '.join(t.task_id for t in dag.tasks)}")
        for attempt in ("first run", "second run (no new or changed file: skipped, nothing sent)"):
            writes_before = _writes(sandbox)
            dag_run = run_dag(dag)
            states = task_states(dag_run)
            summary = xcom_value(dag_run, "load") or {}
            summaries.append(summary)
            out(f"\n== {attempt}: {dag_run.state} ({', '.join(f'{k}={v}' for k, v in sorted(states.items()))})")
            out(format_summary(summary) if summary else "  nothing new: the run was skipped before reading a row")
            out(f"  write calls to Brevo  {_writes(sandbox) - writes_before}")
            _show_rejects(summary.get("error report"), out)
        out(f"\nContacts read back from the sandbox (first {show} of {len(sandbox.contacts())}):")
        for contact in sandbox.contacts()[:show]:
            attributes = contact.get("attributes", {})
            out(
                f"  {contact.get('email') or '-':28} SMS={attributes.get('SMS', '-'):14} "
                f"EXT_ID={attributes.get('EXT_ID', '-'):3} {attributes.get('FIRSTNAME', '')} "
                f"{attributes.get('LASTNAME', '')} BIRTHDAY={attributes.get('BIRTHDAY', '-')}"
            )
    out(
        f"\nState kept in {workdir}: ./scripts/demo.sh starts over next time "
        "(./scripts/demo.sh --keep, or `contactsync demo`, continues from it)."
    )
    return summaries


def _show_rejects(report_url: str | None, out: Any) -> None:
    """Print the rejected rows of a run from its error report."""
    import csv

    if not report_url or not report_url.startswith("file://"):
        return
    with open(report_url.removeprefix("file://"), newline="", encoding="utf-8") as stream:
        rejects = list(csv.DictReader(stream))
    if rejects:
        out("  rejected rows (from the error report):")
        for reject in rejects:
            out(f"    row {reject['row']}: {reject['field'] or '(row)'}={reject['value']!r}: {reject['reason']}")


def _attributes(sandbox: Any) -> list[dict[str, Any]]:
    import httpx

    answer = httpx.get(f"{sandbox.url}/contacts/attributes", headers={"api-key": sandbox.api_key}, timeout=10)
    answer.raise_for_status()
    return answer.json().get("attributes", [])


def _writes(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] != "GET" and r["path"].startswith("/v3/"))

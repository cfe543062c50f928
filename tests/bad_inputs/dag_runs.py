"""Bad files through real DAG runs of a file source, inside the worker process.

As tests/test_e2e_files.py does: the DAG built from a definition, serialised into the (SQLite)
metadata database of ``AIRFLOW_HOME`` and run with ``dag.test()``, loading into a Brevo sandbox.
Here the sandbox runs in the worker and is reset before each case; each case has an integration
of its own (a fresh cursor, ledger and file memory). A file that cannot be read at all gets a good
file next to it (read first), whose rows must still be loaded while the bad file fails the load.
"""

from __future__ import annotations

import csv
import json
import os
import re
import textwrap
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from .cases import CLEAR_ERROR, CRASH, PER_ROW_REJECT, SILENT_DROP, UNCLEAR_ERROR, Case, Expect, Inputs, RowsFile
from .rows import DAG_RUN_FILES, DAG_RUN_WHOLE, CsvFile, JsonlFile

CONN_ID = "brevo_badinputs"
API_KEY = "xkeysib-bad-inputs"

DEFINITION = textwrap.dedent(
    """\
    integration: {integration}
    source:
      name: drop
      type: file
      path: {folder}
      pattern: "*.{ext}"
      format: {format}
      fields: [id, email, first_name, age]
      key: id
    schedule: manual
    transform:
      email: email.normalizeEmail()
    {first_name}mapping:
      email: EMAIL
      id: EXT_ID
      first_name: FIRSTNAME
    destination:
      conn_id: {conn_id}
      list_ids: [2]
    alerts:
      max_error_rate: 1
    """
)


@cache
def environment() -> Any:
    """The worker's metadata database (migrated once) and its started sandbox, with the connection."""
    from airflow_provider_contactsync.local_run import prepare_metadata_db
    from airflow_provider_contactsync.sandbox import BrevoSandbox
    from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

    prepare_metadata_db()
    home = Path(os.environ.get("AIRFLOW_HOME", "."))
    sandbox = BrevoSandbox(home / f"bad-inputs-brevo-{os.getpid()}.sqlite3", API_KEY, **FAST_SETTINGS)
    sandbox.start()
    conn = {
        "conn_type": "brevo",
        "host": sandbox.url,
        "password": API_KEY,
        "extra": json.dumps({"poll_interval": 0.01}),
    }
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
    return sandbox


def good_file(bad: RowsFile) -> RowsFile:
    """Three good rows in the bad file's format, named to be read first."""
    if bad.format == "jsonl":
        made = JsonlFile("a_good.jsonl").valid(3).file()
    else:
        made = CsvFile("a_good.csv").valid(3).file()
    data = made.data.replace(b"valid", b"good").replace(b'"v', b'"g').replace(b"\nv", b"\ng")
    rows = [Expect(f"g{e.ext_id[1:]}", (e.email or "").replace("valid", "good"), e.line, ok=True) for e in made.rows]
    return RowsFile(made.name, data, rows)


def run_dag_case(case: Case, inputs: Inputs, folder: Path) -> tuple[str, str]:
    """Run the case's file through a DAG run; classify what the sandbox and the error report say."""
    from airflow_provider_contactsync.core.errors import ConfigurationError
    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag
    from airflow_provider_contactsync.local_run import run_dag, task_states, xcom_value

    from .harness import RowsView, _error_ending, classify_rows

    sandbox = environment()
    sandbox.reset()
    bad = inputs.rows
    assert bad is not None
    drop = folder / "drop"
    drop.mkdir()
    files = [good_file(bad), bad] if bad.whole else [bad]
    for number, made in enumerate(files):
        path = drop / made.name
        path.write_bytes(made.data)
        os.utime(path, (1_000_000 + number * 100, 1_000_000 + number * 100))  # the good file is older: read first
    formula = DAG_RUN_FILES[case.name.rsplit("/", 1)[-1]][1]
    text = DEFINITION.format(
        integration=f"bad{uuid.uuid4().hex[:10]}",
        folder=drop,
        ext=bad.format,
        format=bad.format,
        conn_id=CONN_ID,
        first_name="" if formula is None else f"  first_name: '{formula}'\n",
    )
    path = folder / "drop.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        definition = load_definition(path)
    except ConfigurationError as exc:  # a definition refused before any DAG exists: as validate would
        return _error_ending(case, str(exc), [str(path)], keys=("transform",), prefixes=(str(path),))
    dag = build_dag(definition, staging=f"file://{folder}/staging", default_args={"retries": 0})
    log_start = _log_size()
    dag_run = run_dag(dag)
    states = task_states(dag_run)
    summary = xcom_value(dag_run, "load") or xcom_value(dag_run, "load", key="summary") or {}
    report_url = summary.get("error report") or xcom_value(dag_run, "map", "error_report")
    report = _report(report_url)
    contacts = sandbox.contacts()
    loaded = {str(c["attributes"].get("EXT_ID")): c.get("email") for c in contacts}
    rejects = [(r.get("row", ""), r.get("field"), r.get("value"), _reason(r)) for r in report]
    view = RowsView(loaded, rejects, {c["email"] for c in contacts if c.get("email")})
    context = f"tasks {states}; summary {json.dumps(summary, default=str)[:600]}{_failures(log_start)}"

    if bad.whole:
        good = files[0]
        missing = [e.ext_id for e in good.rows if loaded.get(e.ext_id or "") != e.email]
        if missing:
            return SILENT_DROP, f"the good file next to the bad one was not loaded ({missing}); {context}"
        if states.get("extract") != "success" or states.get("transform") != "success" or states.get("map") != "success":
            return CRASH, f"a task failed before the load; {context}"
        named = [r for r in report if bad.name in (r.get("file", "") + r.get("row", "") + r.get("reason", ""))]
        if not named:
            return CRASH, f"the bad file is not in the error report ({report[:3]}); {context}"
        reason = _reason(named[0])
        if states.get("load") != "failed":
            return CRASH, f"the load did not fail for a file that failed whole (no alert); {context}"
        if not re.search(r"header|encoding|empty|limit|NUL|not valid", reason, re.IGNORECASE):
            return UNCLEAR_ERROR, f"the bad file's reason does not say what is wrong with it: {reason[:300]}"
        return CLEAR_ERROR, f"{bad.name}: {reason[:300]}"

    failed = sorted(task for task, state in states.items() if state != "success")
    if failed:
        return CRASH, f"tasks {failed} failed on a file whose bad rows should only be rejected; {context}"
    ending, detail = classify_rows(bad, view)
    if ending == PER_ROW_REJECT:
        detail = f"{detail}; summary rows read {summary.get('rows read')}, rejected {summary.get('rejected')}"
    return ending, detail


def _log_size() -> int:
    from . import harness

    return harness.WORKER_LOG.stat().st_size if harness.WORKER_LOG is not None else 0


def _failures(start: int) -> str:
    """What the run's failed tasks logged as their failure (Airflow logs to the worker's log)."""
    from . import harness

    if harness.WORKER_LOG is None:
        return ""
    with harness.WORKER_LOG.open("rb") as stream:
        stream.seek(start)
        text = stream.read().decode("utf-8", "replace")
    exception = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b: ")
    found = [line.strip() for line in text.splitlines() if exception.match(line)]
    return ("; exceptions logged: " + " | ".join(dict.fromkeys(found[:6]))) if found else ""


def _reason(row: dict[str, str]) -> str:
    return f"{row.get('file', '')} {row.get('reason', '')}".strip()


def _report(url: str | None) -> list[dict[str, str]]:
    if not url:
        return []
    path = Path(str(url).removeprefix("file://"))
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as stream:
        return list(csv.DictReader(stream))


def dag_run_cases() -> list[Case]:
    from .cases import ACCEPTED

    cases = []
    for what, (make, _formula) in DAG_RUN_FILES.items():

        def inputs(make: Any = make) -> Inputs:
            return Inputs(definition=b"", rows=make())

        good = frozenset({CLEAR_ERROR}) if what in DAG_RUN_WHOLE else frozenset({PER_ROW_REJECT, ACCEPTED})
        if _formula is not None:  # the formula may be refused with the definition, or reject its rows
            good |= {CLEAR_ERROR}
        kind = "jsonl" if what.startswith("jsonl") else "email" if "email" in what else "formula" if _formula else "csv"
        cases.append(Case(f"dag_run/{kind}/{what}", "dag_run", kind, inputs, good))
    return cases

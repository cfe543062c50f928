"""The embedded end-to-end demo: example CSV -> formulas -> mapping -> BrevoHook -> local sandbox.

Needs no account and no server: it starts the Brevo sandbox in-process, points a Brevo
connection at it (an ``AIRFLOW_CONN_*`` variable, as Airflow deployments do), syncs the example
definition and reads a few contacts back.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.error_report import write_error_report
from airflow_provider_contactsync.core.errors import Reject
from airflow_provider_contactsync.core.mapping import to_import_item
from airflow_provider_contactsync.core.pipeline import ContactPipeline
from airflow_provider_contactsync.core.rows import read_rows
from airflow_provider_contactsync.core.spec import FileSource, SourceDefinition, load_definition

EXAMPLES = Path(__file__).parent / "example_dags"
DEMO_DEFINITION = EXAMPLES / "definitions" / "demo_customers.yaml"
DEMO_ATTRIBUTES = {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}


def run_demo(workdir: Path, *, show: int = 5, out: Any = print) -> dict[str, Any]:
    """Run the demo sync in ``workdir`` (sandbox DB, error report); return the run summary."""
    from airflow_provider_contactsync.sandbox import BrevoSandbox

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow-home"))
    definition = load_definition(DEMO_DEFINITION)
    api_key = secrets.token_hex(16)
    with BrevoSandbox(workdir / "sandbox.db", api_key) as sandbox:
        for name, kind in DEMO_ATTRIBUTES.items():
            sandbox.create_attribute(name, kind)
        os.environ[f"AIRFLOW_CONN_{definition.destination.conn_id.upper()}"] = (
            f'{{"conn_type": "brevo", "host": "{sandbox.url}", "password": "{api_key}"}}'
        )
        from airflow_provider_contactsync.hooks.brevo import BrevoHook

        hook = BrevoHook(definition.destination.conn_id)
        list_ids = _ensure_lists(hook, sandbox, definition.destination.list_ids)
        out(f"Brevo sandbox at {sandbox.url}; syncing {DEMO_DEFINITION.name} into lists {list_ids}")
        summary = sync_file_source(definition, hook, list_ids, workdir / "error_report.csv")
        out(format_summary(summary))
        out(f"\nContacts read back from the sandbox (first {show}):")
        for contact in _first(hook.iter_contacts(), show):
            attributes = contact.get("attributes", {})
            out(
                f"  {contact.get('email') or '-':28} SMS={attributes.get('SMS', '-'):14} "
                f"EXT_ID={attributes.get('EXT_ID', '-'):3} {attributes.get('FIRSTNAME', '')} "
                f"{attributes.get('LASTNAME', '')} BIRTHDAY={attributes.get('BIRTHDAY', '-')}"
            )
        hook.close()
    return summary


def sync_file_source(
    definition: SourceDefinition, hook: Any, list_ids: list[int], error_report: Path
) -> dict[str, Any]:
    """Read every file of a local ``file`` source, transform, map and bulk-load it."""
    source = definition.source
    assert isinstance(source, FileSource) and source.type == "file"
    pipeline = ContactPipeline(definition, AttributeCatalog.from_api(hook.get_attributes()))
    rejects: list[Reject] = []
    counts = {"read": 0, "rejected": 0}

    def contacts() -> Iterator[dict[str, Any]]:
        for file in sorted(Path(source.path).glob(source.pattern)):
            rows = read_rows(file, format=source.format, fields=source.fields, csv_options=source.csv)
            for outcome in pipeline.process(rows):
                counts["read"] += 1
                if outcome.contact is None:
                    counts["rejected"] += 1
                    rejects.extend(outcome.rejects)
                else:
                    yield to_import_item(outcome.contact)

    destination = definition.destination
    process_ids = hook.import_contacts(
        contacts(),
        list_ids=list_ids,
        update_existing=destination.update_existing,
        empty_attributes=destination.empty_attributes,
    )
    processes = hook.wait_for_processes(process_ids) if process_ids else []
    write_error_report(rejects, error_report)
    return {
        "rows read": counts["read"],
        "rows rejected": counts["rejected"],
        "contacts sent": counts["read"] - counts["rejected"],
        "import processes": len(process_ids),
        "brevo import report": [p.get("info", {}).get("import", {}) for p in processes],
        "http requests": dict(hook.stats.requests) if hasattr(hook, "stats") else {},
        "error report": str(error_report),
        "rejects": rejects,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = ["", "Run summary", "-----------"]
    for key, value in summary.items():
        if key != "rejects":
            lines.append(f"{key:20} {value}")
    if summary["rejects"]:
        lines += ["", "Rejected rows (also in the error report):"]
        lines += [f"  row {r.row}: {r.field or '(row)'}={r.value!r}: {r.reason}" for r in summary["rejects"]]
    return "\n".join(lines)


def _ensure_lists(hook: Any, sandbox: Any, wanted: list[int]) -> list[int]:
    """Use the definition's lists when the sandbox has them, else a fresh demo list."""
    existing = {int(item["id"]) for item in hook.get_lists()}
    if all(list_id in existing for list_id in wanted):
        return wanted
    return [sandbox.create_list("contactsync demo")]


def _first(items: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if len(out) == count:
            break
        out.append(item)
    return out

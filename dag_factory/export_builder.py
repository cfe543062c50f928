"""One export definition -> one DAG ``contactsync_export__<integration>__<name>``: build_file >> deliver.

Same factory, same folder and the same isolation of broken files as source definitions
(:mod:`.folder`); only the tasks differ. "Run now" is Airflow's trigger; the history's "retry" is a
manual run with ``retry_of`` set, which re-sends a stored file and leaves the schedule alone.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_contactsync.core.spec.export_models import ExportDefinition
from airflow_provider_contactsync.dag_factory.builder import DEFAULT_ARGS, START_DATE, failure_notifier


def export_schedule(definition: ExportDefinition) -> Any:
    """None (manual), or a cron in the definition's time zone (a daily export at 06:30 Paris time)."""
    cron = definition.cron
    if cron is None:
        return None
    if definition.timezone == "UTC" and cron.startswith("@"):
        return cron
    from airflow.sdk import CronTriggerTimetable

    expression = {"@hourly": "0 * * * *", "@daily": "0 0 * * *"}.get(cron, cron)
    return CronTriggerTimetable(expression, timezone=definition.timezone)


def build_export_dag(
    definition: ExportDefinition,
    *,
    file: str | None = None,
    staging: str | None = None,
    default_args: dict[str, Any] | None = None,
    register: bool = True,
) -> DAG:
    """Build the DAG of one export definition (arguments as :func:`..builder.build_dag`)."""
    from airflow_provider_contactsync.exports.history import RETRY_OF
    from airflow_provider_contactsync.operators.export import (
        FULL_EXPORT_PARAM,
        ContactsyncExportDeliverOperator,
        ContactsyncExportOperator,
    )

    args = {**DEFAULT_ARGS, **(default_args or {})}
    spec = definition.model_dump(mode="json")

    def task_args(task_id: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "task_id": task_id,
            "definition": spec,
            "staging": staging,
            "definition_file": file,
        }
        if "on_failure_callback" not in args and definition.alerts.on_failure:
            notifier = failure_notifier(definition)
            if notifier is not None:
                kwargs["on_failure_callback"] = notifier
        if task_id == "deliver" and definition.alerts.on_success and definition.alerts.emails:
            from airflow_provider_contactsync.exports.alerts import delivered_notifier

            kwargs["on_success_callback"] = delivered_notifier(definition)
        return kwargs

    content = definition.content
    what = (
        f"list {content.list_id}"
        if content.list_id
        else (f"segment {content.segment_id}" if content.segment_id else "all contacts")
    )
    with DAG(
        dag_id=definition.dag_id,
        description=definition.description
        or f"Export {content.status} contacts of {what} from Brevo to {definition.destination.type}.",
        doc_md=_doc(definition, file),
        schedule=export_schedule(definition),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # one cursor, one file name per date: executions one after the other
        default_args=args,
        params={
            FULL_EXPORT_PARAM: Param(
                False, type="boolean", description="Ignore the incremental cursor: export every matching contact."
            ),
            RETRY_OF: Param(
                "",
                type="string",
                description="Run id of an earlier execution whose file to send again as it was (the history's "
                "retry); empty for a new export.",
            ),
        },
        tags=[
            "contactsync",
            "contactsync-export",
            f"integration:{definition.integration}",
            f"destination:{definition.destination.type}",
        ],
        auto_register=register,
        is_paused_upon_creation=True if definition.status == "draft" else None,
    ) as dag:
        try:
            ContactsyncExportOperator(**task_args("build_file")) >> ContactsyncExportDeliverOperator(
                **task_args("deliver")
            )
        except BaseException:
            dag.auto_register = False
            raise
    return dag


def _doc(definition: ExportDefinition, file: str | None) -> str:
    content = definition.content
    columns = ", ".join(
        f"`{entry.name}`" + (f" ({entry.obfuscate})" if entry.obfuscate else "") for entry in content.fields
    )
    lines = [
        f"# Export {definition.integration} / {definition.name}",
        "",
        definition.description or "",
        "",
        f"- **Definition file**: `{file}`" if file else "",
        f"- **Contacts**: {content.contacts}, status {content.status}"
        + (f", where `{content.where}`" if content.where else "")
        + (", incremental (modified since the last successful export)" if content.incremental else ""),
        f"- **Columns, in order**: {columns}",
        f"- **Format**: {definition.format.type}"
        + (
            f" (delimiter `{definition.format.delimiter}`, header {'on' if definition.format.header else 'off'})"
            if definition.format.type == "csv"
            else ""
        ),
        f"- **File**: `{definition.file.name}`, compression {definition.file.compression}"
        + (", OpenPGP" if definition.file.encryption else ""),
        f"- **Destination**: {definition.destination.type}"
        + (" (two-step transfer)" if definition.destination.two_step else ""),
        "",
        "Run now: trigger this DAG. Retry an execution with its file as it was: the Contactsync page's export "
        "history (or trigger with `retry_of` = that run's id). Docs: docs/exports.md.",
    ]
    return "\n".join(line for line in lines if line is not None)

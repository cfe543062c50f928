"""The DAG's doc_md: what a reader of the Airflow UI needs to know about the source, without the YAML."""

from __future__ import annotations

from airflow_provider_contactsync.core.spec import SourceDefinition

_LOCATION_KEYS = ("table", "query", "database", "collection", "path", "pattern", "format")


def dag_doc_md(definition: SourceDefinition, file: str | None = None) -> str:
    """Markdown summary: source, schedule, formulas, mapping, destination and alerts."""
    source = definition.source
    lines = [f"### contactsync: {definition.integration} / {source.name}", ""]
    if definition.status == "draft":
        lines += [
            "**Draft**: this DAG is paused and its runs are skipped until the definition says "
            "`status: active`"
            + (" (with `consent.opt_in_confirmed: true`)" if source.type == "salesforce" else "")
            + ".",
            "",
        ]
    if definition.description:
        lines += [definition.description, ""]
    if file:
        lines += [f"Definition: `{file}`", ""]
    conn = getattr(source, "conn_id", None)
    lines.append(f"- **Source**: `{source.type}`" + (f" through connection `{conn}`" if conn else ""))
    for key in _LOCATION_KEYS:
        value = getattr(source, key, None)
        if value:
            lines.append(f"  - {key}: `{_one_line(str(value))}`")
    lines.append(f"  - fields: {', '.join(f'`{f}`' for f in source.fields)}")
    if source.type == "events":
        queue = source.queue
        lines.append(
            f"  - {source.platform} events from the {queue.backend} queue of connection `{queue.conn_id}`"
            + (f" (table `{queue.table}`)" if queue.table else "")
            + f", {source.sync_mode}: webhooks to `/contactsync/webhooks/{definition.integration}/{source.name}`"
        )
        lines.append(
            f"- **Each run** drains up to {source.max_events_per_run:,} events, applied per customer in event-time "
            f"order; an event whose runs fail {source.max_attempts} times goes to the dead-letter list"
        )
    elif source.updated_field:
        lines.append(f"- **Incremental** on `{source.updated_field}` (tie-breaker `{source.key}`)")
    else:
        lines.append("- **Full read** every run (no `updated_field`)")
    lines.append(f"- **Schedule**: {definition.schedule}" + (f" (`{definition.cron}`)" if definition.cron else ""))
    destination = definition.destination
    lines.append(
        f"- **Destination**: Brevo connection `{destination.conn_id}`, lists "
        f"{', '.join(str(i) for i in destination.list_ids)}"
    )
    if definition.alerts.emails:
        lines.append(
            f"- **Alerts** to {', '.join(definition.alerts.emails)}; the run fails above "
            f"{definition.alerts.max_error_rate:.0%} rejected rows"
        )
    if definition.transform:
        lines += ["", "| field | formula |", "|---|---|"]
        lines += [f"| `{name}` | `{_cell(text)}` |" for name, text in definition.transform.items()]
    lines += ["", "| field | Brevo attribute |", "|---|---|"]
    lines += [f"| `{field}` | {attribute} |" for field, attribute in definition.mapping.items()]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")

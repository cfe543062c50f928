"""The monthly operations quota on a source's page: its integration's usage this month, against the limit.

Registered for every source type; a source shows it when its definition has a quota (``quota``, or the
default one of a Salesforce source). The limit comes from the definition file the page shows, else from
the last load summary (``quota limit``); the usage from the integration's Variable of the month
(:mod:`..load.quota`), read live on the API server, so the page shows runs of the integration's other
sources too.

Imported by :func:`.panels.panels_for` the first time a source's page is shown (``BUILTIN["*"]``).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_contactsync.plugins.panels import Panel, register_panel

TITLE = "Monthly operations quota"
COLUMNS = ("month (UTC)", "operations used", "limit", "share", "status")


@register_panel("*")
def operations_quota(detail: Any) -> Panel | None:
    """This month's operations of the source's integration against its quota; None without a quota."""
    from airflow_provider_contactsync.load.quota import MonthUsage, month_end, month_of, utc_now, variable_key

    quota = _quota(detail)
    if quota is None:
        return None
    limit, warn_at = quota
    integration = detail.source.integration
    month = month_of(utc_now())
    usage = MonthUsage.from_json(integration, month, _variable(variable_key(integration, month)))
    if usage.stopped(limit):
        when = f" on {usage.stopped_at[:10]}" if usage.stopped_at else ""
        status = f"stopped{when}: runs fail before sending until {month_end(month):%Y-%m-%d} or the limit is raised"
    elif usage.warned_at:
        status = f"past {warn_at:.0%} (warning sent {usage.warned_at[:10]})"
    else:
        status = "syncing"
    return Panel(
        TITLE,
        COLUMNS,
        [(month, f"{usage.used:,}", f"{limit:,}", usage.share(limit), status)],
        note=f"Creates, updates and deletes in Brevo by every source of integration {integration} this calendar "
        f"month (UTC). An email goes to the alert addresses at {warn_at:.0%}; a run that would go past the limit "
        "sends nothing and fails, and the integration stops syncing until the month ends (or the limit is raised "
        "in quota.operations_per_month).",
    )


def _quota(detail: Any) -> tuple[int, float] | None:
    """(limit, warn_at) from the definition file, else from the last load summary; None without a quota."""
    from airflow_provider_contactsync.core.spec.loader import parse_definition
    from airflow_provider_contactsync.plugins.app import _definition_text

    text, _problem = _definition_text(detail)
    if text is not None and (detail.source.source_type == "salesforce" or "quota" in text):
        try:
            definition = parse_definition(text, file=detail.definition_file, formulas=False)
        except Exception:  # the page says what is wrong with the file; here, fall back on the last run
            definition = None
        if definition is not None:
            quota = definition.quota_or_default
            return None if quota is None else (quota.operations_per_month, quota.warn_at)
    elif text is not None:
        return None
    run = detail.source.last_import
    limit = (run.summary or {}).get("quota limit") if run is not None else None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        from airflow_provider_contactsync.core.spec.models import Quota

        return limit, Quota().warn_at  # the summary does not say; the default
    return None


def _variable(key: str) -> str | None:
    from airflow.models import Variable

    return Variable.get(key, default_var=None)

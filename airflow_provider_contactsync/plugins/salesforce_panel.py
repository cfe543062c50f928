"""Salesforce sources' page: what each recent run wrote back from Brevo to Salesforce, and why not.

The write-back task's summary (``operators/salesforce_writeback.py``) per run: contacts looked at,
written, refused by a rule of the seed or by Salesforce, skipped, deleted in Salesforce, and the most
frequent reasons. Each contact's own line is in the run's error report. Registered for ``salesforce``
through :data:`.panels.BUILTIN`.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_contactsync.plugins.panels import Panel, register_panel

COLUMNS = ("run", "looked at", "written", "refused", "skipped", "deleted in Salesforce", "reasons")
RUNS = 10


@register_panel("salesforce")
def salesforce_writeback(detail: Any) -> Panel | None:
    """Brevo -> Salesforce per run; None when no run wrote back (writeback off, or no run yet)."""
    rows = []
    for run in detail.runs[:RUNS]:
        summary = run.writeback
        if not summary:
            continue
        reasons = summary.get("reasons") or {}
        rows.append(
            (
                run.run_id,
                summary.get("looked at", 0),
                summary.get("written", 0),
                summary.get("refused", 0),
                summary.get("skipped", 0),
                summary.get("deleted in Salesforce", 0),
                "; ".join(f"{reason} ({count})" for reason, count in reasons.items()),
            )
        )
    if not rows:
        return None
    return Panel(
        "Brevo -> Salesforce",
        columns=COLUMNS,
        rows=rows,
        note="Changes made in Brevo to contacts that came from Salesforce, written back by the seed's rules; "
        "each contact's outcome is in the run's error report.",
    )

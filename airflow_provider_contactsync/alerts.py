"""Alert emails: a failure notification per task, the reject-rate alert, and the others a run sends
(refusals by Brevo, the delete guardrail, the monthly operations quota).

All go through the smtp provider (``SmtpNotifier`` / ``SmtpHook``) and the definition's
``alerts.smtp_conn_id``, so the sender address, relay and credentials live in one Airflow connection.

What may reach a mail: DAG/task/run identifiers, counts, reject reasons and the exception text, the
last passed through Airflow's secrets masker (connection passwords fetched by the task are masked
there) and a scrub of ``scheme://user:password@`` credentials, then HTML-escaped. Data-derived text
is only ever a template *variable*, never template source, so a row value cannot inject Jinja.
"""

from __future__ import annotations

import copy
import html
import logging
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from airflow_provider_contactsync.core.spec import SourceDefinition

log = logging.getLogger(__name__)

MAX_REASONS = 10
MAX_ERROR_CHARS = 4000
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)[^/\s:@]*:[^/\s@]*@")

FAILURE_SUBJECT = (
    "[contactsync] {{ ti.dag_id }}: task {{ ti.task_id }} failed (try {{ ti.try_number }}, run {{ ti.run_id }})"
)
FAILURE_HTML = """\
<p>A contactsync task failed.</p>
<table>
<tr><td>DAG</td><td>{{ ti.dag_id | e }}</td></tr>
<tr><td>Task</td><td>{{ ti.task_id | e }}</td></tr>
<tr><td>Run</td><td>{{ ti.run_id | e }}</td></tr>
<tr><td>Try</td><td>{{ ti.try_number }} of {{ ti.max_tries + 1 }}</td></tr>
<tr><td>Host</td><td>{{ ti.hostname | e }}</td></tr>
<tr><td>Log</td><td><a href="{{ ti.log_url | e }}">{{ ti.log_url | e }}</a></td></tr>
</table>
<p>Error:</p>
<pre>{{ contactsync_error | e }}</pre>
"""


class _FailureNotifier(SmtpNotifier):
    """``SmtpNotifier`` that renders a copy per call and adds the cleaned-up exception to the context.

    ``BaseNotifier`` renders its templates in place, irreversibly: one instance shared by several
    tasks (or failing twice in one process, as under ``dag.test()``) would resend the first mail.
    """

    def __call__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], Mapping):
            if getattr(args[0].get("exception"), "contactsync_alert_sent", False):
                # A failure with its own email (the monthly quota's stop), sent once: not one more per run.
                log.info("No task-failure email: this failure's own alert was sent")
                return
            context = dict(args[0])  # never mutate the task's own context
            context["contactsync_error"] = describe_error(context.get("exception"))
            args = (context,)
        SmtpNotifier.__call__(copy.copy(self), *args)


def failure_notifier(definition: SourceDefinition) -> SmtpNotifier | None:
    """The task-level ``on_failure_callback`` for a definition's DAG, or None when nobody is listening.

    Task level, not DAG level: DAG-level failure callbacks have been unreliable in Airflow 3.x.
    Call once per task: each task gets its own instance.
    """
    if not definition.alerts.emails:
        return None
    return _FailureNotifier(
        to=list(definition.alerts.emails),
        smtp_conn_id=definition.alerts.smtp_conn_id,
        subject=FAILURE_SUBJECT,
        html_content=FAILURE_HTML,
    )


def describe_error(error: BaseException | str | None) -> str:
    """The exception as ``Type: message``, with secrets masked and the length capped."""
    if error is None:
        return "(no exception recorded)"
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", _redact(text))
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f"... ({len(text) - MAX_ERROR_CHARS} more characters in the task log)"
    return text


def _redact(text: str) -> str:
    """Mask every secret the task registered (connection passwords, sensitive extras)."""
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # moved again in a later Airflow; the URL scrub still applies
        return text
    return str(redact(text))


def check_reject_rate(definition: SourceDefinition, rows: int, rejected: int) -> str | None:
    """Why the run must fail because too many rows were rejected, or None when it may proceed.

    The threshold itself passes ("above max_error_rate" fails); a run that read nothing never fails.
    Compared as exact fractions of the decimal the user wrote: 21 of 300 is exactly 7%, not a float
    a hair above 0.07.
    """
    if rows <= 0:
        return None
    limit = definition.alerts.max_error_rate
    if Fraction(rejected, rows) <= Fraction(str(limit)):
        return None
    rate, threshold = _percents(rejected / rows, limit)
    return f"{rejected} of {rows} rows rejected ({rate}), above max_error_rate {threshold}"


def _percents(rate: float, limit: float) -> tuple[str, str]:
    """Both as percentages, with more decimals when one would read the same as the other."""
    for digits in (1, 2, 3, 4):
        shown = f"{rate:.{digits}%}", f"{limit:.{digits}%}"
        if shown[0] != shown[1]:
            return shown
    return shown


def reject_rate_message(definition: SourceDefinition, summary: Mapping[str, Any]) -> tuple[str, str]:
    """The reject-rate alert as (subject, HTML body), from the map task's result."""
    rows, rejected = int(summary.get("rows", 0)), int(summary.get("rejected", 0))
    rate = rejected / rows if rows else 0.0
    rate_text, limit_text = _percents(rate, definition.alerts.max_error_rate)
    reasons = sorted(dict(summary.get("reject_reasons") or {}).items(), key=lambda item: -item[1])
    verb = "not loaded" if summary.get("loaded") else "rejected"
    subject = f"[contactsync] {definition.dag_id}: {rejected} of {rows} rows {verb} ({rate_text})"
    e = html.escape
    reason_rows = "".join(
        f"<tr><td>{count}</td><td>{e(str(reason))}</td></tr>\n" for reason, count in reasons[:MAX_REASONS]
    )
    outcome = (
        "the contacts Brevo accepted are loaded; the ones it refused will be sent again next run"
        if summary.get("loaded")
        else "nothing was loaded into Brevo"
    )
    body = (
        f"<p>The run of {e(definition.dag_id)} could not load too many rows (rejected, in identity conflict or "
        f"refused by Brevo); {outcome}.</p>\n"
        "<table>\n"
        f"<tr><td>Rows read</td><td>{rows}</td></tr>\n"
        f"<tr><td>Rejected</td><td>{rejected}</td></tr>\n"
        f"<tr><td>Reject rate</td><td>{rate_text}</td></tr>\n"
        f"<tr><td>max_error_rate</td><td>{limit_text}</td></tr>\n"
        f"<tr><td>Error report</td><td>{e(str(summary.get('error_report') or '(none)'))}</td></tr>\n"
        "</table>\n"
        f"<p>Top reasons (rows per reason):</p>\n<table>\n{reason_rows or '<tr><td>(none)</td></tr>'}</table>\n"
    )
    return subject, body


def refusal_message(definition: SourceDefinition, summary: Mapping[str, Any]) -> tuple[str, str]:
    """The alert for contacts Brevo refused, as (subject, HTML body), from the load's run summary."""
    refused = int(summary.get("refused", 0))
    e = html.escape
    listed = list(summary.get("refusals") or [])
    reason_rows = "".join(f"<li>{e(str(line))}</li>\n" for line in listed)
    if refused > len(listed):
        reason_rows += f"<li>... and {refused - len(listed)} more in the error report</li>\n"
    counts = "".join(
        f"<tr><td>{e(name)}</td><td>{e(str(summary.get(name, 0)))}</td></tr>\n"
        for name in ("rows read", "rejected", "identity conflicts", "created", "updated", "unchanged", "refused")
    )
    subject = f"[contactsync] {definition.dag_id}: {refused} contact{'s' if refused != 1 else ''} refused by Brevo"
    body = (
        f"<p>Brevo refused {refused} contact{'s' if refused != 1 else ''} of the last run of "
        f"{e(definition.dag_id)}. They are not recorded as delivered: the next run sends them again, and they load "
        "once the conflict is fixed (in the source or in Brevo).</p>\n"
        f"<table>\n{counts}"
        f"<tr><td>Error report</td><td>{e(str(summary.get('error report') or '(none)'))}</td></tr>\n</table>\n"
        f"<p>Refused contacts:</p>\n<ul>\n{reason_rows}</ul>\n"
    )
    return subject, body


def send_refusal_alert(definition: SourceDefinition, summary: Mapping[str, Any], context: Any) -> None:
    """Email that Brevo refused contacts (the run itself may succeed); never raises."""
    _send(definition, *refusal_message(definition, summary), context, "refusal alert")


def mass_delete_message(definition: SourceDefinition, error: Any) -> tuple[str, str]:
    """The alert for a run the ``deletes.max_per_run`` guardrail stopped, as (subject, HTML body)."""
    e = html.escape
    subject = (
        f"[contactsync] {definition.dag_id}: stopped before removing {error.count:,} contacts "
        f"(deletes.max_per_run allows {error.limit:,})"
    )
    sample = "".join(f"<li>{e(line)}</li>\n" for line in error.sample)
    body = (
        f"<p>The last run of {e(definition.dag_id)} would have removed {error.count:,} contacts from Brevo, "
        f"more than deletes.max_per_run allows ({e(str(definition.deletes_or_default.max_per_run))}, "  # type: ignore[union-attr]
        f"{error.limit:,} of the {error.owned:,} contacts this source owns). Nothing was sent and nothing was "
        "removed.</p>\n"
        "<p>If the source really lost these contacts, trigger the DAG by hand with the param "
        "<code>allow_mass_delete</code>. If not (a truncated table, an empty export), fix the source and let "
        "the next run go.</p>\n"
        f"<p>First contacts it would have removed:</p>\n<ul>\n{sample}</ul>\n"
    )
    return subject, body


def send_mass_delete_alert(definition: SourceDefinition, error: Any, context: Any) -> None:
    """Email that the delete guardrail stopped a run; never raises."""
    _send(definition, *mass_delete_message(definition, error), context, "mass-delete alert")


def quota_warning_message(definition: SourceDefinition, usage: Any, limit: int) -> tuple[str, str]:
    """The monthly quota's warning (``quota.warn_at`` reached), as (subject, HTML body)."""
    e = html.escape
    name = definition.integration
    subject = (
        f"[contactsync] integration {name}: {usage.used:,} of {limit:,} monthly operations used "
        f"({usage.share(limit)}, {usage.month})"
    )
    body = (
        f"<p>Integration {e(name)} has made {usage.used:,} of its {limit:,} operations (creates, updates and "
        f"deletes in Brevo) for {e(usage.month)} (UTC), {e(usage.share(limit))} of its monthly quota; the last run "
        f"was {e(definition.dag_id)}.</p>\n"
        "<p>When a run would go past the limit, it sends nothing and fails, and the integration's sources stop "
        "syncing until the month ends (or until <code>quota.operations_per_month</code> is raised in their "
        "definitions). This email is sent once a month.</p>\n"
    )
    return subject, body


def send_quota_warning(definition: SourceDefinition, usage: Any, limit: int, context: Any) -> None:
    """Email that the integration passed ``quota.warn_at`` of its monthly quota; never raises."""
    _send(definition, *quota_warning_message(definition, usage, limit), context, "quota warning")


def quota_exhausted_message(definition: SourceDefinition, usage: Any, limit: int, reason: str) -> tuple[str, str]:
    """The monthly quota's stop, as (subject, HTML body)."""
    from airflow_provider_contactsync.load.quota import month_end

    e = html.escape
    name = definition.integration
    subject = f"[contactsync] integration {name} stopped: monthly operations quota reached ({usage.month})"
    body = (
        f"<p>Integration {e(name)} reached its monthly operations quota: its sources stop syncing until "
        f"{month_end(usage.month):%Y-%m-%d %H:%M} UTC, when the count starts again from 0. Every run until then "
        "fails before reading or sending anything (no further email).</p>\n"
        "<table>\n"
        f"<tr><td>Operations used in {e(usage.month)} (UTC)</td><td>{usage.used:,}</td></tr>\n"
        f"<tr><td>quota.operations_per_month</td><td>{limit:,}</td></tr>\n"
        f"<tr><td>Stopped by</td><td>{e(definition.dag_id)}</td></tr>\n"
        "</table>\n"
        f"<p>{e(reason)}</p>\n"
        "<p>To sync again this month, raise <code>quota.operations_per_month</code> in the definitions of the "
        "integration's sources.</p>\n"
    )
    return subject, body


def send_quota_exhausted(definition: SourceDefinition, usage: Any, limit: int, reason: str, context: Any) -> None:
    """Email that the integration stopped for the month at its quota; never raises."""
    _send(definition, *quota_exhausted_message(definition, usage, limit, reason), context, "quota alert")


def send_reject_rate_alert(definition: SourceDefinition, summary: Mapping[str, Any], context: Any) -> None:
    """Email the reject-rate alert; never raises, so the caller's own failure stays the task's error.

    ``notify()`` is called directly (not the notifier itself) so the ready-made subject and body are
    not rendered as Jinja: reject reasons come from the data.
    """
    _send(definition, *reject_rate_message(definition, summary), context, "reject-rate alert")


def _send(definition: SourceDefinition, subject: str, body: str, context: Any, what: str) -> None:
    if not definition.alerts.emails:
        return
    notifier = SmtpNotifier(
        to=list(definition.alerts.emails),
        smtp_conn_id=definition.alerts.smtp_conn_id,
        subject=subject,
        html_content=body,
    )
    try:
        notifier.notify(context)
    except Exception:
        log.exception("Could not send the %s through %s", what, definition.alerts.smtp_conn_id)

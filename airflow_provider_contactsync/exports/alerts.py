"""The "file delivered" email of an export (alerts.on: [success]); failures use the sources' alert."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from airflow_provider_contactsync.core.spec.export_models import ExportDefinition

DELIVERED_SUBJECT = "[contactsync] {{ ti.dag_id }}: export delivered (run {{ ti.run_id }})"
DELIVERED_HTML = """\
<p>A contactsync export was delivered.</p>
<table>
<tr><td>Export</td><td>{{ ti.dag_id | e }}</td></tr>
<tr><td>Run</td><td>{{ ti.run_id | e }}</td></tr>
<tr><td>File</td><td>{{ ti.xcom_pull(task_ids='deliver')['file_name'] | e }}</td></tr>
<tr><td>Rows</td><td>{{ ti.xcom_pull(task_ids='deliver')['rows'] }}</td></tr>
<tr><td>Size</td><td>{{ ti.xcom_pull(task_ids='deliver')['size'] }} bytes</td></tr>
<tr><td>Where</td><td>{{ ti.xcom_pull(task_ids='deliver')['location'] | e }}</td></tr>
</table>
"""


class _DeliveredNotifier(SmtpNotifier):
    """Renders a copy per call: BaseNotifier renders its templates in place (see alerts._FailureNotifier)."""

    def __call__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], Mapping):
            args = (dict(args[0]),)
        SmtpNotifier.__call__(copy.copy(self), *args)


def delivered_notifier(definition: ExportDefinition) -> SmtpNotifier:
    return _DeliveredNotifier(
        to=list(definition.alerts.emails),
        smtp_conn_id=definition.alerts.smtp_conn_id,
        subject=DELIVERED_SUBJECT,
        html_content=DELIVERED_HTML,
    )

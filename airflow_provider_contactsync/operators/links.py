"""Extra links of contactsync tasks: buttons on the task's page in the Airflow UI."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink

ERROR_REPORT_XCOM_KEY = "error_report"
"""XCom key under which the map task stores its run's error report URL (in the staging store)."""


class ErrorReportLink(BaseOperatorLink):
    """The run's error report (rows not loaded, with their reasons), downloaded through the Contactsync page.

    The report itself lives in the staging store (a local folder, ``s3://``, ``gs://``), which a browser
    cannot reach, and Airflow's UI drops any link that is not http(s), mailto or same-origin. So the link
    is the plugin's download endpoint for this run: it reads the report's location from this task's XCom,
    checks the user may read the DAG, and streams the file. Computed on the worker at task end, from
    ``[api] base_url`` (a host-relative path when it is unset).
    """

    name = "Error report"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        from airflow_provider_contactsync.plugins.urls import report_url

        if not XCom.get_value(ti_key=ti_key, key=ERROR_REPORT_XCOM_KEY):
            return ""
        return report_url(ti_key.dag_id, ti_key.run_id)

"""An error report staged on s3:// (moto's S3 server on 127.0.0.1) downloads through the Contactsync
page: the API server reads it from the bucket, as it must when workers are other machines."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from urllib.parse import quote

import pytest
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, xcom_value

from airflow_provider_contactsync.sandbox import BrevoSandbox


def test_an_s3_error_report_downloads_from_the_page(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, s3_staging: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    definition = drop_folder_definition(
        tmp_path,
        brevo_sandbox,
        monkeypatch,
        "id,email\n1,a@example.com\n2,not-an-email\n",
        extra="alerts: {max_error_rate: 0.6}\n",
    )
    dag = build(definition, s3_staging)
    dag_run = run_dag(dag, logical_date=dt.datetime.now(dt.timezone.utc))
    assert xcom_value(dag_run, "load")["error report"].startswith("s3://")

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    purge_cached_app()
    app = create_app()
    token = app.state.auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    try:
        with TestClient(app) as client:
            client.cookies.set("_token", token)
            response = client.get(f"/contactsync/reports/{dag.dag_id}/{quote(dag_run.run_id, safe='')}")
    finally:
        purge_cached_app()

    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["row"], r["outcome"], r["field"]) for r in rows] == [("2", "rejected", "email")]

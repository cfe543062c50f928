"""An error report staged on s3:// (moto's S3 server on 127.0.0.1) downloads through the Contactsync
page: the API server reads it from the bucket, as it must when workers are other machines."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import textwrap
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from servers.airflow_db import run_dag, xcom_value

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox


def test_an_s3_error_report_downloads_from_the_page(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, s3_staging: str, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airflow_provider_contactsync.dag_factory import build_dag

    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_S3PAGE", json.dumps(conn))
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text("id,email\n1,a@example.com\n2,not-an-email\n")
    path = tmp_path / "s3page.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            integration: s3page{uuid.uuid4().hex[:8]}
            source: {{name: customers, type: file, path: drop, pattern: "*.csv", fields: [id, email], key: id}}
            mapping: {{email: EMAIL, id: EXT_ID}}
            destination: {{conn_id: brevo_s3page, list_ids: [2]}}
            alerts: {{max_error_rate: 0.6}}
            """
        )
    )
    dag = build_dag(load_definition(path), file=str(path), staging=s3_staging, default_args={"retries": 0})
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

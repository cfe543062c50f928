"""Staging on s3:// (moto's server on 127.0.0.1 through the Amazon provider's connection): a DAG run
stages its chunks there, keeps its ledger and error report there, and removes the chunks after success."""

from __future__ import annotations

import csv
import io
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from servers.airflow_db import run_dag, task_states, xcom_value
from servers.s3 import S3Server

from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox


def test_a_run_staged_on_s3_loads_reports_and_cleans_up(
    tmp_path: Path,
    brevo_sandbox: BrevoSandbox,
    s3_server: S3Server,
    s3_staging: str,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_contactsync.dag_factory import build_dag

    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_S3", json.dumps(conn))
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text("id,email\n1,a@example.com\n2,not-an-email\n3,c@example.com\n")
    path = tmp_path / "s3.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            integration: s3{uuid.uuid4().hex[:8]}
            source: {{name: customers, type: file, path: drop, pattern: "*.csv", fields: [id, email], key: id}}
            mapping: {{email: EMAIL, id: EXT_ID}}
            destination: {{conn_id: brevo_s3, list_ids: [2]}}
            alerts: {{max_error_rate: 0.5}}
            """
        )
    )
    definition = load_definition(path)

    dag_run = run_dag(build_dag(definition, staging=s3_staging, default_args={"retries": 0}))

    assert set(task_states(dag_run).values()) == {"success"}
    summary = xcom_value(dag_run, "load")
    assert (summary["created"], summary["rejected"]) == (2, 1)
    report_url = summary["error report"]
    assert report_url.startswith("s3://")
    rows = list(csv.DictReader(io.StringIO(ObjectStoragePath(report_url).read_text())))
    assert [(r["row"], r["outcome"]) for r in rows] == [("2", "rejected")]
    bucket = s3_staging.split("@", 1)[1].split("/", 1)[0]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]  # type: ignore[attr-defined]
    dag_root = f"staging/{definition.dag_id}/"
    assert sorted(k.removeprefix(dag_root).split("/")[0] for k in keys) == ["reports", "state"]  # no run chunks left
    assert f"{dag_root}state/sent-contacts.sqlite" in keys  # the ledger lives with the staging

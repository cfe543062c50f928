"""Staging on s3:// (moto's server on 127.0.0.1 through the Amazon provider's connection): a DAG run
stages its chunks there, keeps its ledger and error report there, and removes the chunks after success."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, task_states, xcom_value
from servers.s3 import S3Server

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

    definition = drop_folder_definition(
        tmp_path,
        brevo_sandbox,
        monkeypatch,
        "id,email\n1,a@example.com\n2,not-an-email\n3,c@example.com\n",
        extra="alerts: {max_error_rate: 0.5}\n",
    )

    dag_run = run_dag(build(definition, s3_staging))

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

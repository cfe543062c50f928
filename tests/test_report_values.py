"""Error reports and what they show of personal data (reports.values), and the run summary in the asset event."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, xcom_value

from airflow_provider_contactsync.core.masking import mask_email, mask_text, protect, protect_reason
from airflow_provider_contactsync.sandbox import BrevoSandbox


def test_masking_keeps_the_shape_and_hashing_is_stable() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_text("+33 6 12 34 56 78") == "+** * ** ** ** 78"
    assert mask_text("Ada") == "A**"
    assert protect("lots", "hashed") == protect("lots", "hashed") != protect("lot", "hashed")
    assert protect("x", "raw") == "x"
    reason = "refused by Brevo: EXT_ID 3 belongs to contact 1 whose EMAIL is owner@example.com"
    assert protect_reason(reason, "masked").endswith("whose EMAIL is o***@example.com")
    assert "owner@" not in protect_reason(reason, "hashed")


@pytest.mark.parametrize("values", ["raw", "masked", "hashed"])
def test_a_run_writes_its_report_as_reports_values_says_and_its_counts_in_the_asset_event(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str, values: str
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    csv_text = "id,email,first_name\n1,ok@example.com,Ada\n2,jane.doe@example,Jane\n3,,Nobody\n"
    definition = drop_folder_definition(
        tmp_path,
        brevo_sandbox,
        monkeypatch,
        csv_text,
        mapping="{email: EMAIL, id: EXT_ID, first_name: FIRSTNAME}",
        extra=f"reports: {{values: {values}}}\nalerts: {{max_error_rate: 1}}\n",
    )
    dag = build(definition, f"file://{tmp_path}/staging")

    dag_run = run_dag(dag)

    summary: dict[str, Any] = xcom_value(dag_run, "load")
    with Path(summary["error report"].removeprefix("file://")).open() as stream:
        rows = {row["row"]: row for row in csv.DictReader(stream)}
    bad = rows["2"]
    if values == "raw":
        assert bad["value"] == "jane.doe@example"
    elif values == "masked":
        assert bad["value"] == "j***.***@*****le"  # not a valid address: masked as text, its shape kept
        assert "not a valid email address" in bad["reason"]
    else:
        assert bad["value"].startswith("sha256:") and "jane" not in bad["value"]
    with create_session() as session:
        (event,) = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == f"contactsync/{definition.integration}/customers")
            .all()
        )
        counts = event.extra["contactsync"]
    assert (counts["rows read"], counts["created"], counts["rejected"]) == (3, 2, 1)

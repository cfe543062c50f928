"""debug: true through a DAG run: each stage logs the rows it saw or refused, values masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, task_states

from airflow_provider_contactsync.sandbox import BrevoSandbox


@pytest.mark.parametrize("debug", [True, False])
def test_debug_logs_each_rows_path_masked(
    tmp_path: Path,
    brevo_sandbox: BrevoSandbox,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
    capfd: pytest.CaptureFixture[str],
    debug: bool,
) -> None:
    definition = drop_folder_definition(
        tmp_path,
        brevo_sandbox,
        monkeypatch,
        "id,email\n1,jane.doe@example.com\n2,not-an-email\n",
        extra=f"debug: {str(debug).lower()}\nalerts: {{max_error_rate: 0.6}}\n",
    )

    assert set(task_states(run_dag(build(definition, f"file://{tmp_path}/staging"))).values()) == {"success"}

    logged = capfd.readouterr()
    text = logged.out + logged.err
    lines = [line for line in text.splitlines() if "extract row" in line or "transform/map row" in line]
    if not debug:
        assert lines == []
        return

    assert any("extract row 1:" in line and "j***@example.com" in line for line in lines)
    assert any("transform/map row 2:" in line and "not a valid email address" in line for line in lines)
    assert "jane.doe@example.com" not in text  # masked: reports.values is not raw

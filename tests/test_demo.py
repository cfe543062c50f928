"""The README's demo: the example DAG run twice by Airflow against a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_example_dag_then_an_incremental_no_op(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_contactsync.cli", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    first, second = out.split("== second run")
    assert "rows read            10" in first and "created              7" in first
    assert "rejected             3" in first
    assert "extract=skipped" in second and "load=skipped" in second
    assert "write calls to Brevo  0" in second
    assert "ada.lovelace@example.com" in second  # contacts read back from the sandbox

"""A one-file CSV source synced into the sandbox, for tests that need a real DAG run and little else."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_contactsync.core.spec import SourceDefinition, load_definition
from airflow_provider_contactsync.sandbox import BrevoSandbox


def drop_folder_definition(
    folder: Path,
    sandbox: BrevoSandbox,
    monkeypatch: pytest.MonkeyPatch,
    csv_text: str,
    *,
    mapping: str = "{email: EMAIL, id: EXT_ID}",
    extra: str = "",
    conn_id: str = "brevo_drop",
) -> SourceDefinition:
    """``folder/drop/a.csv`` holding ``csv_text`` (its header gives the fields; key ``id``), a definition
    over it with a unique integration, and the Airflow connection ``conn_id`` pointing at the sandbox.

    :param extra: more top-level YAML (``alerts: ...``, ``reports: ...``), one key per line.
    """
    conn = {"conn_type": "brevo", "host": sandbox.url, "password": sandbox.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    (folder / "drop").mkdir(parents=True, exist_ok=True)
    (folder / "drop" / "a.csv").write_text(csv_text)
    fields = csv_text.splitlines()[0].replace(",", ", ")
    path = folder / "drop.yaml"
    path.write_text(
        f"integration: drop{uuid.uuid4().hex[:8]}\n"
        f'source: {{name: customers, type: file, path: drop, pattern: "*.csv", fields: [{fields}], key: id}}\n'
        f"mapping: {mapping}\n"
        f"destination: {{conn_id: {conn_id}, list_ids: [2]}}\n" + extra
    )
    return load_definition(path)


def build(definition: SourceDefinition, staging: str, **default_args: Any) -> Any:
    """The definition's DAG, without retries unless asked."""
    from airflow_provider_contactsync.dag_factory import build_dag

    return build_dag(definition, staging=staging, default_args={"retries": 0, **default_args})

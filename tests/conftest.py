"""Test-wide setup: an isolated AIRFLOW_HOME before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="contactsync-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.environ["AIRFLOW_HOME"], "dags"))

pytest_plugins: list[str] = [
    "airflow_provider_contactsync.sandbox.pytest_plugin",
    "servers.postgres",
    "servers.smtp",
    "servers.airflow_db",
]

"""Test-wide setup: an isolated AIRFLOW_HOME before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile

# Always a fresh home per test process (xdist workers inherit the controller's environment, and a
# developer's own AIRFLOW_HOME or database must never be touched by the tests).
_home = tempfile.mkdtemp(prefix=f"contactsync-airflow-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(_home, "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"

pytest_plugins: list[str] = [
    "airflow_provider_contactsync.sandbox.pytest_plugin",
    "airflow_provider_contactsync.salesforce_sandbox.pytest_plugin",
    "servers.postgres",
    "servers.smtp",
    "servers.http_receiver",
    "servers.redis",
    "servers.ftp",
    "servers.sftp",  # after servers.ftp, which it imports
    "servers.bigquery",
    "servers.s3",
    "servers.airflow_db",
    "servers.airflow_services",
]

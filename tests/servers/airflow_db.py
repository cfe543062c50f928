"""A real Airflow metadata database (SQLite) per test process, for end-to-end DAG runs.

tests/conftest.py points AIRFLOW_HOME and the database URL at a fresh folder per test process
before Airflow is imported; this fixture migrates that database once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_contactsync.local_run import prepare_metadata_db, run_dag, task_states, xcom_value

__all__ = ["airflow_db", "run_dag", "task_states", "xcom_value"]


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """Migrate the test process's SQLite metadata DB once; yields its URL."""
    yield prepare_metadata_db()

"""The DAG factory: one DAG per YAML source definition.

Public API (stable)::

    load_dags(folder=None, *, staging=None, default_args=None, strict=False) -> dict[str, DAG]
    check_definitions(folder=None) -> None   # raises ContactsyncDefinitionsError for broken files
    build_dag(definition, *, file=None, staging=None, default_args=None, register=True) -> DAG
    ContactsyncDefinitionsError   # broken definition files, each with its problems
    DEFAULT_ARGS                  # the task defaults (retries with exponential backoff)

The two one-line DAG files (two files, so that a broken definition's import error never
deactivates the good DAGs; see docs/adr/0003-broken-definition-isolation.md)::

    from airflow_provider_contactsync.dag_factory import load_dags; load_dags()
    from airflow_provider_contactsync.dag_factory import check_definitions; check_definitions()
"""

from __future__ import annotations

from airflow_provider_contactsync.dag_factory.builder import DEFAULT_ARGS, build_dag
from airflow_provider_contactsync.dag_factory.errors import ContactsyncDefinitionsError
from airflow_provider_contactsync.dag_factory.folder import check_definitions, definitions_folder, load_dags

__all__ = [
    "DEFAULT_ARGS",
    "ContactsyncDefinitionsError",
    "build_dag",
    "check_definitions",
    "definitions_folder",
    "load_dags",
]

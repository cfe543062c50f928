"""The DAG factory: one DAG per YAML source definition.

Public API (stable)::

    load_dags(folder=None, *, staging=None, default_args=None, strict=False) -> dict[str, DAG]
    build_dag(definition, *, file=None, staging=None, default_args=None) -> DAG
    ContactsyncDefinitionsError   # broken definition files, each with its problems
    DEFAULT_ARGS                  # the task defaults (retries with exponential backoff)

The one-line DAG file::

    from airflow_provider_contactsync.dag_factory import load_dags; load_dags()
"""

from __future__ import annotations

from airflow_provider_contactsync.dag_factory.builder import DEFAULT_ARGS, build_dag
from airflow_provider_contactsync.dag_factory.errors import ContactsyncDefinitionsError
from airflow_provider_contactsync.dag_factory.folder import definitions_folder, load_dags

__all__ = ["DEFAULT_ARGS", "ContactsyncDefinitionsError", "build_dag", "definitions_folder", "load_dags"]

"""One DAG per YAML file in definitions/ next to this file (see airflow_provider_contactsync.dag_factory)."""

from airflow_provider_contactsync.dag_factory import load_dags

load_dags()

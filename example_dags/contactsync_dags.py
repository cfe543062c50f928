"""One DAG per YAML file in definitions/ next to this file (see airflow_provider_contactsync.dag_factory).

A broken definition gets no DAG and never stops the others; contactsync_check.py reports it.
"""

from airflow_provider_contactsync.dag_factory import load_dags

load_dags()

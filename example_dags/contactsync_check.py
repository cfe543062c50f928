"""No DAG: the Airflow import error that names every broken file in definitions/, its lines and problems.

Its own file because Airflow deactivates every DAG of a file with an import error: here there is
none to deactivate (docs/adr/0003-broken-definition-isolation.md). Same folder as contactsync_dags.py.
"""

from airflow_provider_contactsync.dag_factory import check_definitions

check_definitions()

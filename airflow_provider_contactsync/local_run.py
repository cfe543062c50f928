"""Run a contactsync DAG in-process on a local SQLite metadata DB: the demo and the tests use it.

``dag.test()`` needs a migrated metadata database, the DAG bundle rows and the DAG serialised
into the database; this module does those three steps and nothing else.
"""

from __future__ import annotations

import os
from typing import Any


def prepare_metadata_db() -> str:
    """Migrate the configured metadata DB (idempotent) and register the DAG bundles; return its URL."""
    from airflow.configuration import conf
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils import db

    os.makedirs(conf.get("core", "dags_folder"), exist_ok=True)
    db.initdb()
    DagBundlesManager().sync_bundles_to_db()
    return conf.get("database", "sql_alchemy_conn")


def run_dag(dag: Any, *, conf: dict[str, Any] | None = None, logical_date: Any = None) -> Any:
    """Serialise ``dag`` into the metadata DB and run it in-process; return the finished DagRun."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(run_conf=conf, logical_date=logical_date)


def task_states(dag_run: Any) -> dict[str, str]:
    """task_id -> final state of every task instance of a run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """A task's XCom value in a finished run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)

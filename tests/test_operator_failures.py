"""Failures no retry can fix end the task at once, naming the fix; the others keep Airflow's retries."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.exceptions import AirflowNotFoundException
from airflow.sdk.exceptions import AirflowFailException
from drop_folder import build, drop_folder_definition
from servers.airflow_db import run_dag, task_states

from airflow_provider_contactsync.core.errors import BrevoError, MappingError
from airflow_provider_contactsync.operators.failures import configuration_errors_fail_at_once
from airflow_provider_contactsync.sandbox import BrevoSandbox


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (MappingError("attribute LOYALTY does not exist in the Brevo account", key_path="mapping.points"), "LOYALTY"),
        (AirflowNotFoundException("The conn_id `crm_pg` isn't defined"), "create that Airflow connection"),
        (BrevoError(401, "unauthorized", "Key not found"), "Brevo refused the API key"),
    ],
)
def test_configuration_problems_are_not_retried(error: Exception, says: str) -> None:
    with pytest.raises(AirflowFailException) as caught, configuration_errors_fail_at_once():
        raise error
    assert says in str(caught.value) and "not retried" in str(caught.value)


@pytest.mark.parametrize("error", [BrevoError(503, None, "unavailable"), OSError("connection reset")])
def test_passing_failures_keep_their_retries(error: Exception) -> None:
    with pytest.raises(type(error)), configuration_errors_fail_at_once():
        raise error


def test_a_mapping_the_account_cannot_take_fails_the_run_on_its_first_try(
    tmp_path: Path, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    definition = drop_folder_definition(
        tmp_path,
        brevo_sandbox,
        monkeypatch,
        "id,email,points\n1,a@example.com,5\n",
        mapping="{email: EMAIL, points: LOYALTY_POINTS}",
    )
    dag = build(definition, f"file://{tmp_path}/staging", retries=3)

    dag_run = run_dag(dag)

    assert task_states(dag_run)["map"] == "failed"
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id="map").one()
        assert ti.try_number == 1  # not up for retry: failed on its first try

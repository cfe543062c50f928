"""One source definition -> one DAG: extract >> transform >> map >> load.

The DAG is created inside ``with DAG(...)`` so Airflow registers it without the DAG file having to
assign it to a global: the one-line DAG file stays one line.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_contactsync.core.spec import SourceDefinition
from airflow_provider_contactsync.dag_factory.docs import dag_doc_md

START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""Fixed and in the past: with ``catchup=False`` only the latest interval runs, and a fixed date keeps
the serialised DAG identical between parses (a moving start date would re-version it each time)."""

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "contactsync",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    # Airflow 3.3 takes a multiplier here (0 = constant delay); ``True`` would mean 1.0, no backoff.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}
"""Task defaults: transient source or Brevo failures retry after 1, 2, 4 minutes (capped at 30)."""

FULL_REFRESH_PARAM = "full_refresh"
DRY_RUN_PARAM = "dry_run"
ALLOW_MASS_DELETE_PARAM = "allow_mass_delete"
"""The run params the tasks read (extract: full_refresh; load: dry_run, allow_mass_delete)."""


def build_dag(
    definition: SourceDefinition,
    *,
    file: str | None = None,
    staging: str | None = None,
    default_args: dict[str, Any] | None = None,
    register: bool = True,
) -> DAG:
    """Build the DAG of one source definition.

    :param definition: the validated definition (``core.spec.load_definition``).
    :param file: the definition file, named in the DAG's documentation.
    :param staging: ObjectStoragePath URL for chunk files (default: the operators' default).
    :param default_args: task arguments overriding :data:`DEFAULT_ARGS`; an ``on_failure_callback``
        there replaces the definition's e-mail alert.
    :param register: register the DAG with the DAG file being parsed (what a ``with DAG`` block
        does); ``False`` builds it only to see that it builds (``check_definitions``).
    """
    if getattr(definition, "kind", None) == "export":
        from airflow_provider_contactsync.dag_factory.export_builder import build_export_dag

        return build_export_dag(
            definition,  # type: ignore[arg-type]
            file=file,
            staging=staging,
            default_args=default_args,
            register=register,
        )
    from airflow_provider_contactsync.operators import (
        ContactsyncExtractOperator,
        ContactsyncLoadOperator,
        ContactsyncMapOperator,
        ContactsyncTransformOperator,
    )

    args = {**DEFAULT_ARGS, **(default_args or {})}
    spec = definition.model_dump(mode="json")

    def task_args(task_id: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"task_id": task_id, "definition": spec, "staging": staging}
        if "on_failure_callback" not in args:
            # Task level (DAG-level failure callbacks are unreliable in 3.x), one notifier per task.
            callbacks = [failure_notifier(definition), *webhook_notifiers(definition, spec, "sync_failed")]
            callbacks = [callback for callback in callbacks if callback is not None]
            if callbacks:
                kwargs["on_failure_callback"] = callbacks[0] if len(callbacks) == 1 else callbacks
        if task_id == "load" and "on_success_callback" not in args:
            completed = webhook_notifiers(definition, spec, "sync_completed")
            if completed:
                kwargs["on_success_callback"] = completed
        return kwargs

    with DAG(
        dag_id=definition.dag_id,
        description=definition.description
        or f"Sync {definition.source.type} source {definition.source.name} of {definition.integration} into Brevo.",
        doc_md=dag_doc_md(definition, file),
        schedule=dag_schedule(definition),
        start_date=START_DATE,
        catchup=False,
        # One run at a time: two runs would read and move the same cursor concurrently. A realtime
        # source's wake-ups during a run queue one next run (docs/adr/0010-customer-events.md).
        max_active_runs=1,
        default_args=args,
        params={
            FULL_REFRESH_PARAM: Param(
                False,
                type="boolean",
                description="Ignore the cursor and read every row of the source again.",
            ),
            DRY_RUN_PARAM: Param(
                False,
                type="boolean",
                description="Read, transform, map and plan, then report what the run would send and remove; "
                "nothing is sent to Brevo and the cursor does not move.",
            ),
            **(
                {
                    ALLOW_MASS_DELETE_PARAM: Param(
                        False,
                        type="boolean",
                        description="Let this run remove more contacts than deletes.max_per_run allows.",
                    )
                }
                if definition.deletes_or_default is not None
                else {}
            ),
        },
        tags=["contactsync", f"integration:{definition.integration}", f"source:{definition.source.type}"],
        auto_register=register,
        # A draft is built paused; a run started anyway is skipped by its extract (the reason in its log).
        is_paused_upon_creation=True if definition.status == "draft" else None,
    ) as dag:
        try:
            extract = ContactsyncExtractOperator(**task_args("extract"))
            (
                extract
                >> ContactsyncTransformOperator(**task_args("transform"))
                >> ContactsyncMapOperator(**task_args("map"))
                >> ContactsyncLoadOperator(**task_args("load"))
            )
            if getattr(definition.source, "writeback", False):  # Salesforce: Brevo's changes go back
                from airflow_provider_contactsync.operators.salesforce_writeback import (
                    ContactsyncSalesforceWritebackOperator,
                )

                load = dag.get_task("load")
                load >> ContactsyncSalesforceWritebackOperator(**task_args("writeback"))
            wait = getattr(definition.source, "wait_for_file", None)
            if wait is not None:
                from airflow_provider_contactsync.sensors import ContactsyncNewFileSensor

                sensor_args = task_args("wait_for_file")
                sensor_args.pop("staging")
                (
                    ContactsyncNewFileSensor(
                        **sensor_args,
                        poke_interval=wait.poke_interval_seconds,
                        timeout=wait.timeout_seconds,
                        retries=0,  # a timeout is a skip, not a failure to retry
                    )
                    >> extract
                )
        except BaseException:
            dag.auto_register = False  # a half-built DAG must not reach the DagBag
            raise
    return dag


def dag_schedule(definition: SourceDefinition) -> Any:
    """The DAG's ``schedule``: the definition's cron (None when manual), or for a realtime events source
    its wake asset, or with a cron too, the asset or the cron (a safety sweep for lost wake-ups).

    Imported only for realtime sources: the watcher's trigger class loads the messaging providers.
    """
    source = definition.source
    if source.type != "events" or source.sync_mode != "realtime":
        return definition.cron
    from airflow_provider_contactsync.sources.events.wake import wake_asset

    asset = wake_asset(definition.integration, source.name, source.queue.wake_connection)
    if definition.cron is None:
        return asset
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(definition.cron, timezone="UTC"), assets=asset)


def webhook_notifiers(definition: SourceDefinition, spec: dict[str, Any], event: str) -> list[Any]:
    """The outbound webhook notifier for ``event`` (a list of one), or none when no webhook listens to it.

    Imported only then: the HTTP provider's hook is not worth loading at every parse of every DAG.
    """
    if not any(event in webhook.events for webhook in definition.notifications.webhooks):
        return []
    from airflow_provider_contactsync.notifications.webhooks import ContactsyncWebhookNotifier

    return [ContactsyncWebhookNotifier(spec, event)]


def failure_notifier(definition: SourceDefinition) -> Any | None:
    """A new failure alert for one task (an SmtpNotifier), or None when nobody is listening.

    ``alerts`` is imported lazily (it pulls in the SMTP provider) and is optional, so a deployment
    without it still gets its DAGs.
    """
    factory = _notifier_factory()
    return factory(definition) if factory is not None else None


@functools.cache
def _notifier_factory() -> Any | None:
    try:
        from airflow_provider_contactsync import alerts
    except ModuleNotFoundError as exc:
        if exc.name != "airflow_provider_contactsync.alerts":
            raise  # alerts exists but one of its own imports is missing: say so
        return None
    return getattr(alerts, "failure_notifier", None)

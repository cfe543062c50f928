"""What the Contactsync page shows, read from Airflow's own records; nothing is stored twice.

A source is a DAG tagged ``contactsync`` (``contactsync__<integration>__<source>``). Its runs are
DagRuns, its counts the load task's summary in XCom (``return_value``, or key ``summary`` when the load
failed after settling), its error report the URL the map task put in XCom under ``error_report``.

The overview reads every source with a fixed number of queries, whatever the number of sources: the
latest run and the latest load summary of all DAGs at once (grouped ``max``), then their XComs and task
instances in one query each.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SOURCE_TAG = "contactsync"
LOAD_TASK = "load"
MAP_TASK = "map"
WRITEBACK_TASK = "writeback"  # Salesforce sources with writeback: Brevo -> Salesforce
ERROR_REPORT_KEY = "error_report"  # operators.links.ERROR_REPORT_XCOM_KEY (not imported: it pulls in the SDK)
SUMMARY_KEYS = ("return_value", "summary")
RUNS_SHOWN = 30

COUNTS = ("rows read", "created", "updated", "unchanged", "rejected", "refused", "deleted")
"""The counts every source shows, from the load's run summary."""
OPTIONAL_COUNTS = ("unlinked", "blacklisted")
"""Shown only when a source's summary has them (mirror mode and soft deletes)."""
NOT_LOADED = ("rejected", "identity conflicts", "refused")
"""Rows of a run that did not reach Brevo as read, for its reject rate."""

REJECT_WARNING_RATE = 0.05
"""A run whose reject rate is above its definition's ``max_error_rate`` (in the load summary as
``max error rate``) raises an alert; summaries written before it was recorded use this, the default."""

_DEFINITION_LINE = re.compile(r"^Definition: `(?P<path>[^`\n]+)`$", re.MULTILINE)


@dataclass(frozen=True)
class Alert:
    level: str  # error | warning | info
    text: str


@dataclass
class Run:
    """One DAG run, with what its tasks left in XCom."""

    pk: int
    run_id: str
    state: str | None
    run_type: str
    run_after: dt.datetime | None
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    conf: dict[str, Any]
    summary: dict[str, Any] | None = None
    error_report: str | None = None
    task_states: dict[str, str] = field(default_factory=dict)
    writeback: dict[str, Any] | None = None  # Salesforce sources: what the write-back task did

    @property
    def when(self) -> dt.datetime | None:
        return self.end_date or self.start_date or self.run_after

    @property
    def duration_seconds(self) -> float | None:
        if self.start_date is None or self.end_date is None:
            return None
        return max(0.0, (self.end_date - self.start_date).total_seconds())

    @property
    def kind(self) -> str:
        """What was asked of the run: full refresh, dry run, or a plain sync."""
        if self.conf.get("dry_run"):
            return "dry run"
        if self.conf.get("full_refresh"):
            return "full refresh"
        return "sync"

    @property
    def outcome(self) -> str:
        """The run's state, told apart when nothing was loaded because nothing was new (a skip)."""
        state = self.state or "none"
        if state == "success" and self.task_states.get(LOAD_TASK) == "skipped":
            return "skipped"
        return state

    @property
    def failed_tasks(self) -> list[str]:
        return sorted(task for task, state in self.task_states.items() if state == "failed")

    def count(self, name: str) -> int | None:
        if self.summary is None:
            return None
        value = self.summary.get(name, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def counts(self) -> dict[str, int | None]:
        return {name: self.count(name) for name in (*COUNTS, *OPTIONAL_COUNTS)}

    @property
    def not_loaded(self) -> int | None:
        if self.summary is None:
            return None
        return sum(self.count(name) or 0 for name in NOT_LOADED)

    @property
    def reject_rate(self) -> float | None:
        """Rows not loaded (rejected, in identity conflict, refused) per row handled (read + retried)."""
        if self.summary is None:
            return None
        handled = (self.count("rows read") or 0) + (self.count("retried") or 0)
        return (self.not_loaded or 0) / handled if handled else None

    @property
    def cursor(self) -> str | None:
        cursor = (self.summary or {}).get("cursor")
        if not isinstance(cursor, dict) or "value" not in cursor:
            return None
        key = cursor.get("key")
        return f"{cursor['value']}" + (f" / key {key}" if key is not None else "")


@dataclass
class Source:
    """One contactsync DAG, with its latest run and its latest import (the latest run with a summary)."""

    dag_id: str
    integration: str
    name: str
    source_type: str
    schedule: str
    is_paused: bool
    is_stale: bool
    has_import_errors: bool
    next_run: dt.datetime | None
    fileloc: str | None
    last_run: Run | None = None
    last_import: Run | None = None

    @property
    def alerts(self) -> list[Alert]:
        alerts: list[Alert] = []
        if self.is_stale:
            alerts.append(Alert("error", "DAG not loaded: its definition is broken or was removed"))
        if self.has_import_errors:
            alerts.append(Alert("error", "the DAG file has an import error"))
        last = self.last_run
        if last is not None and last.state == "failed":
            where = f" at {', '.join(last.failed_tasks)}" if last.failed_tasks else ""
            alerts.append(Alert("error", f"last run failed{where}"))
        imported = self.last_import
        if imported is not None:
            refused = imported.count("refused") or 0
            if refused:
                alerts.append(Alert("warning", f"{refused} contact{'s' * (refused != 1)} refused by Brevo"))
            rate = imported.reject_rate
            threshold = (imported.summary or {}).get("max error rate", REJECT_WARNING_RATE)
            if rate is not None and rate > threshold:
                count = imported.not_loaded or 0
                alerts.append(Alert("warning", f"{count} row{'s' * (count != 1)} not loaded ({rate:.1%})"))
            failed_files = (imported.summary or {}).get("files failed") or []
            if failed_files:
                alerts.append(Alert("warning", f"{len(failed_files)} file(s) not imported"))
        if self.is_paused:
            alerts.append(Alert("info", "paused"))
        return alerts

    @property
    def alert_level(self) -> str:
        levels = {alert.level for alert in self.alerts}
        return next((level for level in ("error", "warning") if level in levels), "ok")


@dataclass
class SourceDetail:
    source: Source
    runs: list[Run]  # newest first
    doc_md: str | None
    definition_file: str | None
    staging: str | None  # the staging base the DAG's tasks were given, if any (else the configured one)


def contactsync_dag_ids(session: Any, readable: Iterable[str] | None = None, *, exports: bool = False) -> list[str]:
    """The sources' DAGs (tagged ``contactsync``; with ``exports``, the exports' instead), among ``readable``
    when given, sorted."""
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    query = select(DagTag.dag_id).where(DagTag.name == SOURCE_TAG)
    ids = set(session.scalars(query))
    if readable is not None:
        ids &= set(readable)
    return sorted(dag_id for dag_id in ids if dag_id.startswith("contactsync_export__") == exports)


def load_sources(session: Any, dag_ids: list[str]) -> list[Source]:
    """Every source of ``dag_ids`` with its latest run and latest import, in a fixed number of queries."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select

    sources = _sources(session, dag_ids)
    if not sources:
        return []
    ids = list(sources)
    newest = select(DagRun.dag_id, func.max(DagRun.id)).where(DagRun.dag_id.in_(ids)).group_by(DagRun.dag_id)
    latest = dict(session.execute(newest).all())
    summaries = (
        select(XComModel.dag_id, func.max(XComModel.dag_run_id))
        .where(
            XComModel.dag_id.in_(ids),
            XComModel.task_id == LOAD_TASK,
            XComModel.key.in_(SUMMARY_KEYS),
            XComModel.map_index == -1,
        )
        .group_by(XComModel.dag_id)
    )
    imported = dict(session.execute(summaries).all())
    runs = _runs(session, {*latest.values(), *imported.values()})
    for dag_id, source in sources.items():
        source.last_run = runs.get(latest.get(dag_id, -1))
        source.last_import = runs.get(imported.get(dag_id, -1))
    return list(sources.values())


def load_source(session: Any, dag_id: str, limit: int = RUNS_SHOWN) -> SourceDetail | None:
    """One source with its last ``limit`` runs (newest first), its documentation and definition file."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    sources = _sources(session, [dag_id])
    if dag_id not in sources:
        return None
    source = sources[dag_id]
    pks = list(
        session.scalars(select(DagRun.id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(limit))
    )
    runs_by_pk = _runs(session, set(pks))
    runs = [runs_by_pk[pk] for pk in pks]
    source.last_run = runs[0] if runs else None
    source.last_import = next((run for run in runs if run.summary is not None), None)
    if source.last_import is None:  # older than the runs shown
        source.last_import = next(iter(load_sources(session, [dag_id])), source).last_import
    doc_md, staging = _serialized(session, dag_id)
    match = _DEFINITION_LINE.search(doc_md or "")
    return SourceDetail(source, runs, doc_md, match.group("path") if match else None, staging)


def dag_staging(session: Any, dag_id: str) -> str | None:
    """The staging base the DAG's tasks were given (``load_dags(staging=...)``), None for the configured one."""
    return _serialized(session, dag_id)[1]


def _serialized(session: Any, dag_id: str) -> tuple[str | None, str | None]:
    """The DAG's doc_md and its map task's ``staging`` argument, from the serialized DAG."""
    from airflow.models.serialized_dag import SerializedDagModel

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    if dag is None:
        return None, None
    task = getattr(dag, "task_dict", {}).get(MAP_TASK)
    return getattr(dag, "doc_md", None), (getattr(task, "staging", None) or None) if task is not None else None


def report_location(session: Any, dag_id: str, run_id: str) -> str | None:
    """The URL of a run's error report, as the map task stored it in XCom (None when there is none)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.execute(
        select(XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == MAP_TASK,
            XComModel.key == ERROR_REPORT_KEY,
            XComModel.map_index == -1,
        )
    ).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    return value if isinstance(value, str) and value else None


def by_integration(sources: Iterable[Source]) -> list[tuple[str, list[Source]]]:
    groups: dict[str, list[Source]] = defaultdict(list)
    for source in sources:
        groups[source.integration].append(source)
    return [(name, sorted(groups[name], key=lambda s: s.name)) for name in sorted(groups)]


def _sources(session: Any, dag_ids: list[str]) -> dict[str, Source]:
    from airflow.models.dag import DagModel, DagTag
    from sqlalchemy import select

    if not dag_ids:
        return {}
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for dag_id, name in session.execute(select(DagTag.dag_id, DagTag.name).where(DagTag.dag_id.in_(dag_ids))):
        prefix, _, value = name.partition(":")
        if value:
            tags[dag_id][prefix] = value
    columns = (
        DagModel.dag_id,
        DagModel.is_paused,
        DagModel.is_stale,
        DagModel.has_import_errors,
        DagModel.timetable_summary,
        DagModel.timetable_description,
        DagModel.next_dagrun_create_after,
        DagModel.fileloc,
    )
    sources: dict[str, Source] = {}
    for row in session.execute(select(*columns).where(DagModel.dag_id.in_(dag_ids)).order_by(DagModel.dag_id)):
        named = tags.get(row.dag_id, {})
        parts = row.dag_id.split("__")
        integration = named.get("integration") or (parts[1] if len(parts) == 3 else "")
        sources[row.dag_id] = Source(
            dag_id=row.dag_id,
            integration=integration,
            name=parts[2] if len(parts) == 3 else row.dag_id,
            source_type=named.get("source", ""),
            schedule=_schedule(row.timetable_summary, row.timetable_description),
            is_paused=bool(row.is_paused),
            is_stale=bool(row.is_stale),
            has_import_errors=bool(row.has_import_errors),
            next_run=None if row.is_paused or row.is_stale else row.next_dagrun_create_after,
            fileloc=row.fileloc,
        )
    return sources


def _schedule(summary: str | None, description: str | None) -> str:
    if not summary or summary == "None":
        return "manual"
    return f"{summary} ({description})" if description and description != summary else summary


def _runs(session: Any, pks: set[int]) -> dict[int, Run]:
    """DagRuns by primary key, with their load summary, error report and task states (three queries)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    if not pks:
        return {}
    columns = (
        DagRun.id,
        DagRun.run_id,
        DagRun._state,
        DagRun.run_type,
        DagRun.run_after,
        DagRun.start_date,
        DagRun.end_date,
        DagRun.conf,
    )
    runs = {
        row[0]: Run(
            pk=row[0],
            run_id=row[1],
            state=row[2],
            run_type=row[3],
            run_after=row[4],
            start_date=row[5],
            end_date=row[6],
            conf=row[7] if isinstance(row[7], dict) else {},
        )
        for row in session.execute(select(*columns).where(DagRun.id.in_(pks)))
    }
    wanted = [(LOAD_TASK, key) for key in SUMMARY_KEYS] + [(MAP_TASK, ERROR_REPORT_KEY)]
    wanted.append((WRITEBACK_TASK, "return_value"))
    xcoms = session.execute(
        select(XComModel.dag_run_id, XComModel.task_id, XComModel.key, XComModel.value).where(
            and_(
                XComModel.dag_run_id.in_(pks),
                XComModel.task_id.in_({task for task, _ in wanted}),
                XComModel.key.in_({key for _, key in wanted}),
                XComModel.map_index == -1,
            )
        )
    )
    for row in xcoms:
        run = runs.get(row.dag_run_id)
        if run is None or (row.task_id, row.key) not in wanted:
            continue
        value = XComModel.deserialize_value(row)
        if row.task_id == MAP_TASK:
            run.error_report = value if isinstance(value, str) and value else None
        elif row.task_id == WRITEBACK_TASK:
            run.writeback = value if isinstance(value, dict) else None
        elif isinstance(value, dict) and (run.summary is None or row.key == "return_value"):
            run.summary = value
    states = session.execute(
        select(DagRun.id, TaskInstance.task_id, TaskInstance.state)
        .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
        .where(DagRun.id.in_(pks), TaskInstance.map_index == -1)
    )
    for pk, task_id, state in states:
        run = runs.get(pk)
        if run is not None and state is not None:
            run.task_states[task_id] = str(state)
    return runs

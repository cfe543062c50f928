"""The export history on the Contactsync page (issue 16, "Operate"): each export's executions and their actions.

Pages, with the same data as JSON under ``/api``:

- ``/exports``: every export DAG (``contactsync_export__<integration>__<name>``) the user may read, each with
  its latest executions and a "Run now" button (``/api/exports``);
- ``/exports/{dag_id}``: one export's executions, newest first; ``?ignored=1`` shows the ignored ones too,
  with "Un-ignore" (``/api/exports/{dag_id}``);
- ``/exports/{dag_id}/runs/{run_id}``: one execution: its definition as it was, its result (delivered location,
  verification, confirmation file, read statistics, error) and its steps with their timings.

Actions (POST, answered with a redirect to the history for a browser, JSON otherwise):

- ``/exports/{dag_id}/run``: "Run now", a manual DAG run with the default params;
- ``/exports/{dag_id}/retry/{run_id}``: a manual DAG run with ``conf {"retry_of": run_id}``, which re-sends that
  execution's stored file as it was (refused, with the reason, when the execution has no file or its file was
  removed after ``history.keep_days``);
- ``/exports/{dag_id}/ignore/{run_id}`` and ``/unignore/{run_id}``: hide an execution from the history, or show it
  again (:func:`..exports.history.mark_ignored`; Airflow's run and the record stay).

Runs are created by Airflow's own trigger endpoint function (``trigger_dag_run`` of its REST API), with the user
who asked: the same checks (stale DAG, import errors, params), ``triggered_by`` and triggering user as the
"Trigger" button of Airflow's UI. Each action is written to Airflow's audit log (``action_logging``).

Access is Airflow's auth manager, per DAG: reading a history needs read access to the DAG's runs, "Run now" and
"Retry" the right to create runs (``POST`` on runs, like Airflow's trigger), "Ignore" the right to edit runs
(``PUT``, like editing a run's note). Actions also refuse cross-site requests (:func:`same_origin`): the UI's
JWT cookie would otherwise go along with a form posted from another site. Records hold no secret; the pages show
no connection detail, and a password in a URL (``scheme://user:password@host``) is masked anyway.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.api_fastapi.logging.decorators import action_logging
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from airflow_provider_contactsync.exports import history
from airflow_provider_contactsync.exports.history import RETRY_OF, ExportRecord
from airflow_provider_contactsync.plugins import data

EXPORT_PREFIX = "contactsync_export__"  # core.spec.export_models.EXPORT_DAG_PREFIX
BUILD_TASK = "build_file"
INDEX_SHOWN = 10
"""Executions per export on the overview of all exports."""
HISTORY_SHOWN = 200
"""Executions on one export's history page (the newest)."""
RUNS_WITHOUT_RECORD = 20
"""The latest DAG runs looked at for runs that have no record yet (queued, or failed before writing one)."""

EXPECTED_RUN_STATES = {
    "delivered": ("success",),
    "empty": ("success",),
    "failed": ("failed",),
    "running": ("queued", "running"),
    "built": ("queued", "running"),
}
"""The DAG run's state that goes with each record status; the page shows Airflow's state when it differs."""
STATUS_STYLE = {
    "delivered": "success",
    "empty": "skipped",
    "failed": "failed",
    "running": "running",
    "built": "running",
}

DONE = {
    "run": "Export started",
    "retry": "Retry started",
    "ignored": "Execution hidden from the history",
    "unignored": "Execution shown in the history again",
}
"""What a browser is told after an action (the redirect names the code, never the text)."""

ReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
CreateRuns = Depends(requires_access_dag("POST", DagAccessEntity.RUN))
EditRuns = Depends(requires_access_dag("PUT", DagAccessEntity.RUN))

_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s\"']*):[^/@\s\"']*@")


@dataclass
class RunFacts:
    """The DAG run of an execution, as Airflow's metadata DB has it."""

    state: str | None
    run_type: str
    run_after: dt.datetime | None
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    conf: dict[str, Any]


@dataclass
class Execution:
    """One execution of an export: its record (from the staging store) and its DAG run (from Airflow)."""

    dag_id: str
    run_id: str
    record: ExportRecord | None = None
    run: RunFacts | None = None  # None: no longer in the metadata DB (``airflow db clean``)
    ignored: bool = False

    @property
    def status(self) -> str | None:
        return self.record.status if self.record is not None else None

    @property
    def style(self) -> str:
        if self.record is None:
            return self.airflow_state or "none"
        return STATUS_STYLE.get(self.record.status, "none")

    @property
    def airflow_state(self) -> str | None:
        return self.run.state if self.run is not None else None

    @property
    def state_differs(self) -> bool:
        """Airflow's run state tells something the record does not (a run that died, one not started yet)."""
        if self.run is None:
            return False
        if self.record is None:
            return True
        return (self.run.state or "none") not in EXPECTED_RUN_STATES.get(self.record.status, ())

    @property
    def started(self) -> dt.datetime | None:
        if self.record is not None:
            return _parse(self.record.started_at)
        return (self.run.start_date or self.run.run_after) if self.run is not None else None

    @property
    def finished(self) -> dt.datetime | None:
        if self.record is not None:
            return _parse(self.record.finished_at)
        return self.run.end_date if self.run is not None else None

    @property
    def duration_seconds(self) -> float | None:
        started, finished = self.started, self.finished
        if started is None or finished is None:
            return None
        return max(0.0, (finished - started).total_seconds())

    @property
    def retry_of(self) -> str | None:
        if self.record is not None and self.record.retry_of:
            return self.record.retry_of
        value = (self.run.conf if self.run is not None else {}).get(RETRY_OF)
        return str(value) if value else None

    @property
    def retry_refusal(self) -> str | None:
        return retry_refusal(self.record)


@dataclass
class Export:
    """An export DAG with the executions shown of it."""

    dag_id: str
    integration: str
    name: str
    destination: str
    schedule: str
    is_paused: bool
    is_stale: bool
    executions: list[Execution] = field(default_factory=list)
    more: int = 0  # older executions with a record, not shown
    can_trigger: bool = False
    can_edit: bool = False


def retry_refusal(record: ExportRecord | None) -> str | None:
    """Why an execution cannot be retried (its file re-sent), or None when it can."""
    if record is None:
        return "This run has no export record: there is no file to send again. Use Run now for a new export."
    if not record.file_url:
        return (
            f"Execution {record.run_id} produced no file (status {record.status}): there is nothing to send again. "
            "Use Run now for a new export."
        )
    if record.file_removed:
        kept = f" (kept until {record.keep_until})" if record.keep_until else ""
        return (
            f"The file of execution {record.run_id} was removed from the staging store after the export's "
            f"history.keep_days{kept}: it cannot be sent again. Use Run now for a new export."
        )
    return None


# --- reading: export DAGs, records and runs -------------------------------------------------------------------


def export_dag_ids(session: Any, readable: Any = None) -> list[str]:
    """The export DAGs (tagged ``contactsync``, id ``contactsync_export__...``), among ``readable`` when given."""
    return data.contactsync_dag_ids(session, readable, exports=True)


def staging_base(session: Any, dag_id: str) -> str:
    """Where the export's records are: its tasks' ``staging`` argument, else ``[contactsync] staging``."""
    from airflow.models.serialized_dag import SerializedDagModel

    from airflow_provider_contactsync.staging import default_staging_base

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    task = getattr(dag, "task_dict", {}).get(BUILD_TASK) if dag is not None else None
    staging = getattr(task, "staging", None) if task is not None else None
    return staging if isinstance(staging, str) and staging else default_staging_base()


def load_exports(session: Any, dag_ids: list[str], *, limit: int, include_ignored: bool = False) -> list[Export]:
    """The exports of ``dag_ids`` with their newest ``limit`` executions each."""
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    if not dag_ids:
        return []
    destinations = {
        dag_id: name.partition(":")[2]
        for dag_id, name in session.execute(select(DagTag.dag_id, DagTag.name).where(DagTag.dag_id.in_(dag_ids)))
        if name.startswith("destination:")
    }
    exports = []
    for source in data._sources(session, dag_ids).values():
        export = Export(
            dag_id=source.dag_id,
            integration=source.integration,
            name=source.name,
            destination=destinations.get(source.dag_id, ""),
            schedule=source.schedule,
            is_paused=source.is_paused,
            is_stale=source.is_stale,
        )
        export.executions, export.more = _executions(session, export.dag_id, limit, include_ignored)
        exports.append(export)
    return exports


def load_export(session: Any, dag_id: str, *, limit: int, include_ignored: bool = False) -> Export:
    """One export with its executions; 404 when ``dag_id`` is no export DAG."""
    found = load_exports(session, export_dag_ids(session, [dag_id]), limit=limit, include_ignored=include_ignored)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contactsync export {dag_id}")
    return found[0]


def load_execution(session: Any, dag_id: str, run_id: str) -> Execution:
    """One execution of an export DAG (its record, or at least its DAG run); 404 otherwise."""
    if not export_dag_ids(session, [dag_id]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contactsync export {dag_id}")
    base = staging_base(session, dag_id)
    record = _read_record(base, dag_id, run_id)
    runs = _run_facts(session, dag_id, [run_id])
    if record is None and run_id not in runs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no execution {run_id} of {dag_id}")
    ignored = record is not None and history.is_ignored(base, dag_id, run_id)
    return Execution(dag_id, run_id, record, runs.get(run_id), ignored)


def _read_record(base: str, dag_id: str, run_id: str) -> ExportRecord | None:
    """The record of exactly this run (never what a run id like ``..`` would reach in the staging store)."""
    if history._safe(run_id) in ("", ".", ".."):
        return None
    try:
        record = history.read_record(base, dag_id, run_id)
    except (ValueError, TypeError):  # a record.json that is not one (list_records skips those too)
        return None
    if record is None or record.run_id != run_id or record.dag_id != dag_id:
        return None
    return record


def _executions(session: Any, dag_id: str, limit: int, include_ignored: bool) -> tuple[list[Execution], int]:
    """The newest ``limit`` executions: records (ignored ones when asked) and recent runs with no record yet."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    if limit <= 0:
        return [], 0
    base = staging_base(session, dag_id)
    records = history.list_records(base, dag_id, include_ignored=include_ignored)
    shown = records[:limit]
    ignored = {r.run_id for r in shown if history.is_ignored(base, dag_id, r.run_id)} if include_ignored else set()
    latest = list(
        session.scalars(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(RUNS_WITHOUT_RECORD)
        )
    )
    known = {r.run_id for r in records}
    # A recent run missing from the records is a run with no record yet, unless its record is an ignored one.
    bare = [run_id for run_id in latest if run_id not in known and _read_record(base, dag_id, run_id) is None]
    runs = _run_facts(session, dag_id, [r.run_id for r in shown] + bare)
    executions = [Execution(dag_id, r.run_id, r, runs.get(r.run_id), r.run_id in ignored) for r in shown]
    executions += [Execution(dag_id, run_id, None, runs[run_id]) for run_id in bare if run_id in runs]
    oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    executions.sort(key=lambda e: e.started or oldest, reverse=True)
    executions = executions[:limit]
    return executions, len(records) - sum(1 for e in executions if e.record is not None)


def _run_facts(session: Any, dag_id: str, run_ids: list[str]) -> dict[str, RunFacts]:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    if not run_ids:
        return {}
    columns = (
        DagRun.run_id,
        DagRun._state,
        DagRun.run_type,
        DagRun.run_after,
        DagRun.start_date,
        DagRun.end_date,
        DagRun.conf,
    )
    query = select(*columns).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))
    return {
        row[0]: RunFacts(
            state=str(row[1]) if row[1] is not None else None,
            run_type=str(row[2]),
            run_after=row[3],
            start_date=row[4],
            end_date=row[5],
            conf=row[6] if isinstance(row[6], dict) else {},
        )
        for row in session.execute(query)
    }


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)


def without_passwords(record: ExportRecord) -> ExportRecord:
    """The record with any ``user:password@`` of a URL in it masked (records should hold none)."""
    return ExportRecord.from_json(_PASSWORD_IN_URL.sub(r"\g<head>:***@", record.to_json()))


# --- acting: Airflow's trigger, cross-site refusal -------------------------------------------------------------


_DAG_BAG: Any = None
_DAG_BAG_LOCK = threading.Lock()


def _dag_bag() -> Any:
    """The API server's kind of DagBag (serialized DAGs from the metadata DB, cached), built once."""
    global _DAG_BAG
    if _DAG_BAG is None:
        with _DAG_BAG_LOCK:
            if _DAG_BAG is None:
                from airflow.api_fastapi.common.dagbag import create_dag_bag

                _DAG_BAG = create_dag_bag()
    return _DAG_BAG


def trigger(request: Request, session: Any, user: Any, dag_id: str, conf: dict[str, Any], note: str | None) -> Any:
    """A manual run of ``dag_id`` by Airflow's own trigger endpoint function, as the user; the DagRun."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run

    given = {
        "dag_id": dag_id,
        "body": TriggerDAGRunPostBody(logical_date=None, conf=conf, note=note),
        "dag_bag": _dag_bag(),
        "user": user,
        "session": session,
        "request": request,
    }
    wanted = inspect.signature(trigger_dag_run).parameters
    missing = [name for name, p in wanted.items() if name not in given and p.default is inspect.Parameter.empty]
    if missing:  # another Airflow version: say so rather than guess
        raise RuntimeError(f"Airflow's trigger_dag_run wants {missing}, which this plugin does not know")
    return trigger_dag_run(**{name: value for name, value in given.items() if name in wanted})


def same_origin(request: Request) -> None:
    """Refuse an action a browser sends from another site (or a sibling one) with the UI's cookie.

    The browser says where a request comes from in ``Sec-Fetch-Site`` (every current browser), else in
    ``Origin`` (sent with every POST); neither can be set by a page's script. A request authenticated by an
    ``Authorization: Bearer`` header is no browser's ambient credential: a program holding a token.
    """
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site == "same-origin":
            return
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc.lower() in _own_hosts(request):
        return
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        "cross-site request refused: the request does not come from this Airflow's pages (no matching Origin)",
    )


def _own_hosts(request: Request) -> set[str]:
    """This server's host[:port] as the request reached it, and as ``[api] base_url`` names it."""
    from airflow_provider_contactsync.plugins.urls import api_base_url

    hosts = {request.headers.get("host", "").lower()}
    base_url = api_base_url()
    if base_url:
        hosts.add(urlsplit(base_url).netloc.lower())
    return {host for host in hosts if host}


# --- routes ------------------------------------------------------------------------------------------------------


def add_routes(app: FastAPI) -> None:
    """The export history's pages, JSON and actions, on the Contactsync app."""

    @app.get("/exports", response_class=HTMLResponse)
    def exports_page(request: Request, user: GetUserDep, session: SessionDep, ignored: bool = False) -> Response:
        exports = _readable_exports(user, session, limit=INDEX_SHOWN, include_ignored=ignored)
        return _page(request, user, exports, single=False, show_ignored=ignored)

    @app.get("/api/exports")
    def exports_json(request: Request, user: GetUserDep, session: SessionDep, ignored: bool = False) -> list[Any]:
        exports = _readable_exports(user, session, limit=INDEX_SHOWN, include_ignored=ignored)
        return [_export_json(request, export) for export in exports]

    @app.get("/exports/{dag_id}", response_class=HTMLResponse, dependencies=[ReadRuns])
    def export_page(
        dag_id: str, request: Request, user: GetUserDep, session: SessionDep, ignored: bool = False
    ) -> Response:
        export = _with_permissions(user, load_export(session, dag_id, limit=HISTORY_SHOWN, include_ignored=ignored))
        return _page(request, user, [export], single=True, show_ignored=ignored)

    @app.get("/api/exports/{dag_id}", dependencies=[ReadRuns])
    def export_json(dag_id: str, request: Request, session: SessionDep, ignored: bool = False) -> dict[str, Any]:
        return _export_json(request, load_export(session, dag_id, limit=HISTORY_SHOWN, include_ignored=ignored))

    @app.get("/exports/{dag_id}/runs/{run_id:path}", response_class=HTMLResponse, dependencies=[ReadRuns])
    def execution_page(dag_id: str, run_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        return _execution_page(request, user, session, load_execution(session, dag_id, run_id))

    @app.get("/api/exports/{dag_id}/runs/{run_id:path}", dependencies=[ReadRuns])
    def execution_json(dag_id: str, run_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
        execution = load_execution(session, dag_id, run_id)
        shown = without_passwords(execution.record) if execution.record is not None else None
        return {**_execution_json(request, execution), "record": asdict(shown) if shown is not None else None}

    act = [Depends(same_origin)]

    @app.post(
        "/exports/{dag_id}/run",
        dependencies=[CreateRuns, *act, Depends(action_logging("contactsync_export_run_now"))],
    )
    def run_now(dag_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        if not export_dag_ids(session, [dag_id]):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contactsync export {dag_id}")
        run = trigger(request, session, user, dag_id, {}, None)
        session.commit()  # the run exists before the answer goes out (the browser then reads the history)
        return _done(request, dag_id, "run", run.run_id, {"dag_run_id": run.run_id, "state": str(run.state)})

    @app.post(
        "/exports/{dag_id}/retry/{run_id:path}",
        dependencies=[CreateRuns, *act, Depends(action_logging("contactsync_export_retry"))],
    )
    def retry(dag_id: str, run_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        execution = load_execution(session, dag_id, run_id)
        refusal = execution.retry_refusal or _file_missing(execution.record)
        if refusal is not None:
            if _wants_html(request):
                return _execution_page(request, user, session, execution, problem=refusal, code=409)
            return JSONResponse({"detail": refusal}, status_code=status.HTTP_409_CONFLICT)
        note = f"Retry of {run_id} from the Contactsync export history: its file sent again as it was."
        run = trigger(request, session, user, dag_id, {RETRY_OF: run_id}, note)
        session.commit()
        answer = {"dag_run_id": run.run_id, "state": str(run.state), RETRY_OF: run_id}
        return _done(request, dag_id, "retry", run.run_id, answer)

    @app.post(
        "/exports/{dag_id}/ignore/{run_id:path}",
        dependencies=[EditRuns, *act, Depends(action_logging("contactsync_export_ignore"))],
    )
    def ignore(dag_id: str, run_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        return _set_ignored(request, user, session, dag_id, run_id, ignored=True)

    @app.post(
        "/exports/{dag_id}/unignore/{run_id:path}",
        dependencies=[EditRuns, *act, Depends(action_logging("contactsync_export_unignore"))],
    )
    def unignore(dag_id: str, run_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        return _set_ignored(request, user, session, dag_id, run_id, ignored=False)


def _set_ignored(request: Request, user: Any, session: Any, dag_id: str, run_id: str, *, ignored: bool) -> Response:
    execution = load_execution(session, dag_id, run_id)
    if execution.record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} of {dag_id} has no export record to hide")
    history.mark_ignored(staging_base(session, dag_id), dag_id, run_id, by=user.get_name(), ignored=ignored)
    return _done(request, dag_id, "ignored" if ignored else "unignored", run_id, {"run_id": run_id, "ignored": ignored})


def _file_missing(record: ExportRecord | None) -> str | None:
    """The stored file is gone though the record does not say so (removed by hand); None when there, or unknown."""
    from airflow.sdk import ObjectStoragePath

    if record is None or not record.file_url:
        return None
    try:
        if ObjectStoragePath(record.file_url).exists():
            return None
    except Exception:  # the store cannot be asked now: the retry's first step checks the file itself
        return None
    return (
        f"The file of execution {record.run_id} is no longer in the staging store: it cannot be sent again. "
        "Use Run now for a new export."
    )


def _readable_exports(user: Any, session: Any, *, limit: int, include_ignored: bool) -> list[Export]:
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    exports = load_exports(session, export_dag_ids(session, readable), limit=limit, include_ignored=include_ignored)
    return [_with_permissions(user, export) for export in exports]


def _with_permissions(user: Any, export: Export) -> Export:
    manager = get_auth_manager()

    def may(method: Any) -> bool:
        return bool(
            manager.is_authorized_dag(
                method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=export.dag_id), user=user
            )
        )

    export.can_trigger, export.can_edit = may("POST"), may("PUT")
    return export


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _done(request: Request, dag_id: str, code: str, run_id: str, answer: dict[str, Any]) -> Response:
    """A browser goes back to the export's history (Post/Redirect/Get); a program gets JSON."""
    if not _wants_html(request):
        return JSONResponse(answer)
    base = request.scope.get("root_path", "")
    query = f"done={code}&run={quote(run_id, safe='')}" + ("&ignored=1" if code == "unignored" else "")
    return RedirectResponse(f"{base}{history_path(dag_id)}?{query}", status_code=status.HTTP_303_SEE_OTHER)


def history_path(dag_id: str) -> str:
    return f"/exports/{quote(dag_id, safe='')}"


def execution_path(dag_id: str, run_id: str) -> str:
    return f"{history_path(dag_id)}/runs/{quote(run_id, safe='')}"


def _action_path(dag_id: str, action: str, run_id: str) -> str:
    return f"{history_path(dag_id)}/{action}/{quote(run_id, safe='')}"


# --- pages and JSON ---------------------------------------------------------------------------------------------


def _page(request: Request, user: Any, exports: list[Export], *, single: bool, show_ignored: bool) -> Response:
    from airflow_provider_contactsync.plugins.app import _render

    done = request.query_params.get("done")
    run = request.query_params.get("run")
    notice = None
    if done in DONE:
        known = {e.run_id for export in exports for e in export.executions}
        notice = DONE[done] + (f": run {run}" if run and run in known else "") + "."
    return _render(
        request,
        user,
        "exports.html",
        exports=exports,
        single=single,
        show_ignored=show_ignored,
        notice=notice,
        paths=_Paths(),
        status_cell=_status_cell,
        size=_size,
        seconds=_seconds,
        utc=_utc,
    )


def _execution_page(
    request: Request, user: Any, session: Any, execution: Execution, *, problem: str | None = None, code: int = 200
) -> Response:
    from airflow_provider_contactsync.plugins.app import _render

    export = _with_permissions(user, load_exports(session, [execution.dag_id], limit=0)[0])
    record = without_passwords(execution.record) if execution.record is not None else None
    response = _render(
        request,
        user,
        "export_run.html",
        export=export,
        execution=execution,
        record=record,
        problem=problem,
        paths=_Paths(),
        status_cell=_status_cell,
        size=_size,
        seconds=_seconds,
        utc=_utc,
        as_text=_as_text,
    )
    response.status_code = code
    return response


class _Paths:
    """The pages' links, relative to the app's mount point (the templates prepend ``base``)."""

    history = staticmethod(history_path)
    execution = staticmethod(execution_path)
    action = staticmethod(_action_path)

    @staticmethod
    def run_now(dag_id: str) -> str:
        return f"{history_path(dag_id)}/run"


def _status_cell(execution: Execution) -> Any:
    """The record's status and, where it differs, Airflow's run state (escaped values in fixed markup)."""
    from markupsafe import Markup, escape

    parts = []
    if execution.record is not None:
        status_text = escape(execution.record.status)
        style = escape(execution.style)
        parts.append(f'<span class="state state-{style}" data-status="{status_text}">{status_text}</span>')
    else:
        parts.append('<span class="none" data-status="none">no record yet</span>')
    if execution.state_differs:
        state = escape(execution.airflow_state or "none")
        parts.append(f'<span class="airflow-state" data-airflow-state="{state}">Airflow: {state}</span>')
    return Markup(" ".join(parts))


def _size(value: int | None) -> str:
    if value is None:
        return "–"
    if value < 1024:
        return f"{value:,} B"
    size = value / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _utc(value: dt.datetime | str | None) -> str:
    if isinstance(value, str):
        value = _parse(value)
    if value is None:
        return "–"
    return f"{value.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _as_text(value: Any) -> str:
    """A value of a record's dict as one line (nested values as compact JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=False, default=str)
    return "" if value is None else str(value)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _execution_json(request: Request, execution: Execution) -> dict[str, Any]:
    base = request.scope.get("root_path", "")
    record = execution.record
    return {
        "run_id": execution.run_id,
        "status": execution.status,
        "airflow_state": execution.airflow_state,
        "state_differs": execution.state_differs,
        "file_name": record.file_name if record else None,
        "size": record.size if record else None,
        "rows": record.rows if record else None,
        "started_at": _iso(execution.started),
        "finished_at": _iso(execution.finished),
        "duration_seconds": execution.duration_seconds,
        "retry_of": execution.retry_of,
        "ignored": execution.ignored,
        "file_removed": record.file_removed if record else None,
        "can_retry": execution.retry_refusal is None,
        "view": base + execution_path(execution.dag_id, execution.run_id),
    }


def _export_json(request: Request, export: Export) -> dict[str, Any]:
    return {
        "dag_id": export.dag_id,
        "integration": export.integration,
        "export": export.name,
        "destination": export.destination,
        "schedule": export.schedule,
        "is_paused": export.is_paused,
        "executions": [_execution_json(request, e) for e in export.executions],
        "more": export.more,
    }

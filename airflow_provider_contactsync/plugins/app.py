"""The Contactsync FastAPI app, mounted by the plugin at ``/contactsync`` in Airflow's API server.

Pages (HTML) and the same data as JSON:

- ``/``: every source the user may read, grouped by integration (``/api/sources`` as JSON);
- ``/sources/{dag_id}``: a source's last runs, charts, error reports, definition and trigger buttons
  (``/api/sources/{dag_id}``);
- ``/reports/{dag_id}/{run_id}``: a run's error report as CSV, streamed from the staging store.
- ``/exports``: the export history, each execution's view, and its actions (retry, ignore, run now):
  :mod:`.exports_panel`.
- ``POST /webhooks/{integration}/{source}``: the signed webhook intake (a shop's deliveries into the
  source's events queue; :mod:`airflow_provider_contactsync.sources.events.intake`).

Plugin endpoints are not protected by Airflow: every route here asks Airflow's auth manager. The user
comes from the request's JWT (the UI's ``_token`` cookie, or an ``Authorization: Bearer`` header)
through Airflow's own ``get_user`` dependency; a page of a DAG needs read access to its runs, a report
its XComs (where its location is), and the overview lists only the DAGs the user may read. Static
files (CSS, JS, icon) hold no data and are served to anyone. The webhook intake asks for no user
either: a shop calls it, and each delivery's signature (a secret per source) authenticates it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup, escape

from airflow_provider_contactsync.plugins import charts, data, exports_panel, markdown, panels, reports
from airflow_provider_contactsync.plugins.urls import WEBHOOKS_PATH, report_path

HERE = Path(__file__).parent

ReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
ReadXComs = Depends(requires_access_dag("GET", DagAccessEntity.XCOM))


def create_app() -> FastAPI:
    app = FastAPI(title="Contactsync", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount(WEBHOOKS_PATH, _webhook_intake(), name="webhooks")
    app.add_exception_handler(HTTPException, _error_page)
    app.add_exception_handler(RequestValidationError, _error_page)

    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request, user: GetUserDep, session: SessionDep) -> Response:
        sources = _readable_sources(user, session)
        groups = data.by_integration(sources)
        return _render(request, user, "overview.html", groups=groups, count_names=_count_names(sources))

    @app.get("/api/sources")
    def overview_json(request: Request, user: GetUserDep, session: SessionDep) -> list[dict[str, Any]]:
        base = request.scope.get("root_path", "")
        return [_source_json(base, source) for source in _readable_sources(user, session)]

    @app.get("/sources/{dag_id}", response_class=HTMLResponse, dependencies=[ReadRuns])
    def source_page(dag_id: str, request: Request, user: GetUserDep, session: SessionDep) -> Response:
        detail = _detail(session, dag_id)
        text, problem = _definition_text(detail)
        airflow_root = request.scope.get("app_root_path", "")
        return _render(
            request,
            user,
            "source.html",
            source=detail.source,
            runs=detail.runs,
            charts=charts.run_charts(detail.runs),
            panels=panels.panels_for(detail),
            count_names=_count_names([detail.source], detail.runs),
            report_paths={run.run_id: report_path(dag_id, run.run_id) for run in detail.runs},
            definition_file=detail.definition_file,
            definition_text=text,
            definition_problem=problem,
            docs=markdown.render(detail.doc_md) if detail.doc_md else None,
            trigger_url=f"{airflow_root}/api/v2/dags/{dag_id}/dagRuns",
            can_trigger=get_auth_manager().is_authorized_dag(
                method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
            ),
        )

    @app.get("/api/sources/{dag_id}", dependencies=[ReadRuns])
    def source_json(dag_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
        detail = _detail(session, dag_id)
        base = request.scope.get("root_path", "")
        return {
            **_source_json(base, detail.source),
            "runs": [_run_json(base, dag_id, run) for run in detail.runs],
            "definition_file": detail.definition_file,
            "panels": [panel.__dict__ for panel in panels.panels_for(detail)],
        }

    @app.get("/reports/{dag_id}/{run_id:path}", dependencies=[ReadXComs])
    def download_report(dag_id: str, run_id: str, session: SessionDep) -> Response:
        if dag_id not in data.contactsync_dag_ids(session, [dag_id]):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} is not a contactsync DAG")
        url = data.report_location(session, dag_id, run_id)
        if url is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} of {dag_id} has no error report")
        try:
            path = reports.checked_report_path(url, dag_id, _staging_bases(data.dag_staging(session, dag_id)))
        except reports.ReportRefused as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"error report refused: {exc}") from None
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, "the error report is no longer in the staging store"
            ) from None
        name = f"{dag_id}__{_file_safe(run_id)}__errors.csv"
        return StreamingResponse(
            reports.stream(handle),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    exports_panel.add_routes(app)
    return app


def _webhook_intake() -> Any:
    """The intake app, with ``[contactsync] webhook_max_body_bytes`` and ``webhook_replay_window_seconds``."""
    from airflow.configuration import conf

    from airflow_provider_contactsync.sources.events import intake, signatures

    return intake.create_app(
        max_body_bytes=conf.getint("contactsync", "webhook_max_body_bytes", fallback=intake.DEFAULT_MAX_BODY_BYTES),
        replay_window_seconds=conf.getfloat(
            "contactsync", "webhook_replay_window_seconds", fallback=signatures.DEFAULT_REPLAY_WINDOW_SECONDS
        ),
    )


def _readable_sources(user: Any, session: Any) -> list[data.Source]:
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    return data.load_sources(session, data.contactsync_dag_ids(session, readable))


def _detail(session: Any, dag_id: str) -> data.SourceDetail:
    detail = data.load_source(session, dag_id) if data.contactsync_dag_ids(session, [dag_id]) else None
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contactsync source {dag_id}")
    return detail


def _count_names(sources: list[data.Source], runs: Sequence[data.Run] = ()) -> list[str]:
    """The counts every source shows, plus the optional ones some summary here has."""
    summaries = [s.last_import.summary for s in sources if s.last_import and s.last_import.summary]
    summaries += [run.summary for run in runs if run.summary]
    extra = [name for name in data.OPTIONAL_COUNTS if any(name in summary for summary in summaries)]
    return [*data.COUNTS, *extra]


def _staging_bases(dag_staging: str | None) -> list[str]:
    """Where reports may be: the DAG's own staging base (``load_dags(staging=...)``) and the configured one."""
    from airflow_provider_contactsync.staging import default_staging_base

    return [base for base in (dag_staging, default_staging_base()) if base]


def _definition_text(detail: data.SourceDetail) -> tuple[str | None, str]:
    """The definition file's text, when the API server can read it inside the DAGs folder."""
    from airflow.configuration import conf

    from airflow_provider_contactsync.core.spec.limits import DEFINITION_SIZE

    path = detail.definition_file
    if not path:
        return None, "The DAG does not name its definition file (built without file=)."
    real = os.path.realpath(path)
    roots = [conf.get("core", "dags_folder", fallback="")]
    if detail.source.fileloc:
        roots.append(os.path.dirname(detail.source.fileloc))
    inside = any(
        root and os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots
    )
    if not inside or not real.endswith((".yaml", ".yml")):
        return None, "The definition file is outside the DAGs folder; it is not shown."
    try:
        with open(real, "rb") as stream:
            raw = stream.read(DEFINITION_SIZE.value * 1024 + 1)
    except OSError:
        return None, "The API server cannot read the definition file (the DAGs folder is not on this machine)."
    text = raw[: DEFINITION_SIZE.value * 1024].decode("utf-8", "replace")
    return text, ""


def _render(request: Request, user: Any, template: str, **context: Any) -> HTMLResponse:
    html = (
        _templates()
        .get_template(template)
        .render(
            base=request.scope.get("root_path", ""),
            airflow_root=request.scope.get("app_root_path", ""),
            user_name=user.get_name() if user is not None else "",
            **context,
        )
    )
    return HTMLResponse(html, headers=_HTML_HEADERS)


_HTML_HEADERS = {
    "Cache-Control": "no-store",
    # Only this app's own files run or style the page, and only Airflow's UI (same origin) may frame it.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}


_ENV: Any = None


def _templates() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )
        # The cells every row has, as functions: a Jinja macro call costs ~20 x more, and the overview
        # of 200 sources has 2,000 of them.
        _ENV.globals.update(when=_when, state=_state, count=_count)
    return _ENV


def _when(value: dt.datetime | None) -> Markup:
    if not value:
        return Markup('<span class="none">never</span>')
    return Markup(f'<time datetime="{value.isoformat()}">{value:%Y-%m-%d %H:%M} UTC</time>')


def _state(run: data.Run | None) -> Markup:
    if run is None:
        return Markup('<span class="none">no run yet</span>')
    outcome = escape(run.outcome)
    return Markup(f'<span class="state state-{outcome}" data-state="{outcome}">{outcome}</span>')


def _count(run: data.Run | None, name: str) -> Markup:
    """A count cell; ``name`` is one of data.COUNTS / OPTIONAL_COUNTS (plain words), the value an int."""
    value = run.count(name) if run is not None else None
    shown = '<span class="none">–</span>' if value is None else f"{value:,}"
    return Markup(f'<td class="num" data-count="{name}">{shown}</td>')


async def _error_page(request: Request, exc: Exception) -> Response:
    """HTML for a browser (a sign-in link on 401), JSON like Airflow's API for everything else."""
    code = getattr(exc, "status_code", status.HTTP_422_UNPROCESSABLE_ENTITY)
    detail = getattr(exc, "detail", None) or str(exc)
    if "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": detail}, status_code=code, headers=getattr(exc, "headers", None))
    login_url = None
    if code == status.HTTP_401_UNAUTHORIZED:
        login_url = get_auth_manager().get_url_login(next_url=str(request.url))
    titles = {401: "Sign in to see this page", 403: "Not allowed", 404: "Not found"}
    html = (
        _templates()
        .get_template("error.html")
        .render(
            base=request.scope.get("root_path", ""),
            user_name="",
            status=code,
            title=titles.get(code, "Error"),
            detail=detail if isinstance(detail, str) else str(detail),
            login_url=login_url,
        )
    )
    return HTMLResponse(html, status_code=code, headers=_HTML_HEADERS)


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run_json(base: str, dag_id: str, run: data.Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.outcome,
        "kind": run.kind,
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
        "duration_seconds": run.duration_seconds,
        "counts": run.counts,
        "reject_rate": run.reject_rate,
        "cursor": run.cursor,
        "failed_tasks": run.failed_tasks,
        "error_report": base + report_path(dag_id, run.run_id) if run.error_report else None,
    }


def _source_json(base: str, source: data.Source) -> dict[str, Any]:
    return {
        "dag_id": source.dag_id,
        "integration": source.integration,
        "source": source.name,
        "source_type": source.source_type,
        "schedule": source.schedule,
        "is_paused": source.is_paused,
        "next_run": _iso(source.next_run),
        "last_run": _run_json(base, source.dag_id, source.last_run) if source.last_run else None,
        "last_import": _run_json(base, source.dag_id, source.last_import) if source.last_import else None,
        "alerts": [alert.__dict__ for alert in source.alerts],
    }

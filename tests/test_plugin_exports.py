"""The export history on the Contactsync page (issue 16, "Operate") through Airflow's own API server app.

Two export DAGs built by the factory from definitions in the DAGs folder and written into the metadata DB as
the dag-processor would; their executions' records written into the DAG's own staging base with
``history.write_record`` (and their DagRuns into the metadata DB), as the export tasks leave them. Users come
from SimpleAuthManager narrowed per DAG (:class:`DagScopedAuthManager`, as in test_plugin_api) and send the
UI's JWT cookie; actions send the ``Origin`` a browser sends with a form post. A last test clicks the page's
buttons in a real headless Chromium.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from airflow_provider_contactsync.exports import history
from airflow_provider_contactsync.exports.history import ExportRecord, Step

ALLOWED_DAGS: dict[str, set[str]] = {}
"""username -> the only DAGs the user may see (users not named here: their role decides)."""
SAME_ORIGIN = {"origin": "http://testserver"}  # what a browser sends with a form posted from the page
HTML = {"accept": "text/html"}
DAY = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.timezone.utc)
CSV = b"EMAIL;EXT_ID\r\nada@example.com;1\r\n"


class DagScopedAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose users can be limited to some DAGs, like FAB's per-DAG permissions."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = ALLOWED_DAGS.get(user.get_name())
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


def _definition(folder: Path, integration: str, outbox: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "unsubscribes.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            kind: export
            integration: {integration}
            name: unsubscribes
            schedule: manual
            content:
              contacts: list
              list_id: 2
              status: unsubscribed
              fields: [EMAIL, EXT_ID]
            format: {{type: csv, delimiter: ";"}}
            file: {{name: "unsub_{{date:%Y%m%d}}"}}
            destination: {{type: storage, path: {outbox}}}
            history: {{keep_days: 7}}
            """
        )
    )
    return path


@dataclass
class World:
    root: Path
    staging: str  # the export DAGs' own staging base
    dag_id: str  # bob may use this one
    other: str  # ... and not this one
    runs: dict[str, str]  # name -> run id
    definition: Path


def _at(hours: int) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours)


def _record(dag_id: str, run_id: str, started: dt.datetime, **fields: Any) -> ExportRecord:
    fields.setdefault("finished_at", (started + dt.timedelta(seconds=42.5)).isoformat(timespec="milliseconds"))
    return ExportRecord(
        dag_id=dag_id,
        run_id=run_id,
        export="unsubscribes",
        integration=dag_id.split("__")[1],
        started_at=started.isoformat(timespec="milliseconds"),
        **fields,
    )


def _staged(staging: str, record: ExportRecord) -> ExportRecord:
    """The record's file, written where the build task stages it; the record names it."""
    folder = Path(staging.removeprefix("file://")) / record.dag_id / "exports" / history._safe(record.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (record.file_name or "file")).write_bytes(CSV)
    record.file_url = f"file://{folder / (record.file_name or 'file')}"
    record.size, record.sha256, record.rows = len(CSV), "ab" * 32, 1
    return record


def _write_runs(dag_id: str, states: dict[str, tuple[str, dt.datetime]]) -> None:
    """DagRuns as the scheduler leaves them: run id -> (state, start)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run_id, (state, began) in states.items():
            run = DagRun(
                dag_id=dag_id,
                run_id=run_id,
                run_type=run_id.partition("__")[0],
                logical_date=began,
                run_after=began,
                start_date=began,
                state=state,
                conf={},
            )
            session.add(run)
            session.flush()
            run.end_date = began + dt.timedelta(seconds=43)


def _steps(*names: str, failed: str = "") -> list[Step]:
    return [
        Step(
            name=name, started=_at(0).isoformat(), seconds=0.25 * (n + 1), detail=f"detail of {name}", ok=name != failed
        )
        for n, name in enumerate(names)
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> World:
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    root = tmp_path_factory.mktemp("exports-plugin")
    staging = f"file://{root}/own-staging"
    tag = uuid.uuid4().hex[:8]
    dags = Path(conf.get("core", "dags_folder")) / f"exportsplugin{tag}"
    mine = _definition(dags / "mine", f"news{tag}", root / "outbox")
    theirs = _definition(dags / "theirs", f"other{tag}", root / "outbox")
    bag = DagBag(collect_dags=False)
    built = [build_dag(load_definition(p), file=str(p), staging=staging, register=False) for p in (mine, theirs)]
    for dag in built:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    dag_id, other = built[0].dag_id, built[1].dag_id

    runs = {
        "delivered": f"scheduled__{_at(0).isoformat()}",
        "failed": f"scheduled__{_at(24).isoformat()}",
        "removed": f"scheduled__{_at(-24 * 9).isoformat()}",
        "retry": f"manual__{_at(25).isoformat()}",
        "died": f"manual__{_at(26).isoformat()}",
    }
    delivered = _staged(
        staging,
        _record(
            dag_id,
            runs["delivered"],
            _at(0),
            status="delivered",
            file_name="unsub_20261120.csv",
            definition_file=str(mine),
            definition_text=mine.read_text(),
            filter={"contacts": "list 2", "status": "unsubscribed"},
            read={"read": 3, "kept": 1, "method": "pages"},
            delivered={
                "location": f"file://{root}/outbox/unsub_20261120.csv",
                "name": "unsub_20261120.csv",
                "size": len(CSV),
                "verified": "size and SHA-256 read back",
            },
            confirmation=f"file://{root}/outbox/unsub_20261120.csv.done",
            keep_until=_at(24 * 7).isoformat(timespec="seconds"),
            steps=_steps(
                "check the account's attributes",
                "read contacts from Brevo (pages) and write csv",
                "stage the file",
                "deliver to storage",
            ),
        ),
    )
    delivered.steps[1].detail = "3 read, 1 written <script>alert(1)</script>"
    failed = _record(
        dag_id,
        runs["failed"],
        _at(24),
        status="failed",
        definition_text=mine.read_text(),
        error="BrevoError: 502 Bad Gateway from sftp://partner:hunter2@files.example.com/outbox",
        steps=_steps("check the account's attributes", failed="check the account's attributes"),
    )
    removed = _staged(
        staging,
        _record(dag_id, runs["removed"], _at(-24 * 9), status="delivered", file_name="unsub_20261111.csv"),
    )
    removed.file_removed, removed.keep_until = True, _at(-24 * 2).isoformat(timespec="seconds")
    Path(removed.file_url.removeprefix("file://")).unlink()
    retried = _staged(
        staging,
        _record(dag_id, runs["retry"], _at(25), status="delivered", file_name="unsub_20261120.csv"),
    )
    retried.retry_of = runs["delivered"]
    died = _record(dag_id, runs["died"], _at(26), status="running", finished_at=None)  # its worker was killed
    for record in (delivered, failed, removed, retried, died):
        history.write_record(staging, record)
    _write_runs(
        dag_id,
        {
            runs["delivered"]: ("success", _at(0)),
            runs["failed"]: ("failed", _at(24)),
            runs["removed"]: ("success", _at(-24 * 9)),
            runs["retry"]: ("success", _at(25)),
            runs["died"]: ("failed", _at(26)),
        },
    )
    theirs_run = f"scheduled__{_at(0).isoformat()}"
    history.write_record(staging, _record(other, theirs_run, _at(0), status="failed", error="theirs"))
    _write_runs(other, {theirs_run: ("failed", _at(0))})
    return World(root, staging, dag_id, other, runs, mine)


@dataclass
class Api:
    client: Any
    tokens: dict[str, str]

    def as_user(self, user: str | None, token: str | None = None) -> Any:
        """The client with the user's JWT in the UI's cookie (no cookie for None)."""
        self.client.cookies.clear()
        if user or token:
            self.client.cookies.set("_token", token or self.tokens[user or ""])
        return self.client

    def get(self, url: str, user: str | None = "admin", **kwargs: Any) -> Any:
        return self.as_user(user).get(url, **kwargs)

    def post(self, url: str, user: str | None, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """A POST as the page's forms send it: from the same origin, following no redirect."""
        sent = {**SAME_ORIGIN, **(headers or {})}
        return self.as_user(user).post(url, headers=sent, follow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def app(world: World) -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app, purge_cached_app

    users = {"admin": "admin", "ada": "viewer", "bob": "user"}
    ALLOWED_DAGS.update({"ada": {world.dag_id}, "bob": {world.dag_id}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.DagScopedAuthManager")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in users.items()))
        patch.setenv("AIRFLOW__CONTACTSYNC__STAGING", f"file://{world.root}/configured-staging")  # not the DAGs'
        purge_cached_app()
        yield create_app()
        purge_cached_app()
    ALLOWED_DAGS.clear()


@pytest.fixture(scope="module")
def api(app: Any) -> Iterator[Api]:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    roles = {"admin": "admin", "ada": "viewer", "bob": "user"}
    manager = app.state.auth_manager
    tokens = {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role)) for name, role in roles.items()
    }
    with TestClient(app) as client:
        yield Api(client, tokens)


@pytest.fixture
def new_runs(world: World) -> Iterator[list[str]]:
    """Run ids a test creates; deleted afterwards, so each test sees the world as built."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    created: list[str] = []
    yield created
    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == world.dag_id, DagRun.run_id.in_(created)).delete()


def _dag_runs(dag_id: str) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            run.run_id: {
                "run_type": str(run.run_type),
                "state": str(run.state),
                "conf": run.conf,
                "user": run.triggering_user_name,
                "triggered_by": getattr(run.triggered_by, "value", run.triggered_by),
            }
            for run in session.query(DagRun).filter(DagRun.dag_id == dag_id)
        }


def _row(html: str, run_id: str) -> str:
    start = html.index(f'<tr data-run-id="{run_id}"')
    return html[start : html.index("</tr>", start)]


def _history(api: Api, world: World, user: str = "admin", **params: Any) -> dict[str, Any]:
    response = api.get(f"/contactsync/api/exports/{world.dag_id}", user, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- the list ----------------------------------------------------------------------------------------------------


def test_the_history_lists_executions_newest_first_with_their_facts(api: Api, world: World) -> None:
    runs = world.runs
    export = _history(api, world)
    assert (export["integration"], export["export"], export["destination"]) == (
        world.dag_id.split("__")[1],
        "unsubscribes",
        "storage",
    )
    executions = export["executions"]
    assert [e["run_id"] for e in executions] == [
        runs["died"],
        runs["retry"],
        runs["failed"],
        runs["delivered"],
        runs["removed"],
    ]
    by_run = {e["run_id"]: e for e in executions}
    delivered = by_run[runs["delivered"]]
    assert (delivered["status"], delivered["airflow_state"], delivered["state_differs"]) == (
        "delivered",
        "success",
        False,
    )
    assert (delivered["file_name"], delivered["size"], delivered["rows"]) == ("unsub_20261120.csv", len(CSV), 1)
    assert delivered["started_at"] == _at(0).isoformat() and delivered["duration_seconds"] == 42.5
    assert delivered["can_retry"] and delivered["view"] == (
        f"/contactsync/exports/{world.dag_id}/runs/{quote(runs['delivered'], safe='')}"
    )
    assert by_run[runs["retry"]]["retry_of"] == runs["delivered"]
    died = by_run[runs["died"]]  # the record says running, Airflow's run failed: both are shown
    assert (died["status"], died["airflow_state"], died["state_differs"]) == ("running", "failed", True)
    assert not by_run[runs["failed"]]["can_retry"] and not by_run[runs["removed"]]["can_retry"]

    page = api.get(f"/contactsync/exports/{world.dag_id}", "bob", headers=HTML)
    assert page.status_code == 200
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    html = page.text
    positions = [html.index(f'<tr data-run-id="{runs[name]}"') for name in ("died", "retry", "failed", "delivered")]
    assert positions == sorted(positions)
    row = _row(html, runs["delivered"])
    assert "<code>unsub_20261120.csv</code>" in row and '<td class="num" data-field="rows">1</td>' in row
    assert f'<td class="num" data-field="size">{len(CSV)} B</td>' in row
    assert '<span class="state state-success" data-status="delivered">delivered</span>' in row
    assert "2026-11-20 06:00:00 UTC" in row and '<td class="num" data-field="duration">42.5 s</td>' in row
    assert "Airflow:" not in row  # the record and the run agree
    assert 'data-airflow-state="failed">Airflow: failed</span>' in _row(html, runs["died"])
    retry_row = _row(html, runs["retry"])
    assert f'class="retry-of" href="/contactsync/exports/{world.dag_id}/runs/' in retry_row
    assert f"retry of {runs['delivered']}</a>" in retry_row
    assert "(file removed)" in _row(html, runs["removed"])
    assert '<button type="submit" class="retry">Retry</button>' in row  # bob may trigger
    assert 'class="retry" disabled title="The file of execution' in _row(html, runs["removed"])
    assert 'class="retry" disabled title="Execution' in _row(html, runs["failed"])  # no file
    assert f'action="/contactsync/exports/{world.dag_id}/run"' in html and 'id="show-ignored"' in html


def test_the_overview_of_exports_lists_each_readable_export(api: Api, world: World) -> None:
    everything = {e["dag_id"]: e for e in api.get("/contactsync/api/exports").json()}
    assert {world.dag_id, world.other} <= set(everything)
    assert [e["run_id"] for e in everything[world.dag_id]["executions"]][:2] == [
        world.runs["died"],
        world.runs["retry"],
    ]
    assert {e["dag_id"] for e in api.get("/contactsync/api/exports", "bob").json()} == {world.dag_id}
    html = api.get("/contactsync/exports", "bob", headers=HTML).text
    assert f'<section class="export" data-dag-id="{world.dag_id}">' in html and world.other not in html
    assert f'href="/contactsync/exports/{world.dag_id}"' in html
    assert 'id="nav-exports" href="/contactsync/exports"' in api.get("/contactsync/", "bob").text  # in the header


# --- the view ----------------------------------------------------------------------------------------------------


def test_the_view_shows_the_definition_as_it_was_the_result_and_the_steps(api: Api, world: World) -> None:
    run_id = world.runs["delivered"]
    response = api.get(f"/contactsync/exports/{world.dag_id}/runs/{quote(run_id, safe='')}", "ada", headers=HTML)
    assert response.status_code == 200, response.text
    html = response.text
    assert f'<div id="execution" data-dag-id="{world.dag_id}" data-run-id="{run_id}" data-status="delivered">' in html
    definition = world.definition.read_text()
    assert "destination: {type: storage, path: " in definition
    assert f'<pre id="definition-yaml">{definition.replace(chr(34), "&#34;")}</pre>' in html
    assert f'<code id="definition-file">{world.definition}</code>' in html
    assert f'data-field="delivered-location"><code>file://{world.root}/outbox/unsub_20261120.csv</code>' in html
    assert '<dd data-field="verified">size and SHA-256 read back</dd>' in html
    assert f"<code>file://{world.root}/outbox/unsub_20261120.csv.done</code>" in html
    assert "<tr><th>read</th><td>3</td></tr><tr><th>kept</th><td>1</td></tr><tr><th>method</th><td>pages</td>" in html
    steps = html[html.index('<table id="steps">') :]
    steps = steps[: steps.index("</table>")]
    names = ["check the account&#39;s attributes", "read contacts from Brevo (pages) and write csv", "stage the file"]
    positions = [steps.index(f"<td>{name}</td>") for name in [*names, "deliver to storage"]]
    assert positions == sorted(positions)
    assert '<td class="num">0.500</td>' in steps and '<td class="num">1.000</td>' in steps
    assert "3 read, 1 written &lt;script&gt;alert(1)&lt;/script&gt;" in steps and "<script>alert" not in html
    assert "kept until 2026-11-27 06:00:00 UTC" in html
    assert 'class="retry" disabled title="You may not trigger this DAG"' in html  # ada is a viewer

    failed = api.get(f"/contactsync/exports/{world.dag_id}/runs/{quote(world.runs['failed'], safe='')}").text
    assert (
        '<pre id="error">BrevoError: 502 Bad Gateway from sftp://partner:***@files.example.com/outbox</pre>' in failed
    )
    assert "hunter2" not in failed  # a password in a URL is masked (records should hold none)
    assert '<tr data-step="check the account&#39;s attributes" data-ok="false">' in failed
    assert 'id="retry-refusal"' in failed and "produced no file (status failed)" in failed

    data = api.get(f"/contactsync/api/exports/{world.dag_id}/runs/{quote(run_id, safe='')}", "ada").json()
    assert data["record"]["definition_text"] == definition and data["record"]["steps"][2]["name"] == "stage the file"
    assert data["airflow_state"] == "success" and data["status"] == "delivered"


def test_unknown_exports_and_executions_are_not_found(api: Api, world: World) -> None:
    missing = quote("manual__2020-01-01T00:00:00+00:00", safe="")
    assert api.get(f"/contactsync/exports/{world.dag_id}/runs/{missing}").status_code == 404
    assert api.get(f"/contactsync/exports/{world.dag_id}/runs/%2E%2E").status_code == 404
    assert api.get("/contactsync/exports/contactsync__nope__customers").status_code == 404
    assert api.post(f"/contactsync/exports/{world.dag_id}/ignore/{missing}", "admin").status_code == 404


# --- ignore ------------------------------------------------------------------------------------------------------


def test_ignore_hides_an_execution_and_un_ignore_shows_it_again(api: Api, world: World) -> None:
    run_id = world.runs["failed"]
    quoted = quote(run_id, safe="")
    response = api.post(f"/contactsync/exports/{world.dag_id}/ignore/{quoted}", "bob", headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == f"/contactsync/exports/{world.dag_id}?done=ignored&run={quoted}"
    try:
        assert history.is_ignored(world.staging, world.dag_id, run_id)
        assert run_id not in [e["run_id"] for e in _history(api, world)["executions"]]
        html = api.get(response.headers["location"], "bob").text
        assert f'data-run-id="{run_id}"' not in html
        assert '<p class="done" id="done" role="status">Execution hidden from the history.</p>' in html

        shown = {e["run_id"]: e for e in _history(api, world, ignored=1)["executions"]}
        assert shown[run_id]["ignored"] and not shown[world.runs["delivered"]]["ignored"]
        html = api.get(f"/contactsync/exports/{world.dag_id}?ignored=1", "bob").text
        row = _row(html, run_id)
        assert 'class="ignored" data-ignored="true"' in row and '<button type="submit" class="unignore">' in row
        assert 'id="hide-ignored"' in html
        assert f"/{world.dag_id}/runs/{quoted}" in row  # still viewable
    finally:
        back = api.post(f"/contactsync/exports/{world.dag_id}/unignore/{quoted}", "bob")
    assert back.status_code == 200 and back.json() == {"run_id": run_id, "ignored": False}
    assert not history.is_ignored(world.staging, world.dag_id, run_id)
    assert run_id in [e["run_id"] for e in _history(api, world)["executions"]]


# --- retry and run now -------------------------------------------------------------------------------------------


def test_retry_creates_a_manual_run_that_resends_the_execution(api: Api, world: World, new_runs: list[str]) -> None:
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    original = world.runs["delivered"]
    url = f"/contactsync/exports/{world.dag_id}/retry/{quote(original, safe='')}"
    before = set(_dag_runs(world.dag_id))
    response = api.post(url, "bob")
    assert response.status_code == 200, response.text
    answer = response.json()
    new_runs.append(answer["dag_run_id"])
    assert answer == {"dag_run_id": answer["dag_run_id"], "state": "queued", "retry_of": original}
    created = _dag_runs(world.dag_id)
    assert set(created) - before == {answer["dag_run_id"]}
    run = created[answer["dag_run_id"]]
    assert (run["run_type"], run["state"], run["conf"], run["user"]) == (
        "manual",
        "queued",
        {"retry_of": original},
        "bob",
    )
    with create_session() as session:
        logged = session.query(Log).filter(Log.event == "contactsync_export_retry", Log.dag_id == world.dag_id).all()
        assert [(entry.owner, entry.run_id) for entry in logged] == [("bob", original)]  # Airflow's audit log

    # Until its task writes a record, the new run is in the history with Airflow's state and its retry-of.
    pending = {e["run_id"]: e for e in _history(api, world)["executions"]}[answer["dag_run_id"]]
    assert (pending["status"], pending["airflow_state"], pending["retry_of"]) == (None, "queued", original)

    browser = api.post(url, "bob", headers=HTML)  # a form post: back to the history, which says so
    assert browser.status_code == 303
    new_runs.append(unquote(browser.headers["location"].split("&run=", 1)[1]))
    html = api.get(browser.headers["location"], "bob").text
    assert "Retry started: run " in html and 'data-status="none"' in html
    assert _dag_runs(world.dag_id)[new_runs[-1]]["conf"] == {"retry_of": original}


def test_retry_is_refused_without_a_file_to_send_again(api: Api, world: World) -> None:
    from airflow_provider_contactsync.plugins.exports_panel import retry_refusal

    before = set(_dag_runs(world.dag_id))
    removed = f"/contactsync/exports/{world.dag_id}/retry/{quote(world.runs['removed'], safe='')}"
    response = api.post(removed, "bob")
    assert response.status_code == 409
    assert "was removed from the staging store after the export's history.keep_days" in response.json()["detail"]
    page = api.post(removed, "bob", headers=HTML)
    assert page.status_code == 409
    assert '<p class="notice problem" id="problem" role="alert">The file of execution' in page.text
    assert "Use Run now for a new export." in page.text

    failed = api.post(f"/contactsync/exports/{world.dag_id}/retry/{quote(world.runs['failed'], safe='')}", "bob")
    assert failed.status_code == 409 and "produced no file (status failed)" in failed.json()["detail"]

    # A file deleted by hand, though its record does not say so.
    retried = history.read_record(world.staging, world.dag_id, world.runs["retry"])
    assert retried is not None and retried.file_url and retry_refusal(retried) is None
    stored = Path(retried.file_url.removeprefix("file://"))
    stored.rename(stored.with_suffix(".away"))
    try:
        gone = api.post(f"/contactsync/exports/{world.dag_id}/retry/{quote(world.runs['retry'], safe='')}", "bob")
    finally:
        stored.with_suffix(".away").rename(stored)
    assert gone.status_code == 409 and "is no longer in the staging store" in gone.json()["detail"]
    assert set(_dag_runs(world.dag_id)) == before  # nothing was started


def test_run_now_starts_a_new_export_with_the_default_params(api: Api, world: World, new_runs: list[str]) -> None:
    page = f"http://testserver/contactsync/exports/{world.dag_id}"
    response = api.post(f"/contactsync/exports/{world.dag_id}/run", "bob", headers={**HTML, "referer": page})
    assert response.status_code == 303  # back to the history
    run_id = unquote(response.headers["location"].split("&run=", 1)[1])
    new_runs.append(run_id)
    run = _dag_runs(world.dag_id)[run_id]
    assert (run["run_type"], run["state"], run["conf"], run["user"]) == ("manual", "queued", {}, "bob")
    assert run["triggered_by"] == "ui"  # as Airflow's own trigger from its UI
    html = api.get(response.headers["location"], "bob").text
    assert f"Export started: run {run_id}." in html and 'class="note paused-note"' in html


# --- who may do what ---------------------------------------------------------------------------------------------


def _urls(world: World) -> dict[str, list[str]]:
    run = quote(world.runs["delivered"], safe="")
    dag = world.dag_id
    return {
        "get": [
            "/contactsync/exports",
            "/contactsync/api/exports",
            f"/contactsync/exports/{dag}",
            f"/contactsync/api/exports/{dag}",
            f"/contactsync/exports/{dag}/runs/{run}",
            f"/contactsync/api/exports/{dag}/runs/{run}",
        ],
        "post": [
            f"/contactsync/exports/{dag}/run",
            f"/contactsync/exports/{dag}/retry/{run}",
            f"/contactsync/exports/{dag}/ignore/{run}",
            f"/contactsync/exports/{dag}/unignore/{run}",
        ],
    }


def test_unauthenticated_and_unauthorised_requests_are_refused(api: Api, world: World) -> None:
    before = _dag_runs(world.dag_id)
    urls = _urls(world)
    for url in urls["get"]:
        assert api.get(url, user=None).status_code == 401, url
        assert api.as_user(None, token="not.a.jwt").get(url).status_code in (401, 403), url
    assert 'id="login-link"' in api.get(urls["get"][2], user=None, headers=HTML).text
    for url in urls["post"]:
        assert api.post(url, None).status_code == 401, url
        assert api.post(url, "ada").status_code == 403, url  # a viewer reads, and may not act
    other = world.other
    other_run = quote(f"scheduled__{_at(0).isoformat()}", safe="")
    for url in (f"/contactsync/exports/{other}", f"/contactsync/exports/{other}/runs/{other_run}"):
        assert api.get(url, "bob").status_code == 403, url  # not one of bob's DAGs
    for action in ("run", f"retry/{other_run}", f"ignore/{other_run}"):
        assert api.post(f"/contactsync/exports/{other}/{action}", "bob").status_code == 403, action
    assert api.get(f"/contactsync/exports/{other}", "admin").status_code == 200
    assert _dag_runs(world.dag_id) == before and not history.is_ignored(
        world.staging, world.dag_id, world.runs["delivered"]
    )


def test_actions_refuse_cross_site_requests(api: Api, world: World) -> None:
    run_id = world.runs["delivered"]
    url = f"/contactsync/exports/{world.dag_id}/ignore/{quote(run_id, safe='')}"
    refused = [
        {"origin": ""},  # no provenance at all
        {"origin": "https://evil.example"},
        {"origin": "http://testserver.evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "http://testserver"},  # a sibling subdomain
    ]
    for headers in refused:
        sent = {**SAME_ORIGIN, **headers}
        if not sent["origin"]:
            del sent["origin"]
        response = api.as_user("bob").post(url, headers=sent, follow_redirects=False)
        assert response.status_code == 403, headers
        assert "cross-site request refused" in response.json()["detail"]
    assert not history.is_ignored(world.staging, world.dag_id, run_id)
    page = api.as_user("bob").post(url, headers={"origin": "https://evil.example", **HTML})
    assert page.status_code == 403 and "cross-site request refused" in page.text

    # A browser's same-origin post, and a program with a token in the Authorization header (no cookie).
    assert api.post(url, "bob", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    unignore = url.replace("/ignore/", "/unignore/")
    program = api.as_user(None).post(unignore, headers={"authorization": f"Bearer {api.tokens['bob']}"})
    assert program.status_code == 200 and not history.is_ignored(world.staging, world.dag_id, run_id)


# --- in a real browser -------------------------------------------------------------------------------------------


def artefacts() -> Path:
    folder = Path(os.environ.get("CONTACTSYNC_ARTEFACTS", Path(__file__).resolve().parents[1] / "artefacts")) / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="module")
def served(app: Any) -> Iterator[str]:
    """The API server app on a local port (the socket listens before the server starts: no wait needed)."""
    import asyncio

    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listener])), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


@pytest.mark.slow
def test_in_a_browser_the_buttons_ignore_and_retry(api: Api, world: World, served: str, new_runs: list[str]) -> None:
    """Chromium's own form posts (its Origin and Sec-Fetch-Site) pass, the CSP lets the confirm script run.

    Screenshots go where test_plugin_browser's do (``CONTACTSYNC_ARTEFACTS``, default ``artefacts/ui``).
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-servers.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    run_id = world.runs["delivered"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": api.tokens["bob"], "url": served}])
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"{served}/contactsync/exports/{world.dag_id}")
            page.screenshot(path=str(artefacts() / "exports-1-history.png"), full_page=True)
            row = page.locator(f"tr[data-run-id='{run_id}']")
            with page.expect_navigation():
                row.locator("button.ignore").click()
            assert page.locator("#done").inner_text() == "Execution hidden from the history."
            assert page.locator(f"tr[data-run-id='{run_id}']").count() == 0
            page.click("#show-ignored")
            with page.expect_navigation():
                page.locator(f"tr[data-run-id='{run_id}'] button.unignore").click()
            assert not history.is_ignored(world.staging, world.dag_id, run_id)

            asked: list[str] = []

            def answer(dialog: Any) -> None:
                asked.append(dialog.message)
                dialog.accept()

            page.on("dialog", answer)  # the confirm script runs under the page's CSP
            with page.expect_navigation():
                page.locator(f"tr[data-run-id='{run_id}'] button.retry").click()
            assert asked == [f"Send the file unsub_20261120.csv of execution {run_id} again, exactly as it was?"]
            notice = page.locator("#done").inner_text()
            assert notice.startswith("Retry started: run manual__")
            new_runs.append(notice.removeprefix("Retry started: run ").removesuffix("."))
            assert _dag_runs(world.dag_id)[new_runs[-1]]["conf"] == {"retry_of": run_id}
            page.screenshot(path=str(artefacts() / "exports-2-retried.png"), full_page=True)
            page.goto(f"{served}/contactsync/exports/{world.dag_id}/runs/{quote(run_id, safe='')}")
            page.screenshot(path=str(artefacts() / "exports-3-execution.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()

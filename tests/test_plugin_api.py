"""The Contactsync page through Airflow's own API server app (``create_app``) on a real metadata DB.

Two sources run as real DAG runs into a sandbox: ``good`` (two imports, one row rejected each time,
its report in the DAG's own staging base) and ``broken`` (its mapping names an attribute the account
lacks: the run fails at map). Users come from SimpleAuthManager, narrowed per DAG by
:class:`DagScopedAuthManager` (SimpleAuthManager's roles apply to every DAG), and send the UI's JWT
cookie, as the browser does inside the UI's iframe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from servers.airflow_db import run_dag, task_states

from airflow_provider_contactsync.sandbox import BrevoSandbox
from airflow_provider_contactsync.sandbox.pytest_plugin import TEST_API_KEY
from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

HEADER = "id,email,first_name,updated_at"
ALLOWED_DAGS: dict[str, set[str]] = {}
"""username -> the only DAGs the user may see (users not named here: their role decides)."""


class DagScopedAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose users can be limited to some DAGs, like FAB's per-DAG permissions."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = ALLOWED_DAGS.get(user.get_name())
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


@dataclass
class World:
    root: Path
    good: str  # dag_ids
    broken: str
    good_runs: list[Any]
    broken_run: Any
    definition_file: Path


def _definition(folder: Path, integration: str, attribute: str) -> Path:
    (folder / "drop").mkdir(parents=True)
    path = folder / "customers.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            integration: {integration}
            source:
              name: customers
              type: file
              path: drop
              pattern: "*.csv"
              fields: [id, email, first_name, updated_at]
              updated_field: updated_at
              key: id
            schedule: daily
            mapping: {{email: EMAIL, id: EXT_ID, first_name: {attribute}}}
            destination: {{conn_id: brevo_plugin, list_ids: [2]}}
            alerts: {{max_error_rate: 0.6}}
            """
        )
    )
    return path


def _drop(definition: Path, name: str, *rows: str) -> None:
    (definition.parent / "drop" / name).write_text("\n".join([HEADER, *rows]) + "\n")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _build(definition: Path, staging: str | None) -> Any:
    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    return build_dag(load_definition(definition), file=str(definition), staging=staging, default_args={"retries": 0})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> Iterator[World]:
    from airflow.configuration import conf

    root = tmp_path_factory.mktemp("plugin")
    sandbox = BrevoSandbox(root / "brevo.sqlite3", TEST_API_KEY, **FAST_SETTINGS)
    sandbox.start()
    conn = {"conn_type": "brevo", "host": sandbox.url, "password": TEST_API_KEY, "extra": '{"poll_interval": 0.01}'}
    tag = uuid.uuid4().hex[:8]
    dags = Path(conf.get("core", "dags_folder")) / f"plugin{tag}"  # definitions inside the DAGs folder
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_BREVO_PLUGIN", json.dumps(conn))
            patch.setenv("AIRFLOW__CONTACTSYNC__STAGING", f"file://{root}/configured-staging")
            good = _definition(dags / "good", f"good{tag}", "FIRSTNAME")
            _drop(
                good, "a.csv", "1,ada@example.com,Ada,2026-11-20T08:00:00Z", "2,not-an-email,Bob,2026-11-20T08:01:00Z"
            )
            # A logical date per run: dag.test() replaces an earlier run of the same logical date (None too).
            first = run_dag(_build(good, f"file://{root}/own-staging"), logical_date=_now())
            _drop(good, "b.csv", "3,cy@example.com,Cy,2026-11-21T08:00:00Z", "4,x@y,Dee,2026-11-21T08:01:00Z")
            second = run_dag(_build(good, f"file://{root}/own-staging"), logical_date=_now())
            broken = _definition(dags / "broken", f"broken{tag}", "NO_SUCH_ATTRIBUTE")
            _drop(broken, "a.csv", "1,ada@example.com,Ada,2026-11-20T08:00:00Z")
            failed = run_dag(_build(broken, None), logical_date=_now())
            yield World(root, first.dag_id, failed.dag_id, [first, second], failed, good)
    finally:
        sandbox.stop()


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

    def post(self, url: str, user: str, **kwargs: Any) -> Any:
        return self.as_user(user).post(url, **kwargs)


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[Api]:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    users = {"admin": "admin", "ada": "viewer", "bob": "user"}
    ALLOWED_DAGS.update({"ada": {world.good}, "bob": {world.good}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.DagScopedAuthManager")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in users.items()))
        patch.setenv("AIRFLOW__CONTACTSYNC__STAGING", f"file://{world.root}/configured-staging")
        purge_cached_app()
        app = create_app()
        manager = app.state.auth_manager
        tokens = {
            name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role)) for name, role in users.items()
        }
        with TestClient(app) as client:
            yield Api(client, tokens)
        purge_cached_app()
    ALLOWED_DAGS.clear()


def _source(api: Api, dag_id: str, user: str = "admin") -> dict[str, Any]:
    response = api.get("/contactsync/api/sources", user)
    assert response.status_code == 200
    return {s["dag_id"]: s for s in response.json()}.get(dag_id, {})


def _report_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def test_the_plugin_comes_with_the_provider_and_adds_a_nav_entry(api: Api) -> None:
    from importlib.metadata import entry_points

    from airflow import plugins_manager
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_contactsync.plugins.plugin import ContactsyncPlugin

    declared = [p for p in ProvidersManager().plugins if p.provider_name == "airflow-provider-contactsync"]
    assert [(p.name, p.plugin_class) for p in declared] == [
        ("contactsync", "airflow_provider_contactsync.plugins.plugin.ContactsyncPlugin")
    ]
    assert ContactsyncPlugin in plugins_manager._load_providers_plugins()[0]
    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "contactsync"]
    assert entry.load() is ContactsyncPlugin  # loaded by Airflow whatever [core] lazy_discover_providers says
    response = api.get("/api/v2/plugins")
    (plugin,) = [p for p in response.json()["plugins"] if p["name"] == "contactsync"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/contactsync"
    (view,) = plugin["external_views"]
    assert (view["name"], view["destination"], view["href"], view["url_route"]) == (
        "Contactsync",
        "nav",
        "contactsync/",
        "contactsync",
    )
    assert api.get("/contactsync/static/icon.svg", user=None).status_code == 200


def test_overview_shows_each_source_with_its_last_import_counts_and_alerts(api: Api, world: World) -> None:
    good = _source(api, world.good)
    assert (good["source"], good["source_type"], good["integration"]) == (
        "customers",
        "file",
        world.good.split("__")[1],
    )
    assert good["last_run"]["state"] == "success" and good["last_run"]["run_id"] == world.good_runs[1].run_id
    counts = good["last_import"]["counts"]
    assert (counts["rows read"], counts["created"], counts["rejected"], counts["refused"]) == (2, 1, 1, 0)
    assert good["last_import"]["cursor"] == "2026-11-21T08:01:00+00:00 / key 4"
    assert good["alerts"] == [{"level": "info", "text": "paused"}]  # 50% not loaded: within its max_error_rate 0.6
    broken = _source(api, world.broken)
    assert broken["last_run"]["state"] == "failed" and broken["last_import"] is None
    assert {"level": "error", "text": "last run failed at map"} in broken["alerts"]

    page = api.get("/contactsync/", headers={"accept": "text/html"})
    assert page.status_code == 200
    html = page.text
    assert f'data-integration="{world.good.split("__")[1]}"' in html and f'data-dag-id="{world.broken}"' in html
    row = html[html.index(f'<tr data-dag-id="{world.good}"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="num" data-count="created">1</td>' in row
    assert '<td class="num" data-count="rejected">1</td>' in row
    assert f'href="/contactsync/sources/{world.good}"' in row and f'href="/dags/{world.good}"' in row


def test_a_source_page_shows_runs_chart_reports_definition_and_trigger_buttons(api: Api, world: World) -> None:
    response = api.get(f"/contactsync/sources/{world.good}", "bob")
    assert response.status_code == 200
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]  # framed by Airflow's UI only
    html = response.text
    first, second = world.good_runs
    assert html.index(f'<tr data-run-id="{second.run_id}"') < html.index(f'<tr data-run-id="{first.run_id}"')
    assert 'id="chart-counts"' in html and 'class="bar series-created"' in html and 'id="chart-reject-rate"' in html
    download = f'href="/contactsync/reports/{world.good}/{quote(first.run_id, safe="")}"'
    assert download in html and 'class="report-download"' in html
    assert 'id="personal-data-notice"' in html and "Error reports hold personal data" in html
    assert "NO_SUCH_ATTRIBUTE" not in html and "mapping: {email: EMAIL, id: EXT_ID, first_name: FIRSTNAME}" in html
    assert f"<h4>contactsync: {world.good.split('__')[1]} / customers</h4>" in html  # the DAG's doc_md, rendered
    assert '<section class="panel" data-panel="files">' in html and "<td>b.csv</td>" in html
    assert f'data-trigger-url="/api/v2/dags/{world.good}/dagRuns"' in html
    assert '<button type="button" id="sync-now" class="trigger" data-conf="{}" >' in html  # bob may trigger
    assert "data-conf='{\"full_refresh\": true}'" in html
    assert 'id="paused-note"' in html  # Airflow creates DAGs paused: a run started here would wait

    viewer = api.get(f"/contactsync/sources/{world.good}", "ada").text  # a viewer sees the buttons disabled
    assert 'id="sync-now" class="trigger" data-conf="{}" disabled' in viewer

    detail = api.get(f"/contactsync/api/sources/{world.good}").json()
    assert [run["run_id"] for run in detail["runs"]] == [second.run_id, first.run_id]
    assert [run["counts"]["created"] for run in detail["runs"]] == [1, 1]


def test_the_error_report_downloads_as_csv(api: Api, world: World) -> None:
    first, second = world.good_runs
    response = api.get(f"/contactsync/reports/{world.good}/{quote(second.run_id, safe='')}", "ada")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    rows = _report_rows(response.text)
    assert [(r["row"], r["outcome"], r["field"], r["value"]) for r in rows] == [("4", "rejected", "email", "x@y")]
    assert rows[0]["file"] == "b.csv" and rows[0]["reason"].startswith("not a valid email address")
    older = api.get(f"/contactsync/reports/{world.good}/{quote(first.run_id, safe='')}", "ada")
    assert [r["value"] for r in _report_rows(older.text)] == ["not-an-email"]


def test_users_see_and_download_only_what_their_dag_permissions_allow(api: Api, world: World) -> None:
    assert _source(api, world.good, "ada") and not _source(api, world.broken, "ada")
    assert world.broken not in api.get("/contactsync/", "ada").text
    assert api.get(f"/contactsync/sources/{world.broken}", "ada").status_code == 403
    assert api.get(f"/contactsync/api/sources/{world.broken}", "ada").status_code == 403
    run_id = quote(world.broken_run.run_id, safe="")
    assert api.get(f"/contactsync/reports/{world.broken}/{run_id}", "ada").status_code == 403
    assert api.get(f"/contactsync/sources/{world.broken}").status_code == 200  # admin


@pytest.mark.parametrize(
    "url",
    ["/contactsync/", "/contactsync/api/sources", "/contactsync/sources/{good}", "/contactsync/reports/{good}/{run}"],
)
def test_unauthenticated_requests_are_refused(api: Api, world: World, url: str) -> None:
    url = url.format(good=world.good, run=quote(world.good_runs[0].run_id, safe=""))
    assert api.get(url, user=None).status_code == 401
    page = api.get(url, user=None, headers={"accept": "text/html"})
    assert page.status_code == 401 and 'id="login-link"' in page.text
    forged = api.as_user(None, token="not.a.jwt").get(url)
    assert forged.status_code in (401, 403)


def test_a_report_is_read_only_from_the_runs_xcom_and_only_inside_the_staging_store(api: Api, world: World) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = world.good_runs[0]
    url = f"/contactsync/reports/{world.good}/{quote(run.run_id, safe='')}"
    for path in ("..%2F..%2F..%2Fetc%2Fpasswd", quote(f"{run.run_id}/../../../etc/passwd", safe="")):
        assert api.get(f"/contactsync/reports/{world.good}/{path}").status_code == 404  # no such run

    reports = world.root / "own-staging" / world.good / "reports"
    (reports / "evil.csv").symlink_to("/etc/hosts")
    (world.root / "own-staging" / world.broken / "reports").mkdir(parents=True)
    (world.root / "own-staging" / world.broken / "reports" / "other.csv").write_text("row\n")
    hostile = [
        "file:///etc/passwd",
        f"file://{reports}/../../../../etc/passwd.csv",
        f"file://{reports}/evil.csv",
        f"file://{world.root}/own-staging/{world.broken}/reports/other.csv",
        f"file://{world.root}/elsewhere/{world.good}/reports/x.csv",
        f"s3://bucket/{world.good}/reports/x.csv",
    ]
    with create_session() as session:
        row = session.query(XComModel).filter_by(run_id=run.run_id, task_id="map", key="error_report").one()
        kept = row.value
    try:
        for stored in hostile:
            with create_session() as session:
                session.query(XComModel).filter_by(run_id=run.run_id, task_id="map", key="error_report").update(
                    {"value": json.dumps(stored)}
                )
            response = api.get(url)
            assert response.status_code == 403, stored
            assert "error report refused" in response.json()["detail"]
    finally:
        with create_session() as session:
            session.query(XComModel).filter_by(run_id=run.run_id, task_id="map", key="error_report").update(
                {"value": kept}
            )
    assert api.get(url).status_code == 200


def test_sync_now_and_full_refresh_trigger_through_airflows_api_as_the_user(api: Api, world: World) -> None:
    """What the page's buttons do: POST the data-trigger-url with the user's own cookie."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    page = api.get(f"/contactsync/sources/{world.good}", "bob").text
    trigger_url = page.split('data-trigger-url="', 1)[1].split('"', 1)[0]
    created: list[str] = []
    try:
        for conf in ({}, {"full_refresh": True}):
            response = api.post(trigger_url, "bob", json={"logical_date": None, "conf": conf})
            assert response.status_code == 200, response.text
            created.append(response.json()["dag_run_id"])
            assert response.json()["conf"] == conf
        forbidden = api.post(f"/api/v2/dags/{world.broken}/dagRuns", "bob", json={"logical_date": None})
        assert forbidden.status_code == 403
        viewer = api.post(trigger_url, "ada", json={"logical_date": None})
        assert viewer.status_code == 403
        kinds = {r["run_id"]: r["kind"] for r in api.get(f"/contactsync/api/sources/{world.good}").json()["runs"]}
        assert [kinds[run_id] for run_id in created] == ["sync", "full refresh"]
    finally:
        with create_session() as session:
            session.query(DagRun).filter(DagRun.dag_id == world.good, DagRun.run_id.in_(created)).delete()


def test_the_tasks_error_report_link_is_the_http_download(api: Api, world: World) -> None:
    from servers.airflow_db import xcom_value

    first = world.good_runs[0]
    link = xcom_value(first, "map", "_link_ErrorReportLink")  # computed on the worker at task end
    assert link == f"/contactsync/reports/{world.good}/{quote(first.run_id, safe='')}"
    response = api.get(link, "ada")
    assert response.status_code == 200 and [r["value"] for r in _report_rows(response.text)] == ["not-an-email"]
    assert xcom_value(world.broken_run, "map", "_link_ErrorReportLink") == ""  # failed before writing a report


def test_runs_of_the_world_ended_as_built(world: World) -> None:
    assert [task_states(run)["load"] for run in world.good_runs] == ["success", "success"]
    assert task_states(world.broken_run)["map"] == "failed"

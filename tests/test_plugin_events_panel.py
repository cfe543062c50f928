"""The events source's panels on the Contactsync page (issue 14): its queue live, its runs' events.

The panels read a real Redis queue (``servers.redis``) holding dead letters, and run summaries as the
events load leaves them. The page test goes through Airflow's own API server app (``create_app``, the
auth manager included), with two events sources written into the metadata DB as the dag-processor
and finished runs would: one whose queue answers, one whose queue is down.
"""

from __future__ import annotations

import datetime as dt
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers.processes import free_port
from servers.redis import RedisServer

from airflow_provider_contactsync.plugins import events_panel, panels
from airflow_provider_contactsync.plugins.data import Run, Source, SourceDetail
from airflow_provider_contactsync.sources.events.backends import open_event_queue
from airflow_provider_contactsync.sources.events.queue import QueuedEvent

REDIS_CONN = "contactsync_test_redis"  # the redis_conn_id fixture's connection
DOWN_CONN = "events_panel_down"
RECEIVED = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
SECRET_EMAIL = "c{n}@personal-mail.example"


def _definition(folder: Path, integration: str, conn_id: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customers.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            integration: {integration}
            source:
              name: customers
              type: events
              platform: shopify
              queue: {{backend: redis, conn_id: {conn_id}}}
            schedule: hourly
            destination: {{conn_id: brevo_default, list_ids: [2]}}
            """
        )
    )
    return path


def _dags_folder() -> Path:
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")) / f"eventspanel{uuid.uuid4().hex[:8]}"


def _summary(
    *, claimed: int, applied: int, duplicate: int = 0, stale: int = 0, unreadable: int = 0, dead: int = 0, **extra: Any
) -> dict[str, Any]:
    events = {
        "claimed": claimed,
        "applied": applied,
        "duplicate": duplicate,
        "stale": stale,
        "unreadable": unreadable,
        "dead-lettered": dead,
        "ignored": claimed - applied - duplicate - stale - unreadable - dead,
        "customers": applied,
    }
    return {
        "rows read": applied,
        "rejected": 0,
        "created": applied,
        "updated": 0,
        "refused": 0,
        "events": events,
        **extra,
    }


BUSY = _summary(
    claimed=10,
    applied=6,
    duplicate=2,
    stale=1,
    dead=1,
    **{
        "rejected": 1,
        "refused": 1,
        "event latency p50 s": 0.42,
        "event latency p95 s": 3.5,
        "events waiting": 4,
    },
)
"""success 6 / (10 - 2 duplicate - 1 stale) = 85.7%; errors (1 dead-lettered + 1 rejected + 1 refused) / 10."""
REDELIVERED = _summary(claimed=3, applied=0, duplicate=3, **{"events waiting": 0})
"""Nothing to apply: no success rate, no error, no latency."""


def _detail(runs: list[Run], definition: Path | None = None, integration: str = "shop") -> SourceDetail:
    dag_id = f"contactsync__{integration}__customers"
    source = Source(dag_id, integration, "customers", "events", "hourly", False, False, False, None, None)
    source.last_run = runs[0] if runs else None
    source.last_import = next((run for run in runs if run.summary), None)
    return SourceDetail(source, runs, None, str(definition) if definition else None, None)


def _run(pk: int, summary: dict[str, Any] | None, state: str = "success") -> Run:
    ended = RECEIVED + dt.timedelta(hours=pk)
    return Run(pk, f"scheduled__{ended:%Y%m%dT%H}", state, "scheduled", ended, ended, ended, {}, summary)


def _event(n: int) -> QueuedEvent:
    body = b'{"id": %d, "email": "%s", "first_name": "Secret%d"}' % (n, SECRET_EMAIL.format(n=n).encode(), n)
    return QueuedEvent(
        delivery_id=f"delivery-{n}",
        platform="shopify",
        topic="customers/update",
        body=body,
        received_at=RECEIVED + dt.timedelta(seconds=n),
        headers={"X-Shopify-Webhook-Id": f"delivery-{n}"},
    )


def _fill_queue(conn_id: str, integration: str) -> None:
    """Five deliveries; three claimed by a run that died, claimed again, two of them dead-lettered: 3 waiting."""
    queue = open_event_queue("redis", conn_id, integration=integration, source="customers")
    try:
        for n in range(1, 6):
            assert queue.put(_event(n))
        queue.claim("run-1", max_events=3, stale_after_seconds=3600)  # never acked: the run died
        first, second, _third = queue.claim("run-2", max_events=3, stale_after_seconds=0)
        assert (first.attempts, second.attempts) == (1, 1)
        queue.dead_letter(first, "the body is not JSON: Expecting value at line 1, column 1")
        queue.dead_letter(second, f"refused by Brevo: EMAIL {SECRET_EMAIL.format(n=2)} is not valid (jane.doe@exa...")
        assert queue.depth() == 3
    finally:
        queue.close()


# --- the panels, from run summaries and a real queue -------------------------------------------------------


def test_each_run_shows_its_events_success_and_error_rates_and_latency() -> None:
    runs = [
        _run(4, BUSY),
        _run(3, {"rows read": 5, "created": 5}),  # a summary without events: not an events run
        _run(2, None, state="failed"),
        _run(1, REDELIVERED),
    ]
    panel = events_panel.events_runs(_detail(runs))
    assert panel.title == "Events of the last runs" and not panel.error
    assert panel.columns[:4] == ("run", "ended", "claimed", "applied")
    busy, redelivered = panel.rows
    assert busy == (
        runs[0].run_id,
        "2026-03-01 16:00:00 UTC",
        10,
        6,
        2,
        1,
        0,
        0,
        1,
        "85.7%",
        "30.0%",
        "420 ms",
        "3.5 s",
        "4",
    )
    assert redelivered[2:] == (3, 0, 3, 0, 0, 0, 0, "–", "0.0%", "–", "–", "0")
    assert "Success rate: events applied per event that had something to apply" in panel.note
    assert "minus duplicate and stale redeliveries and ignored events" in panel.note
    assert "Error rate: unreadable and dead-lettered events plus the run's rows not loaded" in panel.note


def test_the_rates_are_defined_on_the_summary_counts() -> None:
    counts = events_panel.run_events(BUSY)
    assert counts is not None and counts["ignored"] == 0 and counts["customers"] == 6
    assert events_panel.success_rate(counts) == pytest.approx(6 / 7)
    assert events_panel.error_rate(counts, rows_not_loaded=2) == pytest.approx(3 / 10)
    assert events_panel.run_events({"rows read": 3}) is None and events_panel.run_events(None) is None
    odd = events_panel.run_events({"events": {"claimed": "7", "applied": True}})
    assert odd is not None and (odd["claimed"], odd["applied"]) == (0, 0)
    assert events_panel.success_rate(odd) is None and events_panel.error_rate(odd, 0) is None


def test_without_events_runs_the_panel_says_so() -> None:
    panel = events_panel.events_runs(_detail([_run(1, None, state="running")]))
    assert panel.rows == () and panel.note == "No run has claimed events yet."


def test_the_queue_panel_shows_the_depth_and_dead_letters_without_bodies(redis_conn_id: str) -> None:
    assert redis_conn_id == REDIS_CONN
    _fill_queue(redis_conn_id, "shop")
    detail = _detail([_run(1, BUSY)], _definition(_dags_folder() / "shop", "shop", redis_conn_id))
    panel = events_panel.events_queue(detail)
    assert not panel.error, panel.note
    assert panel.note.startswith(f"3 events waiting now (redis queue through connection {REDIS_CONN}).")
    assert "Bodies are not shown: they hold personal data." in panel.note
    assert panel.columns == ("received", "delivery id", "topic", "attempts", "reason")
    assert list(panel.rows) == [  # newest first; attempts: the runs that claimed each before
        (
            "2026-03-01 12:00:02 UTC",
            "delivery-2",
            "customers/update",
            1,
            "refused by Brevo: EMAIL c***@personal-mail.example is not valid (j***@exa...",
        ),
        (
            "2026-03-01 12:00:01 UTC",
            "delivery-1",
            "customers/update",
            1,
            "the body is not JSON: Expecting value at line 1, column 1",
        ),
    ]
    shown = repr(panel)
    assert not any(SECRET_EMAIL.format(n=n) in shown for n in range(1, 6))
    assert "Secret" not in shown and "jane.doe" not in shown


def test_the_events_panels_come_with_the_source_type(redis_conn_id: str) -> None:
    detail = _detail([_run(1, BUSY)], _definition(_dags_folder() / "shop", "shop", redis_conn_id))
    shown = panels.panels_for(detail)
    assert [panel.key for panel in shown] == ["events_queue", "events_runs"]
    assert shown[0].note.startswith("0 events waiting now") and shown[0].note.endswith("No dead letters.")
    assert panels.BUILTIN["events"] == ("airflow_provider_contactsync.plugins.events_panel",)


def test_without_a_readable_definition_the_queue_panel_says_why(tmp_path: Path) -> None:
    panel = events_panel.events_queue(_detail([]))
    assert not panel.error and "does not name its definition file" in panel.note
    outside = _definition(tmp_path, "shop", REDIS_CONN)  # the page reads definitions in the DAGs folder only
    panel = events_panel.events_queue(_detail([], outside))
    assert not panel.error and "outside the DAGs folder" in panel.note
    broken = _dags_folder() / "broken" / "customers.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("integration: shop\nsource: {name: customers, type: events}\n")
    panel = events_panel.events_queue(_detail([], broken))
    assert panel.note.startswith("The queue is not shown: the definition file cannot be read: DefinitionErrors")


# --- a queue that cannot be reached ------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def _down_connection(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    down = RedisServer("127.0.0.1", port, "secret", Path("/nonexistent"))
    monkeypatch.setenv(f"AIRFLOW_CONN_{DOWN_CONN.upper()}", down.airflow_connection())


@pytest.mark.parametrize("answers", [False, True], ids=["refused", "silent"])
def test_a_queue_that_cannot_be_reached_is_said_in_the_panel_quickly(
    monkeypatch: pytest.MonkeyPatch, silent_server: int, answers: bool
) -> None:
    _down_connection(monkeypatch, silent_server if answers else free_port())
    monkeypatch.setattr(events_panel, "QUEUE_TIMEOUT_SECONDS", 0.5)
    detail = _detail([_run(1, BUSY)], _definition(_dags_folder() / "down", "down", DOWN_CONN))
    queue_panel, runs_panel = panels.panels_for(detail)  # bounded by QUEUE_TIMEOUT_SECONDS, not redis-py's retries
    assert queue_panel.error and queue_panel.key == "events_queue" and not queue_panel.rows
    assert queue_panel.note.startswith(f"The queue cannot be reached (redis queue through connection {DOWN_CONN}): "), (
        queue_panel.note
    )
    assert "secret" not in queue_panel.note
    assert not runs_panel.error and len(runs_panel.rows) == 1  # the runs' events still show


def test_a_queue_read_that_hangs_is_abandoned_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the backend (PostgreSQL's connect has no timeout unless its connection sets one)."""
    from airflow_provider_contactsync.sources.events import backends

    release = threading.Event()

    class Hanging:
        def depth(self) -> int:
            release.wait(30)
            return 0

    monkeypatch.setattr(backends, "open_event_queue", lambda *args, **kwargs: Hanging())
    settings = type("Settings", (), {"backend": "postgres", "conn_id": "pg", "table": None})()
    try:  # abandoned (the hanging read is still blocked until released below)
        with pytest.raises(events_panel.QueueUnreachable, match=r"no answer within 0.3 s"):
            events_panel.read_queue(settings, "shop", "customers", timeout=0.3)
        assert not release.is_set()
    finally:
        release.set()


# --- through the API server app -----------------------------------------------------------------------------


@dataclass
class World:
    live: str  # dag_ids
    down: str
    live_integration: str
    runs: list[str]  # the live source's run ids, oldest first


def _write_runs(dag_id: str, summaries: list[dict[str, Any] | None]) -> list[str]:
    """Finished DagRuns with the load task's summary in XCom (None: the run failed before it), as the events load
    would leave them."""
    from airflow.models.dag_version import DagVersion
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert

    run_ids = []
    with create_session() as session:
        version = session.query(DagVersion).filter_by(dag_id=dag_id).one().id
        for index, summary in enumerate(summaries):
            began = RECEIVED + dt.timedelta(hours=index)
            run = DagRun(
                dag_id=dag_id,
                run_id=f"scheduled__{began.isoformat()}",
                run_type="scheduled",
                logical_date=began,
                run_after=began,
                start_date=began,
                state="success" if summary is not None else "failed",
                conf={},
            )
            session.add(run)
            session.flush()
            run.end_date = began + dt.timedelta(seconds=30)
            run_ids.append(run.run_id)
            load = {"dag_id": dag_id, "run_id": run.run_id, "task_id": "load", "map_index": -1}
            session.execute(
                insert(TaskInstance.__table__),
                [
                    {
                        **load,
                        "state": "success" if summary is not None else "upstream_failed",
                        "pool": "default_pool",
                        "try_number": 1,
                        "dag_version_id": version,
                    }
                ],
            )
            if summary is None:
                continue
            session.execute(
                insert(XComModel.__table__),
                [
                    {
                        **load,
                        "dag_run_id": run.id,
                        "key": "return_value",
                        "value": XComModel.serialize_value(summary),
                        "timestamp": run.end_date,
                    }
                ],
            )
    return run_ids


@pytest.fixture(scope="module")
def world(airflow_db: str) -> World:
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    folder = _dags_folder()
    tag = folder.name.removeprefix("eventspanel")
    live = _definition(folder / "live", f"shop{tag}", REDIS_CONN)
    down = _definition(folder / "down", f"down{tag}", DOWN_CONN)
    bag = DagBag(collect_dags=False)
    dags = [build_dag(load_definition(path), file=str(path), register=False) for path in (live, down)]
    for dag in dags:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    live_runs = _write_runs(dags[0].dag_id, [REDELIVERED, None, BUSY])
    _write_runs(dags[1].dag_id, [BUSY])
    return World(dags[0].dag_id, dags[1].dag_id, f"shop{tag}", live_runs)


@dataclass
class Api:
    client: Any
    token: str

    def get(self, url: str, *, signed_in: bool = True) -> Any:
        """As the viewer, with the UI's JWT cookie (as inside its iframe), or with no cookie."""
        self.client.cookies.clear()
        if signed_in:
            self.client.cookies.set("_token", self.token)
        return self.client.get(url)


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[Api]:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "ada:viewer")
        purge_cached_app()
        app = create_app()
        token = app.state.auth_manager.generate_jwt(SimpleAuthManagerUser(username="ada", role="viewer"))
        with TestClient(app) as client:
            yield Api(client, token)
        purge_cached_app()


def _section(html: str, key: str) -> str:
    start = html.index(f'data-panel="{key}"')
    return html[start : html.index("</section>", start)]


def test_the_source_page_shows_the_events_panels(api: Api, world: World, redis_conn_id: str) -> None:
    _fill_queue(redis_conn_id, world.live_integration)
    response = api.get(f"/contactsync/sources/{world.live}")
    assert response.status_code == 200, response.text
    html = response.text
    assert '<section class="panel" data-panel="events_queue">' in html
    queue = _section(html, "events_queue")
    assert f"3 events waiting now (redis queue through connection {REDIS_CONN})." in queue
    assert "<td>delivery-2</td><td>customers/update</td><td>1</td>" in queue
    assert "<td>the body is not JSON: Expecting value at line 1, column 1</td>" in queue
    assert "c***@personal-mail.example" in queue
    for n in range(1, 6):  # no body, no email of a customer, anywhere on the page
        assert SECRET_EMAIL.format(n=n) not in html and f"Secret{n}" not in html

    runs = _section(html, "events_runs")
    busy, redelivered = world.runs[2], world.runs[0]
    assert runs.index(f"<td>{busy}</td>") < runs.index(f"<td>{redelivered}</td>")  # newest first
    assert "<td>85.7%</td><td>30.0%</td><td>420 ms</td><td>3.5 s</td><td>4</td>" in runs
    assert "Success rate: events applied per event that had something to apply" in runs
    assert world.runs[1] not in runs  # the failed run left no summary

    detail = api.get(f"/contactsync/api/sources/{world.live}").json()
    by_key = {panel["key"]: panel for panel in detail["panels"]}
    assert [row[1] for row in by_key["events_queue"]["rows"]] == ["delivery-2", "delivery-1"]
    assert [row[0] for row in by_key["events_runs"]["rows"]] == [busy, redelivered]
    assert api.get(f"/contactsync/sources/{world.live}", signed_in=False).status_code == 401  # behind the auth manager


def test_a_queue_down_does_not_break_the_source_page(api: Api, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _down_connection(monkeypatch, free_port())
    response = api.get(f"/contactsync/sources/{world.down}")
    assert response.status_code == 200, response.text
    html = response.text
    assert '<section class="panel panel-error" data-panel="events_queue">' in html
    assert f"The queue cannot be reached (redis queue through connection {DOWN_CONN}): " in html
    assert "<td>85.7%</td><td>30.0%</td>" in _section(html, "events_runs")
    assert 'id="runs"' in html and 'id="definition-yaml"' in html  # the rest of the page is there

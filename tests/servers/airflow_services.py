"""Real Airflow processes on 127.0.0.1 for a test: dag-processor, scheduler (LocalExecutor), triggerer, api-server.

(With ``executor="CeleryExecutor"``, servers.airflow_celery adds the broker and the workers.)

What users run, not an in-process imitation: a fresh ``AIRFLOW_HOME`` in a temp folder, a metadata
database of its own on the test PostgreSQL server (``servers.postgres``), ``airflow db migrate``,
then the three long-running processes, each started with ``subprocess`` in its own process group
and stopped by its PID (the group it leads is cleaned up after it). The REST API (``/api/v2``) is
called with a JWT obtained the real way: ``POST /auth/token`` with a SimpleAuthManager user whose
password the harness wrote into the passwords file before the api-server started.

:func:`start_airflow` works outside pytest; the ``airflow_services_factory`` fixture (module
scope: starting the stack takes tens of seconds, so a module shares one) wraps it::

    services = airflow_services_factory(dags_folder, connections={"crm_pg": {...}})
    services.wait_for(lambda: "my_dag" in services.dag_ids(), timeout=120)
    run_id = services.trigger("my_dag")
    assert services.wait_for_run("my_dag", run_id) == "success"

The child processes get only the environment given here (inherited ``AIRFLOW*`` variables, such
as the per-process home tests/conftest.py sets for in-process tests, are dropped): the home, the
DAGs folder, the database URL, the executor, short parsing intervals so changes show within
seconds, and connections as ``AIRFLOW_CONN_<ID>`` variables (JSON form).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from polling import wait_for

from servers.postgres import PostgresServer
from servers.processes import free_port, log_tail

ADMIN = "admin"
MIGRATE_TIMEOUT = 180.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0

# Short intervals so a changed definition shows up in seconds (defaults: 30 s, 300 s, 50 s, 60 s).
FAST_PARSING = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "5",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
}


@dataclass
class AirflowServices:
    """A running Airflow: its home, environment, processes, and a REST API client."""

    home: Path
    dags_folder: Path
    env: dict[str, str]
    api_url: str
    password: str
    db_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _token: str | None = field(default=None, repr=False)

    # --- processes -----------------------------------------------------------------------------

    def log_file(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def airflow(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command with this Airflow's environment."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def start(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``airflow <args>`` in the background, its output in ``<home>/<name>.log``.

        :param env: the process's whole environment (default: this Airflow's).
        :param cwd: its working directory (default: the home).
        :param wrapper: a command that execs the rest (``unshare ...``), so the PID stays Airflow's.
        """
        with open(self.log_file(name), "ab") as log:
            process = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "airflow", *args],
                env=self.env if env is None else env,
                cwd=self.home if cwd is None else cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: its workers are stopped with it
            )
        self.processes[name] = process
        return process

    def check_running(self) -> None:
        """Fail with the process's log if one of the processes has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {process.returncode}:\n{log_tail(self.log_file(name), 60)}"
                )

    def stop(self) -> None:
        """Stop every process by its PID (SIGTERM to all at once, then SIGKILL), then what is left of its group."""
        processes = [self.processes.pop(name) for name in reversed(list(self.processes))]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
            try:  # a worker the process forked and did not reap; the group id is the PID we started
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_one(self, name: str) -> None:
        """Stop one process by its PID (SIGTERM, then SIGKILL), then what is left of its group."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def parse_log(self, dag_file: str) -> str:
        """What the dag-processor logged while parsing ``dag_file`` (relative to the DAGs folder)."""
        logs = sorted((self.home / "logs" / "dag_processor").glob(f"*/*/{dag_file}.log"))
        return "\n".join(path.read_text(errors="replace") for path in logs)

    def logs(self, lines: int = 40) -> str:
        """The end of every process's log, for assertion messages."""
        return "\n".join(f"--- {name} ---\n{log_tail(self.log_file(name), lines)}" for name in self.processes)

    def wait_for(self, condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
        """``polling.wait_for`` that fails at once (with the logs) if a process died."""

        def checked() -> Any:
            self.check_running()
            return condition()

        try:
            return wait_for(checked, timeout=timeout, interval=interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    # --- REST API --------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (SimpleAuthManager), cached."""
        if self._token is None:
            answer = httpx.post(
                f"{self.api_url}/auth/token", json={"username": ADMIN, "password": self.password}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; return the JSON body; fail on an unexpected status."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        answer = httpx.request(method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=30, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        if answer.status_code not in expected:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def dags(self) -> dict[str, dict[str, Any]]:
        """Every DAG the API knows, stale ones included, by id."""
        body = self.api("GET", "/dags", params={"exclude_stale": "false", "limit": 1000})
        return {dag["dag_id"]: dag for dag in body["dags"]}

    def dag_ids(self) -> set[str]:
        """The active DAGs (what the UI lists by default)."""
        body = self.api("GET", "/dags", params={"limit": 1000})
        return {dag["dag_id"] for dag in body["dags"]}

    def import_errors(self) -> dict[str, str]:
        """File (relative to the DAGs folder) -> its import error's text."""
        body = self.api("GET", "/importErrors", params={"limit": 1000})
        return {error["filename"]: error["stack_trace"] for error in body["import_errors"]}

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run through ``POST /dags/{dag_id}/dagRuns``; return its run id."""
        body = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return str(body["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120.0) -> str:
        """Wait until the run is finished (success or failed); return its state."""
        return self.wait_for(
            lambda: (state := self.run_state(dag_id, run_id)) in ("success", "failed") and state, timeout=timeout
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """An XCom value as the task pushed it (the API's native form: the stored JSON)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        value = self.api("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.api("GET", path, params={"full_content": "true"}, headers={"Accept": "application/json"})
        content = body.get("content")
        return json.dumps(content) if not isinstance(content, str) else content

    # --- metadata database ---------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the metadata database (psycopg; ``%s`` placeholders)."""
        import psycopg

        with psycopg.connect(self.db_url.replace("postgresql+psycopg2://", "postgresql://"), autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())


def start_airflow(
    dags_folder: Path,
    db_url: str,
    *,
    connections: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    processes: tuple[str, ...] = ("dag-processor", "scheduler", "triggerer", "api-server"),
    home: Path | None = None,
    executor: str = "LocalExecutor",
) -> AirflowServices:
    """Migrate ``db_url`` and start Airflow's processes over ``dags_folder``; return once the API answers.

    :param db_url: an empty database (SQLAlchemy URL, ``postgresql+psycopg2://...``).
    :param connections: connection id -> its JSON form, passed as ``AIRFLOW_CONN_<ID>``.
    :param env: more environment variables (``AIRFLOW__SECTION__KEY`` settings) for every process.
    :param processes: which long-running processes to start.
    :param home: the AIRFLOW_HOME to use (default: a new temp folder).
    :param executor: ``[core] executor``; ``CeleryExecutor`` needs workers (``servers.airflow_celery``).
    """
    home = home or Path(tempfile.mkdtemp(prefix="contactsync-airflow-services-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({ADMIN: password}))
    from cryptography.fernet import Fernet

    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    child_env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            # the scheduler serves task logs on a fixed port by default; two stacks must not collide
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            **FAST_PARSING,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    for conn_id, conn in (connections or {}).items():
        child_env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    child_env.update(env or {})

    services = AirflowServices(home, dags_folder, child_env, api_url, password, db_url)
    services.airflow("db", "migrate", timeout=MIGRATE_TIMEOUT)
    try:
        for name in processes:
            args = [name, "--port", str(port), "--host", "127.0.0.1"] if name == "api-server" else [name]
            services.start(name, *args)
        if "api-server" in processes:
            services.wait_for(lambda: _answers(f"{api_url}/api/v2/monitor/health"), timeout=START_TIMEOUT)
    except BaseException:
        services.stop()
        raise
    return services


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def airflow_services_factory(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., AirflowServices]]:
    """Start Airflow stacks on fresh metadata databases: ``factory(dags_folder, connections=..., env=...)``.

    Everything started is stopped, and its database dropped, when the module's tests are done.
    """
    started: list[tuple[AirflowServices, str]] = []

    def make(dags_folder: Path, **kwargs: Any) -> AirflowServices:
        dbname = postgres_server.create_database()
        url = postgres_server.conn_uri(dbname).replace("postgresql://", "postgresql+psycopg2://", 1)
        try:
            kwargs.setdefault("home", tmp_path_factory.mktemp("airflow-home"))
            services = start_airflow(dags_folder, url, **kwargs)
        except BaseException:
            postgres_server.drop_database(dbname)
            raise
        started.append((services, dbname))
        return services

    yield make
    for services, dbname in reversed(started):
        services.stop()
        postgres_server.drop_database(dbname)

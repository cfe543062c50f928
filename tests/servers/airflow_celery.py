"""Airflow with the CeleryExecutor on 127.0.0.1, and Celery workers that share nothing on disk.

The control plane is servers.airflow_services' (dag-processor, scheduler, triggerer, api-server on a
PostgreSQL metadata database) with ``[core] executor = CeleryExecutor``. This module adds what Celery
needs: a Redis server of its own as the broker (servers.redis), the metadata database as the result
backend (``db+postgresql+psycopg2://``), and the workers (``airflow celery worker``).

Each worker stands for another machine:

- its own folder, its ``HOME``, holding its ``AIRFLOW_HOME`` (task logs, pid file), its copy of the
  DAGs folder (``[core] dags_folder``: the DAG files and definitions, deployed to every machine as
  users do) and its ``TMPDIR``;
- its own name: ``[core] hostname_callable`` is servers.worker_hostname.hostname, which reads
  ``CONTACTSYNC_TEST_HOSTNAME``, so ``TaskInstance.hostname`` says which worker ran a task;
- where Linux allows it (root and mount namespaces, :func:`can_hide_folders`), a mount namespace of
  its own in which the other workers' folders, the control plane's home and DAGs folder, and the
  ``hidden`` folders given (pytest's temp root, say) are covered by an empty read-only tmpfs: a task
  that reached for a path of another machine would find nothing there, as in a real deployment.

Every process is started and stopped by its PID (AirflowServices' process table, one entry per
worker, under the worker's name); a worker's output is in ``<control home>/<name>.log``.

:func:`start_celery_airflow` works outside pytest (the Celery benchmark uses it)::

    airflow = start_celery_airflow(dags_folder, db_url, connections={...}, env={...})
    run_id = airflow.services.trigger(dag_id)
    airflow.services.wait_for_run(dag_id, run_id)
    airflow.hostnames(dag_id, run_id)  # task id -> the worker that ran it
    airflow.stop()
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.airflow_services import AirflowServices, start_airflow
from servers.redis import RedisServer
from servers.redis import start_server as start_redis
from servers.worker_hostname import CALLABLE as HOSTNAME_CALLABLE
from servers.worker_hostname import ENV as HOSTNAME_ENV

WORKER_NAMES = ("celery-a", "celery-b")
READY_TIMEOUT = 120.0
TESTS_DIR = Path(__file__).resolve().parents[1]  # holds servers/, for hostname_callable
CONTROL_ONLY = ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",)  # a file in the control plane's home


@dataclass
class CeleryWorker:
    """One worker's folders: ``root`` is its HOME; its AIRFLOW_HOME, DAGs folder copy and TMPDIR are inside."""

    name: str
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def node(self) -> str:
        """The Celery node name (``--celery-hostname <name>``)."""
        return f"celery@{self.name}"

    def task_logs(self, dag_id: str, run_id: str | None = None) -> list[Path]:
        """The task log files this worker wrote for a DAG (one run's, or every run's)."""
        runs = f"run_id={run_id}" if run_id is not None else "run_id=*"
        return sorted((self.home / "logs" / f"dag_id={dag_id}").glob(f"{runs}/task_id=*/**/*.log"))


@dataclass
class CeleryAirflow:
    """The control plane, the broker and the workers of one Celery deployment."""

    services: AirflowServices
    broker: RedisServer
    workers: dict[str, CeleryWorker]
    concurrency: int
    hidden: tuple[Path, ...] = ()
    isolated: bool = False  # whether each worker runs with the others' folders hidden
    _roots: list[Path] = field(default_factory=list, repr=False)

    # --- workers ---------------------------------------------------------------------------------

    def worker_env(self, worker: CeleryWorker) -> dict[str, str]:
        """The control plane's environment, but with this worker's folders and name."""
        env = {name: value for name, value in self.services.env.items() if name not in CONTROL_ONLY}
        pythonpath = [str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            {
                "HOME": str(worker.root),
                "TMPDIR": str(worker.tmp),
                "AIRFLOW_HOME": str(worker.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(worker.dags_folder),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
                HOSTNAME_ENV: worker.name,
                "PYTHONPATH": os.pathsep.join(pythonpath),
            }
        )
        return env

    def folders_hidden_from(self, worker: CeleryWorker) -> list[Path]:
        """What another machine's worker could not see: the other workers, the control plane, ``hidden``."""
        others = [w.root for w in self.workers.values() if w.name != worker.name]
        candidates = [*others, self.services.home, self.services.dags_folder, *self.hidden]
        return outermost(path for path in candidates if not _contains(path, worker.root))

    def start_worker(self, name: str, *, wait: bool = True) -> None:
        """Start one worker (``airflow celery worker``); wait until it answers a Celery ping unless told not to."""
        worker = self.workers[name]
        wrapper = hiding_wrapper(self.folders_hidden_from(worker)) if self.isolated else ()
        self.services.start(
            name,
            "celery",
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--celery-hostname",
            name,
            "--skip-serve-logs",  # the task logs go to remote logging when configured, else stay local
            "--without-mingle",
            "--without-gossip",
            env=self.worker_env(worker),
            cwd=worker.root,
            wrapper=wrapper,
        )
        if wait:
            self.wait_until_ready([name])

    def stop_worker(self, name: str) -> None:
        """Stop one worker by its PID (Celery's warm shutdown, then SIGKILL), then what is left of its group."""
        self.services.stop_one(name)

    def running_workers(self) -> list[str]:
        return [name for name in self.workers if name in self.services.processes]

    def wait_until_ready(self, names: Sequence[str], timeout: float = READY_TIMEOUT) -> None:
        """Wait until each named worker answers a Celery control ping through the broker."""
        from celery import Celery

        app = Celery(broker=self.broker_url)
        nodes = {self.workers[name].node for name in names}
        try:

            def answered() -> bool:
                replies = app.control.ping(destination=sorted(nodes), timeout=1.0)
                return nodes <= {node for reply in replies for node in reply}

            self.services.wait_for(answered, timeout=timeout, interval=0.2)
        finally:
            app.close()

    # --- what the workers did --------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        return broker_url(self.broker)

    def hostnames(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Task id -> ``TaskInstance.hostname`` (the worker that ran it) for one run."""
        rows = self.services.query(
            "SELECT task_id, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s", dag_id, run_id
        )
        return {task_id: hostname or None for task_id, hostname in rows}

    def stop(self) -> None:
        """Stop every process by its PID, the broker, and remove the workers' folders."""
        try:
            self.services.stop()
        finally:
            self.broker.stop()
            for root in self._roots:
                shutil.rmtree(root, ignore_errors=True)


def broker_url(broker: RedisServer, db: int = 0) -> str:
    return f"redis://:{broker.password}@{broker.host}:{broker.port}/{db}"


def celery_settings(broker: RedisServer, result_backend: str, concurrency: int) -> dict[str, str]:
    """The ``[celery]`` settings every process of the deployment reads (scheduler and workers alike)."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url(broker),
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        # Redis redelivers a task unacknowledged for this long (default one day, with a warning per process)
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
    }


def start_celery_airflow(
    dags_folder: Path,
    db_url: str,
    *,
    workers: Sequence[str] = WORKER_NAMES,
    start_workers: Sequence[str] | None = None,
    concurrency: int = 2,
    connections: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    home: Path | None = None,
    hidden: Iterable[Path] = (),
    isolate: bool = True,
) -> CeleryAirflow:
    """Start a broker, the control plane (CeleryExecutor) and the workers; return once every worker answers.

    :param dags_folder: the control plane's DAGs folder; each worker gets a copy of it, taken now.
    :param db_url: an empty database (``postgresql+psycopg2://...``): metadata and Celery results.
    :param workers: the workers' names (their hostnames); folders are made for all of them.
    :param start_workers: which of them to start now (default: all); :meth:`CeleryAirflow.start_worker` starts others.
    :param concurrency: task slots per worker (``--concurrency``).
    :param connections: connection id -> JSON form, for every process (``AIRFLOW_CONN_<ID>``).
    :param env: more settings for every process (``AIRFLOW__SECTION__KEY``).
    :param home: the control plane's AIRFLOW_HOME (default: a new temp folder).
    :param hidden: more folders the workers must not see (when :func:`can_hide_folders`).
    :param isolate: hide the other machines' folders from each worker when Linux allows it.
    """
    broker = start_redis()
    services: AirflowServices | None = None
    roots: list[Path] = []
    try:
        settings = {**celery_settings(broker, f"db+{db_url}", concurrency), **(env or {})}
        services = start_airflow(  # the api-server last, once the workers are starting too
            dags_folder,
            db_url,
            connections=connections,
            env=settings,
            home=home,
            executor="CeleryExecutor",
            processes=("dag-processor", "scheduler", "triggerer"),
        )
        team: dict[str, CeleryWorker] = {}
        for name in workers:
            # Not under pytest's temp root, which may be among the folders hidden from every worker.
            root = Path(tempfile.mkdtemp(prefix=f"contactsync-{name}-"))
            roots.append(root)
            worker = CeleryWorker(name, root)
            worker.tmp.mkdir()
            worker.home.mkdir()
            shutil.copytree(dags_folder, worker.dags_folder, ignore=shutil.ignore_patterns("__pycache__"))
            team[name] = worker
        airflow = CeleryAirflow(
            services,
            broker,
            team,
            concurrency,
            hidden=tuple(Path(path) for path in hidden),
            isolated=isolate and can_hide_folders(),
            _roots=roots,
        )
        starting = list(workers if start_workers is None else start_workers)
        for name in starting:
            airflow.start_worker(name, wait=False)
        port = services.api_url.rsplit(":", 1)[1]
        services.start("api-server", "api-server", "--port", port, "--host", "127.0.0.1")
        airflow.wait_until_ready(starting)
        services.wait_for(lambda: _answers(f"{services.api_url}/api/v2/monitor/health"), timeout=READY_TIMEOUT)
    except BaseException:
        if services is not None:
            services.stop()
        broker.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return airflow


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# --- hiding folders from a worker ------------------------------------------------------------------


def hiding_wrapper(folders: Sequence[Path]) -> tuple[str, ...]:
    """A command prefix that runs the rest in a new mount namespace with ``folders`` covered (empty, read-only).

    ``unshare`` and ``sh`` exec what follows, so the PID the harness holds is Airflow's own.
    """
    mounts = [f"mount -t tmpfs -o ro,size=4k,mode=0555 other-machine {shlex.quote(str(path))}" for path in folders]
    script = " && ".join([*mounts, 'exec "$@"'])
    return ("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh")


@functools.cache
def can_hide_folders() -> bool:
    """Whether :func:`hiding_wrapper` works here (root with mount namespaces; not in every container)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="contactsync-hide-probe-") as folder:
        (Path(folder) / "visible").touch()
        probe = [*hiding_wrapper([Path(folder)]), "/bin/sh", "-c", f"test ! -e {shlex.quote(folder)}/visible"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and (Path(folder) / "visible").exists()


def outermost(paths: Iterable[Path]) -> list[Path]:
    """Existing folders, each once, leaving out those inside another (covering the outer one covers them)."""
    folders = sorted({Path(os.path.realpath(path)) for path in paths if Path(path).is_dir()})
    kept: list[Path] = []
    for folder in folders:
        if not any(_contains(outer, folder) for outer in kept):
            kept.append(folder)
    return kept


def _contains(folder: Path, path: Path) -> bool:
    """``path`` is ``folder`` or inside it."""
    folder, path = Path(os.path.realpath(folder)), Path(os.path.realpath(path))
    return path == folder or folder in path.parents

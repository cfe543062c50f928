"""Run one contactsync task in its own process, as an Airflow worker would, so a test can SIGKILL it.

``python -m servers.stage_process --stage load --state DIR`` runs one operator's ``execute()`` with
a stand-in context kept in files under ``DIR``: upstream results (XCom) in ``xcom.json``, the asset
state store in ``asset_state.json``, the definition in ``definition.json``. Running the same stage
again with the same ``DIR`` and run id is what Airflow's retry of that task does: same run, same
upstream results, same staged files. The parent starts it with :func:`start_stage`, and can kill it
with ``process.kill()`` at any moment.

:class:`StageServer` does the same from a process that imported Airflow and contactsync once and
forks one child per task, as Airflow's LocalExecutor and Celery workers do: a task then starts in
milliseconds instead of the four seconds an interpreter takes to import Airflow, which is what lets a
suite run dozens of attempts. Each child leads its own process group, so a kill takes the task and
the worker processes it spawned (transform, map) at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

STAGES = ("extract", "transform", "map", "load")
TESTS = Path(__file__).resolve().parents[1]
OPERATOR_ARGS = "operator_args.json"
"""Optional file in the state folder: extra operator arguments by stage (``{"extract": {"chunk_size": 500}}``)."""


class FileXcomTI:
    """The task instance's XCom, in a dict the caller keeps in a file."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids if key == "return_value" else f"{task_ids}:{key}")

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[f"push:{key}"] = value


class FileAccessor:
    """One asset's state store entries, in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _data(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._data().get(key, default)

    def set(self, key: str, value: Any) -> None:
        data = self._data()
        data[key] = value
        self.path.write_text(json.dumps(data))

    def delete(self, key: str) -> None:
        data = self._data()
        data.pop(key, None)
        self.path.write_text(json.dumps(data))


class FileStateStore:
    """``context['asset_state_store']``: every asset's accessor is the one JSON file."""

    def __init__(self, path: Path) -> None:
        self.accessor = FileAccessor(path)

    def __getitem__(self, asset: Any) -> FileAccessor:
        return self.accessor


def run_stage(stage: str, state: Path, run_id: str) -> int:
    """Child process: one operator's execute(); its result recorded as the stage's XCom. Exit 0, or
    99 when the task skipped itself (AirflowSkipException)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_provider_contactsync import operators

    classes = {
        "extract": operators.ContactsyncExtractOperator,
        "transform": operators.ContactsyncTransformOperator,
        "map": operators.ContactsyncMapOperator,
        "load": operators.ContactsyncLoadOperator,
    }
    definition = json.loads((state / "definition.json").read_text())
    extra = json.loads((state / OPERATOR_ARGS).read_text()).get(stage, {}) if (state / OPERATOR_ARGS).exists() else {}
    operator = classes[stage](task_id=stage, definition=definition, staging=f"file://{state}/staging", **extra)
    xcom_file = state / "xcom.json"
    xcoms = json.loads(xcom_file.read_text()) if xcom_file.exists() else {}
    context = {
        "ti": FileXcomTI(xcoms),
        "run_id": run_id,
        "params": {},
        "asset_state_store": FileStateStore(state / "asset_state.json"),
    }
    try:
        result = operator.execute(context)
    except AirflowSkipException:
        return 99
    xcoms[stage] = result
    xcom_file.write_text(json.dumps(xcoms, default=str))
    return 0


def start_stage(stage: str, state: Path, env: dict[str, str], *, run_id: str = "run-1") -> subprocess.Popen[bytes]:
    """Start one stage in a child process (its output in ``DIR/<stage>.log``)."""
    log = (state / f"{stage}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "servers.stage_process", "--stage", stage, "--state", str(state), "--run-id", run_id],
        cwd=TESTS,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def write_definition(state: Path, definition: dict[str, Any]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "definition.json").write_text(json.dumps(definition))


PRELOAD = (
    "airflow.sdk.exceptions",
    "airflow_provider_contactsync.operators",
    "airflow_provider_contactsync.operators.failures",
    "airflow_provider_contactsync.dag_factory.builder",
    "airflow_provider_contactsync.sources",
    "airflow_provider_contactsync.sources.postgres",
    "airflow_provider_contactsync.hooks.brevo",
    "airflow_provider_contactsync.load",
    "airflow_provider_contactsync.core.parallel",
    "airflow_provider_contactsync.core.formulas",
)
"""What the fork server imports before forking: what a task would otherwise import on its first run."""


class ForkedStage:
    """One task forked by :class:`StageServer`: ``pid``, :meth:`poll`, :meth:`wait`, :meth:`kill`.

    The server reaps the child only when :meth:`poll` finds it gone, under the same lock as
    :meth:`kill`: a kill, from any thread, never reaches a process id that was reused.
    """

    def __init__(self, server: StageServer, pid: int, stage: str, log: Path) -> None:
        self.server, self.pid, self.stage, self.log = server, pid, stage, log
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """The exit code once the task ended (``-9`` when SIGKILLed), else None."""
        with self._lock:
            if self.returncode is None:
                self.returncode = self.server._ask({"op": "poll", "pid": self.pid})["code"]
            return self.returncode

    def wait(self, timeout: float) -> int:
        """Wait for the end of the task; kill it and raise ``TimeoutError`` past ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.stage} did not end within {timeout:.0f} s; log: {self.log}")
            time.sleep(0.002)  # polling interval, not a wait for a guessed duration
        return code

    def kill(self) -> bool:
        """SIGKILL the task and the processes it started (its group); False when it had already ended."""
        with self._lock:
            if self.returncode is not None:
                return False
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # not a group leader yet (just forked): the task alone
                os.kill(self.pid, signal.SIGKILL)
            return True


class StageServer:
    """A fork server for tasks: ``start(stage, state, env)`` runs :func:`run_stage` in a forked child.

    :param env: environment of the server (Airflow reads its configuration once, at import).
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "servers.stage_process", "--serve"],
            cwd=TESTS,
            env={
                **os.environ,
                **(env or {}),
                "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._ask({"op": "ready"})

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._lock:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the stage server ended (exit code {self.process.wait(timeout=10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"stage server: {answer['error']}")
        return answer

    def start(
        self, stage: str, state: Path, env: dict[str, str] | None = None, *, run_id: str = "run-1"
    ) -> ForkedStage:
        """Fork one task (its output appended to ``state/<stage>.log``)."""
        log = state / f"{stage}.log"
        command = {"op": "start", "stage": stage, "state": str(state), "run_id": run_id, "env": env or {}}
        return ForkedStage(self, self._ask(command)["pid"], stage, log)

    def close(self) -> None:
        """End the server (it ends when its input does) and wait for it."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def __enter__(self) -> StageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve() -> None:
    """The fork server (``--serve``): one JSON command a line on stdin, one JSON answer a line on stdout."""
    for name in PRELOAD:
        importlib.import_module(name)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write on the answer channel
    running: set[int] = set()
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "start":
                answer: dict[str, Any] = {"pid": _fork_stage(command, answers)}
                running.add(answer["pid"])
            elif command["op"] == "poll":
                pid, status = os.waitpid(command["pid"], os.WNOHANG)
                answer = {"code": os.waitstatus_to_exitcode(status) if pid else None}
                if pid:
                    running.discard(pid)
            else:
                answer = {}
        except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    for pid in running:  # the parent is gone or done: no task it started outlives it
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _fork_stage(command: dict[str, Any], answers: Any) -> int:
    if threading.active_count() != 1:  # a fork copies no thread, only the locks they may hold
        raise RuntimeError(f"the stage server holds {threading.active_count()} threads: it must not fork")
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.setsid()  # its own process group: the workers it spawns die with it
        answers.close()
        state = Path(command["state"])
        log = os.open(state / f"{command['stage']}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.update(command["env"])
        code = run_stage(command["stage"], state, command["run_id"])
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help="be the fork server (see StageServer)")
    parser.add_argument("--stage", choices=STAGES)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--run-id", default="run-1")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.stage is None or args.state is None:
        parser.error("--stage and --state are required")
    sys.exit(run_stage(args.stage, args.state, args.run_id))


if __name__ == "__main__":
    main()

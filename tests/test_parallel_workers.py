"""Transform/map worker processes: as many as the task may use, and gone with their task process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.parallel import cgroup_cpu_limit, default_workers

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 60.0

# A task's pool with two workers, each busy on a job that would outlive the test.
TASK = """
import time
from airflow_provider_contactsync.core.parallel import _run_jobs
jobs = _run_jobs([(3600,), (3600,)], setup=int, setup_args=(), work=time.sleep, workers=2)
next(jobs)
"""


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # polling interval


def test_pool_workers_exit_when_the_task_process_is_killed() -> None:
    task = subprocess.Popen([sys.executable, "-c", TASK], cwd=ROOT, env=dict(os.environ))
    pool: list[psutil.Process] = []
    try:
        parent = psutil.Process(task.pid)

        def workers() -> list[psutil.Process]:  # not the resource tracker: spawn_main is a pool worker's entry
            return [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]

        wait_until(lambda: len(workers()) == 2, "the pool never started its two workers")
        pool = workers()
        os.kill(task.pid, signal.SIGKILL)
        task.wait()
        wait_until(lambda: not any(alive(w) for w in pool), "a worker outlived its task process")
    finally:
        if task.poll() is None:
            task.kill()
            task.wait()
        for worker in pool:  # when the test fails: stop the orphans it made, by PID
            if alive(worker):
                worker.kill()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(str(tmp_path)) == expected


def test_default_workers_are_capped_by_the_quota(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_workers(str(tmp_path)) == cores  # no quota: every core the process may use
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one worker
    assert default_workers(str(tmp_path)) == 1
    (tmp_path / "cpu.max").write_text(f"{(cores + 3) * 100000} 100000\n")  # more quota than cores
    assert default_workers(str(tmp_path)) == cores


def test_task_workers_config_caps_the_workers_of_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.operators.contactsync import _workers_for

    monkeypatch.setenv("AIRFLOW__CONTACTSYNC__TASK_WORKERS", "3")
    assert _workers_for(None, 10) == 3  # the deployment's setting
    assert _workers_for(None, 2) == 2  # never more than the chunks
    assert _workers_for(5, 10) == 5  # the operator's own argument wins
    monkeypatch.setenv("AIRFLOW__CONTACTSYNC__TASK_WORKERS", "")
    assert _workers_for(None, 100) == default_workers()
    monkeypatch.setenv("AIRFLOW__CONTACTSYNC__TASK_WORKERS", "many")
    with pytest.raises(ConfigurationError, match=r"\[contactsync\] task_workers .* 'many'"):
        _workers_for(None, 10)

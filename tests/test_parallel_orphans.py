"""A task process killed outright takes its transform/map worker processes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

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

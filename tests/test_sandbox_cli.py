"""The ``contactsync-sandbox`` command: starts, prints its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from servers.processes import free_port


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    exe = shutil.which("contactsync-sandbox", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "airflow_provider_contactsync.sandbox.cli"]
    port = free_port()
    proc = subprocess.Popen(
        [
            *command,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "cli.sqlite3"),
            "--api-key",
            "cli-key",
            "--import-delay",
            "0",
            "--other-per-hour",
            "1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "http://" not in line:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
        assert f"http://127.0.0.1:{port}/v3" in line, (line, proc.stderr.read() if proc.stderr else "")
        url = line.strip().rsplit(" ", 1)[-1]
        response = httpx.get(url + "/contacts/lists", headers={"api-key": "cli-key"})
        assert response.status_code == 200 and response.json()["count"] == 1
        assert response.headers["x-sib-ratelimit-limit"] == "10"
        assert httpx.get(url + "/processes", headers={"api-key": "cli-key"}).headers["x-sib-ratelimit-limit"] == "1000"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out

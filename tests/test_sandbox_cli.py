"""The ``contactsync-sandbox`` command: starts, prints its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
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
            "--read-timeout",
            "7.5",
            "--max-batch-contacts",
            "50",
            "--doi-template-ids",
            "4,7",
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
        config = httpx.get(url.removesuffix("/v3") + "/_sandbox/config", headers={"api-key": "cli-key"}).json()
        assert config["read_timeout"] == 7.5
        assert (config["max_batch_contacts"], config["doi_template_ids"]) == (50, [4, 7])
        # hostile requests: answered, and nothing on the user's terminal (checked below)
        deep = httpx.post(url + "/contacts", content=b"[" * 10_000 + b"]" * 10_000, headers={"api-key": "cli-key"})
        assert deep.status_code == 400 and deep.json()["code"] == "invalid_parameter"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v3/contacts HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err and "Exception" not in err, err

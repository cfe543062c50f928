"""pytest fixtures for a real HTTP server on 127.0.0.1 that records the requests it receives.

The webhook endpoint of a user, for the outbound-notification tests: Python's ``http.server`` in its
own process (this file, run as a script), so the code under test posts over a real socket. Each
request is written as one JSON file (method, path, headers, body in base64, the status answered),
atomically (a temporary name, then a rename), so the test reads requests back from a folder.

What it answers is set through ``PUT /_control`` (:meth:`HttpReceiver.answer`): a list of statuses
used one per request (``[503, 503]``: the first two requests get 503), then a default (200, or 500
for an endpoint that always fails).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the server's own process (see _serve); make `servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers.processes import free_port, log_tail, stop_process  # noqa: E402

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
CONTROL_PATH = "/_control"
MAX_BODY = 1 << 20


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """A running receiver and the folder it records requests into."""

    host: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.json"))

    def requests(self) -> list[Received]:
        """Every request received since the last ``clear()``, oldest first."""
        out = []
        for path in self._files():
            data = json.loads(path.read_text())
            out.append(
                Received(data["method"], data["path"], data["headers"], base64.b64decode(data["body"]), data["status"])
            )
        return out

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self._files()) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"the HTTP receiver exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} request(s) within {timeout}s, got {len(self._files())}")
            time.sleep(0.05)
        return self.requests()

    def answer(self, statuses: list[int] | None = None, *, default: int = 200) -> None:
        """Answer the next requests with ``statuses`` (one each), then ``default``."""
        body = json.dumps({"statuses": statuses or [], "default": default}).encode()
        request = urllib.request.Request(f"{self.url}{CONTROL_PATH}", data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own server on 127.0.0.1
            assert response.status == 204

    def clear(self) -> None:
        for path in self._files():
            path.unlink(missing_ok=True)
        self.answer()

    def connection_json(self, password: str | None, *, path: str = "/hooks/contactsync") -> str:
        """An Airflow http connection (JSON form) to this receiver; ``password`` is the signing secret."""
        conn: dict[str, Any] = {"conn_type": "http", "host": f"{self.url}{path}"}
        if password is not None:
            conn["password"] = password
        return json.dumps(conn)


def start_server(folder: Path) -> HttpReceiver:
    """Start the receiver process and return once it answers HTTP."""
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another process may take the free port first
        port = free_port()
        log_path = folder / "server.log"
        log = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        process = subprocess.Popen(
            [sys.executable, __file__, "--folder", str(folder / "requests"), "--port", str(port)]
            + ["--parent", str(os.getpid())],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        receiver = HttpReceiver("127.0.0.1", port, folder / "requests", process)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                receiver.answer()
                return receiver
            except OSError:
                time.sleep(0.05)
        stop_process(process, STOP_TIMEOUT)
    raise RuntimeError(f"HTTP receiver did not start:\n{log_tail(folder / 'server.log')}")


def _serve(folder: Path, port: int, parent: int) -> None:
    """The server process; it also stops when the test process that started it is gone."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    state: dict[str, Any] = {"statuses": [], "default": 200, "count": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(min(length, MAX_BODY))

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_PUT(self) -> None:  # noqa: N802 - http.server's name
            body = self._body()
            if self.path != CONTROL_PATH:
                self._reply(404)
                return
            control = json.loads(body)
            with lock:
                state["statuses"] = list(control["statuses"])
                state["default"] = int(control["default"])
            self._reply(204)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self._body()
            with lock:
                status = state["statuses"].pop(0) if state["statuses"] else state["default"]
                state["count"] += 1
                number = state["count"]
            record = {
                "method": "POST",
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": base64.b64encode(body).decode(),
                "status": status,
            }
            name = f"{time.time_ns():020d}-{number:06d}"
            tmp = folder / f"{name}.tmp"
            tmp.write_text(json.dumps(record))
            tmp.rename(folder / f"{name}.json")
            self._reply(status)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set() and os.getppid() == parent:
        stop.wait(1.0)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Test HTTP receiver writing each request as a .json file.")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="exit when this process is gone")
    arguments = parser.parse_args()
    _serve(arguments.folder, arguments.port, arguments.parent)
else:
    import pytest

    @pytest.fixture(scope="session")
    def http_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpReceiver]:
        """One real HTTP receiver per test process (each xdist worker gets its own, on its own port)."""
        receiver = start_server(tmp_path_factory.mktemp("http-receiver"))
        try:
            yield receiver
        finally:
            stop_process(receiver.process, STOP_TIMEOUT)

    @pytest.fixture
    def webhook_receiver(http_receiver: HttpReceiver) -> HttpReceiver:
        """The receiver with no recorded requests, answering 200."""
        http_receiver.clear()
        return http_receiver

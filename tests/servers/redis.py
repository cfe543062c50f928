"""A real Redis server on 127.0.0.1 for tests (Debian's ``redis-server``, no Docker).

:func:`start_server` / :meth:`RedisServer.stop` work outside pytest; the fixtures below wrap them:

- ``redis_server`` (session): one server per pytest(-xdist) worker, in a private temp folder, with
  a password (so the hook's login path is exercised) and an append-only file fsynced on every write
  (what the events queue asks of a production Redis).
- ``redis_conn_id`` (function): an empty server and an ``AIRFLOW_CONN_<ID>`` environment variable
  pointing at it; the fixture's value is the Airflow connection id.

The server is started in its own process (not daemonized, so its PID is the one we hold) and
stopped by that PID, never by name.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servers.processes import free_port, log_tail, stop_process

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
MISSING = "redis-server is not installed: run `bash scripts/install-servers.sh` (Debian's redis-server package)"


def find_redis_server(path: str | None = None) -> str:
    """The ``redis-server`` binary on ``path`` (default: ``PATH``); a clear error naming the install script."""
    found = shutil.which("redis-server", path=path)
    if not found:
        raise RuntimeError(MISSING)
    return found


@dataclass
class RedisServer:
    """A running server: where it listens, its password, and how to stop it."""

    host: str
    port: int
    password: str
    base_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.base_dir / "redis.log"

    def airflow_connection(self, db: int = 0) -> str:
        """The JSON form of an Airflow connection for the redis provider's ``RedisHook``."""
        return json.dumps(
            {"conn_type": "redis", "host": self.host, "port": self.port, "password": self.password, "extra": {"db": db}}
        )

    def client(self, db: int = 0):  # noqa: ANN201 - redis.Redis, imported lazily
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password, db=db, socket_timeout=10)

    def stop(self) -> None:
        """SIGTERM the server's PID (it flushes and exits), SIGKILL if it hangs; remove the folder."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ping(host: str, port: int, password: str) -> bool:
    """True once the server answers AUTH + PING (raw RESP, no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            secret = password.encode()
            sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret))
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                answer += chunk
            return answer == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


def start_server(*, attempts: int = 5) -> RedisServer:
    """Start ``redis-server`` in a new temp folder on 127.0.0.1; return once it answers PING.

    :param attempts: ports to try: another process (an xdist worker) may take a free port first.
    """
    binary = find_redis_server()
    base_dir = Path(tempfile.mkdtemp(prefix="contactsync-redis-"))
    password = secrets.token_hex(16)
    try:
        for _ in range(attempts):
            server = RedisServer("127.0.0.1", free_port(), password, base_dir)
            config = base_dir / "redis.conf"
            # The password goes in a file (0600), not on the command line where ps would show it.
            config.write_text(
                "\n".join(
                    [
                        f"bind {server.host}",
                        f"port {server.port}",
                        f"dir {base_dir}",
                        f"logfile {server.log_file}",
                        "daemonize no",
                        "protected-mode yes",
                        'save ""',
                        "appendonly yes",
                        "appendfsync always",
                        f"requirepass {password}",
                        "",
                    ]
                )
            )
            config.chmod(0o600)
            server.process = subprocess.Popen(
                [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=base_dir
            )
            deadline = time.monotonic() + START_TIMEOUT
            while server.process.poll() is None and time.monotonic() < deadline:
                if _ping(server.host, server.port, password):
                    return server
                time.sleep(0.05)  # polling interval, not a wait for a guessed duration
            if server.process.poll() is None:  # alive but not answering: give up on it
                stop_process(server.process, STOP_TIMEOUT)
                log = log_tail(server.log_file)
                raise RuntimeError(f"redis-server did not answer in {START_TIMEOUT:.0f} s:\n{log}")
            server.process = None  # exited (port taken): try another port
        raise RuntimeError(f"redis-server did not start; log:\n{log_tail(base_dir / 'redis.log')}")
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server per test session (per xdist worker), stopped at the end."""
    try:
        server = start_server()
    except RuntimeError as exc:
        failure = str(exc)  # failed outside the except block: the message alone, no chained traceback
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_conn_id(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow Redis connection (env var, JSON form) to the test server, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    conn_id = "contactsync_test_redis"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", redis_server.airflow_connection())
    return conn_id

"""A real PostgreSQL server on 127.0.0.1 for tests and benchmarks (Debian's binaries, no Docker).

:func:`start_server` / :meth:`PostgresServer.stop` work outside pytest (the extract benchmark
imports this module by path); the fixtures below wrap them:

- ``postgres_server`` (session): one server per pytest(-xdist) worker, in a private temp folder.
- ``postgres_db`` (function): a fresh database per test and an ``AIRFLOW_CONN_<ID>`` environment
  variable pointing at it; the fixture's value is the Airflow connection id.

PostgreSQL refuses to run as root, and the tests run as root: the data folder belongs to the
``postgres`` OS user (created by the Debian package, see ``scripts/install-servers.sh``) and the
server process is started as that user. It is stopped by its PID, never by name.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from servers.processes import free_port, log_tail

OS_USER = "postgres"
SUPERUSER = "contactsync"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# Durability is pointless for throw-away test data; these make DDL and bulk inserts much faster.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "dynamic_shared_memory_type": "mmap",  # containers often have a tiny /dev/shm
}


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb (Debian's layout)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise RuntimeError("PostgreSQL is not installed: run `bash scripts/install-servers.sh`")
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    """A running server: where it listens, the superuser's credentials, and how to stop it."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    base_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def conn_uri(self, dbname: str | None = None) -> str:
        """``postgresql://user:password@host:port/dbname`` for the given (or the default) database."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname or self.dbname, safe='')}"
        )

    def airflow_connection(self, dbname: str | None = None) -> str:
        """The JSON form of an Airflow connection, as an ``AIRFLOW_CONN_<ID>`` variable holds it."""
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": self.host,
                "port": self.port,
                "login": self.user,
                "password": self.password,
                "schema": dbname or self.dbname,
            }
        )

    def connect(self, dbname: str | None = None, *, autocommit: bool = True) -> Any:
        """A psycopg (3) connection as the superuser; autocommit so DDL like CREATE DATABASE works."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
            autocommit=autocommit,
            connect_timeout=5,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh one per test keeps tests independent); return its name."""
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID), then remove the folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()  # immediate shutdown; the data folder is thrown away anyway
                process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(*, settings: dict[str, str] | None = None, attempts: int = 5) -> PostgresServer:
    """initdb a cluster in a new temp folder and start it on 127.0.0.1; return once it accepts connections.

    :param settings: extra ``postgres -c name=value`` settings (e.g. ``shared_buffers`` for benchmarks).
    :param attempts: ports to try: another process (an xdist worker) may take a free port first.
    """
    bin_dir = find_bin_dir()
    account = pwd.getpwnam(OS_USER)
    # Not under pytest's tmp_path: its parents are root-only (0700) and the postgres user must get in.
    base_dir = Path(tempfile.mkdtemp(prefix="contactsync-pg-"))
    as_postgres: dict[str, Any] = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    password = secrets.token_urlsafe(16)
    try:
        os.chown(base_dir, account.pw_uid, account.pw_gid)
        (base_dir / "socket").mkdir()
        os.chown(base_dir / "socket", account.pw_uid, account.pw_gid)
        pwfile = base_dir / "pwfile"
        pwfile.write_text(password + "\n")
        os.chown(pwfile, account.pw_uid, account.pw_gid)
        pwfile.chmod(0o600)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(base_dir / "data"),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=base_dir,
            **as_postgres,
        )
        pwfile.unlink()
        for _ in range(attempts):
            server = PostgresServer("127.0.0.1", free_port(), SUPERUSER, password, "postgres", base_dir)
            options = {
                **FAST_SETTINGS,
                **(settings or {}),
                "listen_addresses": server.host,
                "port": str(server.port),
                "unix_socket_directories": str(server.socket_dir),
            }
            command = [str(bin_dir / "postgres"), "-D", str(base_dir / "data")]
            for name, value in options.items():
                command += ["-c", f"{name}={value}"]
            log = open(server.log_file, "ab")  # noqa: SIM115 - the server owns it while it runs
            try:
                # Popen(user=...) switches user in the child before exec: the PID is the postmaster's.
                server.process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=base_dir, **as_postgres
                )
            finally:
                log.close()
            if _wait_until_ready(server):
                return server
            server.process = None  # exited (port taken): try another port
        raise RuntimeError(f"PostgreSQL did not start; log:\n{log_tail(base_dir / 'postgres.log')}")
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise


def _wait_until_ready(server: PostgresServer) -> bool:
    """Poll until a connection succeeds (True) or the server exits (False); fail past the deadline."""
    import psycopg

    assert server.process is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            server.connect().close()
            return True
        except psycopg.OperationalError:
            time.sleep(0.05)  # polling interval, not a wait for a guessed duration
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=STOP_TIMEOUT)
    raise RuntimeError(f"PostgreSQL did not accept connections in {START_TIMEOUT:.0f} s:\n{log_tail(server.log_file)}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test session (per xdist worker), stopped at the end."""
    server = start_server(settings={"shared_buffers": "32MB"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database for one test; returns the Airflow connection id (``AIRFLOW_CONN_<ID>`` is set)."""
    dbname = postgres_server.create_database()
    conn_id = f"pg_{dbname}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", postgres_server.airflow_connection(dbname))
    try:
        yield conn_id
    finally:
        postgres_server.drop_database(dbname)

"""pytest fixtures for a real SMTP server on 127.0.0.1.

The server is aiosmtpd running in its own process (this file, run as a script), so the code under
test talks real SMTP over a real socket, exactly as it would to a relay. Each received message is
written as one ``.eml`` file (atomically: written to a temporary name, then renamed), so the test
process reads mail back from a folder and needs no shared state with the server.

The server accepts AUTH LOGIN/PLAIN without TLS for one login and password, so tests exercise the
hook's login path (and can check that the password never reaches a mail).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import os
import secrets
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the server's own process (see _serve); make `servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers.processes import stop_process  # noqa: E402

LOGIN = "contactsync"
PASSWORD_ENV = "CONTACTSYNC_TEST_SMTP_PASSWORD"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


@dataclass
class SmtpServer:
    """A running test SMTP server and the folder it drops mail into."""

    host: str
    port: int
    login: str
    password: str
    folder: Path
    process: subprocess.Popen[bytes]

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """Every message received since the last ``clear()``, oldest first."""
        return [
            email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=email.policy.default)
            for path in self._files()
        ]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived; fail with what did arrive after ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self._files()) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"the SMTP server exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                subjects = [str(m["Subject"]) for m in self.messages()]
                raise TimeoutError(f"expected {count} message(s) within {timeout}s, got {subjects}")
            time.sleep(0.05)
        return self.messages()

    def clear(self) -> None:
        for path in self._files():
            path.unlink(missing_ok=True)

    def connection_uri_json(self, *, with_login: bool = True) -> str:
        """The Airflow connection (JSON form) for the smtp provider's hook: plain SMTP, no SSL/TLS."""
        conn: dict[str, object] = {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "from_email": "contactsync@example.com",
                "timeout": 10,
                "retry_limit": 0,
            },
        }
        if with_login:
            conn["login"] = self.login
            conn["password"] = self.password
        return json.dumps(conn)


def start_server(folder: Path) -> SmtpServer:
    """Start the server process and return once it accepts SMTP connections."""
    folder.mkdir(parents=True, exist_ok=True)
    ready = folder / "ready.json"
    password = secrets.token_hex(16)
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--folder",
            str(folder / "mail"),
            "--ready",
            str(ready),
            "--parent",
            str(os.getpid()),
        ],
        env={**os.environ, PASSWORD_ENV: password},  # not on the command line: ps would show it
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SMTP server exited early:\n{(folder / 'server.log').read_text()}")
        if time.monotonic() > deadline:
            stop_process(process, STOP_TIMEOUT)
            raise TimeoutError(f"SMTP server not ready within {START_TIMEOUT}s")
        if ready.exists():
            port = int(json.loads(ready.read_text())["port"])
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
                    if client.noop()[0] == 250:
                        break
            except OSError:
                pass
        time.sleep(0.05)
    return SmtpServer("127.0.0.1", port, LOGIN, password, folder / "mail", process)


def _serve(folder: Path, ready: Path, parent: int) -> None:
    """The server process: aiosmtpd on an OS-chosen port, one .eml file per message.

    It also stops when the test process that started it is gone (killed pytest, timeout), so a
    crashed run leaves no orphan server behind.
    """
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    folder.mkdir(parents=True, exist_ok=True)
    password = os.environ[PASSWORD_ENV].encode()
    received = 0

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
            nonlocal received
            received += 1
            # Envelope recipients include Bcc, which the headers do not show.
            head = (
                f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
            ).encode()
            name = f"{time.time_ns():020d}-{received:06d}"
            tmp = folder / f"{name}.tmp"
            tmp.write_bytes(head + envelope.original_content)
            tmp.rename(folder / f"{name}.eml")
            return "250 Message accepted for delivery"

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == LOGIN.encode()
            and secrets.compare_digest(auth_data.password, password)
        )
        return AuthResult(success=ok, handled=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await loop.create_server(
            lambda: SMTP(
                Handler(),
                hostname="localhost",
                authenticator=authenticator,
                auth_require_tls=False,
                decode_data=False,
            ),
            host="127.0.0.1",
            port=0,
        )
        port = server.sockets[0].getsockname()[1]
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
        tmp.rename(ready)
        while not stop.is_set() and os.getppid() == parent:
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
        server.close()
        await server.wait_closed()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Test SMTP server writing each message as a .eml file.")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True, help="exit when this process is gone")
    arguments = parser.parse_args()
    _serve(arguments.folder, arguments.ready, arguments.parent)
else:
    import pytest

    @pytest.fixture(scope="session")
    def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
        """One real SMTP server per test process (each xdist worker gets its own, on its own port)."""
        server = start_server(tmp_path_factory.mktemp("smtp"))
        try:
            yield server
        finally:
            stop_process(server.process, STOP_TIMEOUT)

    @pytest.fixture
    def smtp_conn_id(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> str:
        """An Airflow SMTP connection (env var, JSON form) to the test server; the mailbox starts empty."""
        conn_id = "contactsync_test_smtp"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", smtp_server.connection_uri_json())
        smtp_server.clear()
        return conn_id

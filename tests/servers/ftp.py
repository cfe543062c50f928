"""pytest fixtures for real FTP and FTPS (explicit TLS) servers on 127.0.0.1.

Each server is pyftpdlib running in its own process (this file, run as a script), so the code under
test talks real FTP over real sockets, control and passive data connections both. One user (login
and password) sees one folder in a private temp dir as ``/``; the test process puts files there
directly (:class:`RemoteFolder`), including half-written files and files with a chosen mtime.

- ``ftp_server`` (session): plain FTP, one per pytest(-xdist) worker, on its own port.
- ``ftps_server`` (session): explicit FTPS (``AUTH TLS``; TLS is *required* on the control and the
  data connections) with a certificate made for this session: a throw-away CA signs a server
  certificate for ``127.0.0.1``/``localhost``.

The provider's ``FTPSHook`` (apache-airflow-providers-ftp 3.16) verifies the server certificate with
``ssl.create_default_context()``: the system CA bundle and hostname checking, with no extra to pass a
CA or to switch verification off. The test CA is trusted the way OpenSSL lets a process choose its CA
bundle: ``SSL_CERT_FILE=<server.ca_file>`` in the environment of the process that runs the hook
(:meth:`FtpServer.trust_env`; e.g. ``monkeypatch.setenv(*server.trust_env())``). That replaces the
system bundle for that process, so only do it in tests. Hostname checking stays on and passes: the
certificate names ``IP:127.0.0.1``. ``FTPSHook`` also sets the *class* attribute
``ftplib.FTP_TLS.port`` to the connection's port (a process-wide leftover that later ``FTP_TLS``
objects without an explicit port inherit).

Passive data ports come from a small range per server (random, below Linux's ephemeral range so the
kernel never hands them out); pyftpdlib skips ports already taken, so parallel workers cannot clash.
"""

from __future__ import annotations

import argparse
import datetime
import ftplib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the server's own process (see _serve); make `servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers.processes import stop_process  # noqa: E402

LOGIN = "contactsync"
PASSWORD_ENV = "CONTACTSYNC_TEST_FTP_PASSWORD"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
PASSIVE_PORTS = 64  # per server; a test rarely has more than a few data connections open at once


class RemoteFolder:
    """What a test does to the files a server serves, from the server's side of the disk.

    A class using it provides ``root`` (the folder on disk), ``remote_root`` (that folder as the
    client sees it) and ``owner`` (``(uid, gid)`` the files must belong to, or None to leave them to
    the test process). Relative paths use ``/`` and must stay inside the folder.
    """

    root: Path
    remote_root: str
    owner: tuple[int, int] | None

    def path(self, relpath: str) -> Path:
        """The file's path on the local disk (what the server reads)."""
        target = (self.root / relpath).resolve()
        if target != self.root.resolve() and self.root.resolve() not in target.parents:
            raise ValueError(f"{relpath!r} is outside the server's folder")
        return target

    def remote_path(self, relpath: str = "") -> str:
        """The file's path as the client names it (absolute on the server)."""
        relpath = relpath.strip("/")
        if not relpath:
            return self.remote_root
        return f"{self.remote_root.rstrip('/')}/{relpath}"

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    def _parent(self, relpath: str) -> Path:
        """Create the file's missing parent folders (owned like the files); return the file's path."""
        target = self.path(relpath)
        missing = []
        folder = target.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o775)
            self._own(folder)
        return target

    def put(self, relpath: str, data: bytes, *, mtime: float | datetime.datetime | None = None) -> Path:
        """Write a whole file atomically (temp name in the same folder, then rename); return its path."""
        target = self._parent(relpath)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            tmp.chmod(0o664)
            self._own(tmp)
            if mtime is not None:
                os.utime(tmp, (_timestamp(mtime), _timestamp(mtime)))
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def put_partial(self, relpath: str, data: bytes) -> Path:
        """Start a file in place, as an upload in progress looks: the first bytes only, under its final name."""
        target = self._parent(relpath)
        with open(target, "wb") as handle:
            handle.write(data)
        target.chmod(0o664)
        self._own(target)
        return target

    def append(self, relpath: str, data: bytes) -> Path:
        """Add bytes at the end of a file (the rest of an upload); the mtime moves as a server's would."""
        target = self.path(relpath)
        with open(target, "ab") as handle:
            handle.write(data)
        return target

    def touch(self, relpath: str, mtime: float | datetime.datetime) -> Path:
        """Set a file's modification (and access) time: a POSIX timestamp or an aware datetime."""
        target = self.path(relpath)
        os.utime(target, (_timestamp(mtime), _timestamp(mtime)))
        return target

    def read(self, relpath: str) -> bytes:
        return self.path(relpath).read_bytes()

    def clear(self) -> None:
        """Remove everything in the folder (the folder itself stays)."""
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _timestamp(value: float | datetime.datetime) -> float:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError("give an aware datetime (or a POSIX timestamp): a naive one is ambiguous")
        return value.timestamp()
    return float(value)


@dataclass
class FtpServer(RemoteFolder):
    """A running test FTP(S) server, its one user, and the folder that user sees as ``/``."""

    host: str
    port: int
    username: str
    password: str
    root: Path
    tls: bool
    ca_file: Path | None  # the CA that signed the server certificate (FTPS only)
    process: subprocess.Popen[bytes] = field(repr=False)
    remote_root: str = "/"
    owner: tuple[int, int] | None = None
    passive_ports: tuple[int, int] = (0, 0)

    @property
    def log_file(self) -> Path:
        return self.root.parent / "server.log"

    def airflow_connection(self, **extra: Any) -> str:
        """The Airflow connection (JSON form) for ``FTPHook`` / ``FTPSHook``; ``extra`` adds or overrides extras.

        The conn type is ``ftp`` for both: the ftp provider registers no ``ftps`` type, FTPS is the
        hook class (``FTPSHook``) reading the same connection. Passive mode is on (the default).
        """
        return json.dumps(
            {
                "conn_type": "ftp",
                "host": self.host,
                "port": self.port,
                "login": self.username,
                "password": self.password,
                "extra": {"passive": True, **extra},
            }
        )

    def trust_env(self) -> tuple[str, str]:
        """``("SSL_CERT_FILE", <ca_file>)``: the variable that makes ``FTPSHook`` trust this server."""
        if self.ca_file is None:
            raise ValueError("a plain FTP server has no certificate")
        return "SSL_CERT_FILE", str(self.ca_file)

    def client(self) -> ftplib.FTP:
        """A logged-in ftplib client (FTP_TLS with PROT P and verification against ``ca_file`` for FTPS)."""
        if self.tls:
            import ssl

            assert self.ca_file is not None
            context = ssl.create_default_context(cafile=str(self.ca_file))
            client: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=10)
            client.connect(self.host, self.port)
            client.login(self.username, self.password)
            client.prot_p()  # type: ignore[attr-defined]
        else:
            client = ftplib.FTP(timeout=10)
            client.connect(self.host, self.port)
            client.login(self.username, self.password)
        return client


def make_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate it signs for 127.0.0.1/localhost; returns (ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid_from, valid_to = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contactsync test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _passive_range() -> tuple[int, int]:
    """A random block of ports between 20000 and Linux's ephemeral range (32768+)."""
    first = 20000 + secrets.randbelow((32000 - 20000) // PASSIVE_PORTS) * PASSIVE_PORTS
    return first, first + PASSIVE_PORTS - 1


def start_server(base: Path, *, tls: bool = False) -> FtpServer:
    """Start an FTP (or explicit FTPS) server process on 127.0.0.1 and return once it greets clients."""
    base.mkdir(parents=True, exist_ok=True)
    root = base / "root"
    root.mkdir()
    ready = base / "ready.json"
    password = secrets.token_urlsafe(16)
    passive = _passive_range()
    command = [
        sys.executable,
        __file__,
        "--root",
        str(root),
        "--ready",
        str(ready),
        "--parent",
        str(os.getpid()),
        "--passive-ports",
        f"{passive[0]}-{passive[1]}",
    ]
    ca_file = None
    if tls:
        ca_file, cert_file, key_file = make_certificate(base)
        command += ["--certfile", str(cert_file), "--keyfile", str(key_file)]
    log = open(base / "server.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        command,
        env={**os.environ, PASSWORD_ENV: password},  # not on the command line: ps would show it
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"FTP server exited early:\n{(base / 'server.log').read_text(errors='replace')}")
        if time.monotonic() > deadline:
            stop_process(process, STOP_TIMEOUT)
            raise TimeoutError(f"FTP server not ready within {START_TIMEOUT}s")
        if ready.exists():
            port = int(json.loads(ready.read_text())["port"])
            try:
                probe = ftplib.FTP(timeout=2)
                welcome = probe.connect("127.0.0.1", port)
                probe.close()
                if welcome.startswith("220"):
                    break
            except (OSError, ftplib.Error):
                pass
        time.sleep(0.05)  # polling interval
    return FtpServer("127.0.0.1", port, LOGIN, password, root, tls, ca_file, process, passive_ports=passive)


def _serve(root: Path, ready: Path, parent: int, passive: str, certfile: str | None, keyfile: str | None) -> None:
    """The server process: pyftpdlib on an OS-chosen port; exits on SIGTERM or when its parent is gone."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(LOGIN, os.environ[PASSWORD_ENV], str(root), perm="elradfmwMT")
    handler: type[FTPHandler]
    if certfile:

        class Handler(TLS_FTPHandler):
            pass

        Handler.certfile = certfile
        Handler.keyfile = keyfile
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        handler = Handler
    else:

        class PlainHandler(FTPHandler):
            pass

        handler = PlainHandler
    first, last = (int(part) for part in passive.split("-"))
    handler.authorizer = authorizer
    handler.passive_ports = range(first, last + 1)
    handler.permit_foreign_addresses = False
    handler.banner = "contactsync test FTP server ready"
    handler.auth_failed_timeout = 0.1  # pyftpdlib waits 3 s before answering a wrong password

    server = FTPServer(("127.0.0.1", 0), handler)
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"serving {'FTPS' if certfile else 'FTP'} on 127.0.0.1:{server.address[1]}, pid {os.getpid()}", flush=True)
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"port": server.address[1], "pid": os.getpid()}))
    tmp.rename(ready)
    try:
        while not stop and os.getppid() == parent:
            server.ioloop.loop(timeout=0.5, blocking=False)  # one poll; serve_forever() would log each time
    finally:
        server.close_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Test FTP/FTPS server serving one folder to one user.")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True, help="exit when this process is gone")
    parser.add_argument("--passive-ports", required=True, help="FIRST-LAST")
    parser.add_argument("--certfile", help="serve explicit FTPS with this certificate")
    parser.add_argument("--keyfile")
    arguments = parser.parse_args()
    _serve(
        arguments.root,
        arguments.ready,
        arguments.parent,
        arguments.passive_ports,
        arguments.certfile,
        arguments.keyfile,
    )
else:
    import pytest

    @pytest.fixture(scope="session")
    def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
        """One real FTP server per test process (each xdist worker gets its own, on its own port)."""
        server = start_server(tmp_path_factory.mktemp("ftp"))
        try:
            yield server
        finally:
            stop_process(server.process, STOP_TIMEOUT)

    @pytest.fixture(scope="session")
    def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
        """One real explicit-FTPS server per test process; see the module docstring for trusting its CA."""
        server = start_server(tmp_path_factory.mktemp("ftps"), tls=True)
        try:
            yield server
        finally:
            stop_process(server.process, STOP_TIMEOUT)

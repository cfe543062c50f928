"""pytest fixture for a real SFTP server on 127.0.0.1: OpenSSH's sshd (Debian's package, no Docker).

``sftp_server`` (session): one ``/usr/sbin/sshd -D -e -f <own sshd_config>`` per pytest(-xdist)
worker, on its own port, with its own config folder (made by this module, removed at the end)
holding a fresh ed25519 host key, a client key pair and the ``authorized_keys`` file. The server only
does SFTP (``ForceCommand internal-sftp``), only for the test user, by public key or by password.

Password logins without PAM need a real account with a hash in ``/etc/shadow``: the fixture creates
the system user ``contactsync-sftp`` (shell ``/usr/sbin/nologin``, home ``/home/contactsync-sftp``)
if it is missing and sets its password with ``chpasswd``. The password is a fixed test one
(:data:`PASSWORD`), not one per session: every xdist worker shares the account, so a per-session
password would lock the other workers out. That needs root; without root the fixture skips. The
account stays, like the ``postgres`` one. sshd itself is installed by ``scripts/install-servers.sh``.

Each session gets its own folder under the user's home (owned by the user, removed at the end); the
test process (root) writes there with :class:`~servers.ftp.RemoteFolder`'s helpers, which chown what
they write to the user, so the client can read, rename and delete it. No chroot: the client sees the
folder under its absolute path, :attr:`SftpServer.remote_root`.

The server is stopped by its PID (SIGTERM, then SIGKILL), and gets SIGTERM too if the test process
dies first (``PR_SET_PDEATHSIG``), so a killed run leaves no listening sshd behind.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from servers.ftp import RemoteFolder
from servers.processes import free_port, log_tail, stop_process

SSHD = "/usr/sbin/sshd"
USER = "contactsync-sftp"
HOME = Path("/home") / USER
PASSWORD = "contactsync-sftp-test-only"  # noqa: S105 - a test account's; see the module docstring
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

Auth = Literal["key_file", "private_key", "password"]


@dataclass
class SftpServer(RemoteFolder):
    """A running sshd, the credentials of its one user, and that user's folder for this session."""

    host: str
    port: int
    username: str
    password: str
    private_key_path: Path  # the client's ed25519 key (OpenSSH format, no passphrase)
    host_key_public: str  # "ssh-ed25519 AAAA..."
    known_hosts_line: str  # "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
    root: Path  # the session's folder on disk, owned by the user
    remote_root: str  # the same folder as the client names it (absolute: no chroot)
    owner: tuple[int, int] | None
    base_dir: Path = field(repr=False)  # sshd_config, keys, pid file, log
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_file(self) -> Path:
        return self.base_dir / "sshd.log"

    @property
    def known_hosts_file(self) -> Path:
        """A known_hosts file holding :attr:`known_hosts_line` (for ssh/sftp or the async hook's ``known_hosts``)."""
        return self.base_dir / "known_hosts"

    def airflow_connection(self, *, auth: Auth = "key_file", **extra: Any) -> str:
        """The Airflow connection (JSON form) for the sftp provider's ``SFTPHook``.

        :param auth: ``key_file`` (the ``key_file`` extra: a path), ``private_key`` (the key's text in
            the ``private_key`` extra) or ``password`` (the connection's password).
        :param extra: extras to add or override; ``None`` removes one (``host_key=None`` leaves the
            hook to ``~/.ssh/known_hosts``, where this server is unknown).

        By default the host key is verified against ``host_key`` (``ssh-ed25519 AAAA...``), and
        ``look_for_keys`` is off so keys in ``~/.ssh`` are never tried.
        """
        extras: dict[str, Any] = {"host_key": self.host_key_public, "look_for_keys": False, "conn_timeout": 10}
        conn: dict[str, Any] = {"conn_type": "sftp", "host": self.host, "port": self.port, "login": self.username}
        if auth == "key_file":
            extras["key_file"] = str(self.private_key_path)
        elif auth == "private_key":
            extras["private_key"] = self.private_key_path.read_text()
        elif auth == "password":
            conn["password"] = self.password
        else:
            raise ValueError(f"unknown auth {auth!r}")
        extras.update(extra)
        conn["extra"] = {name: value for name, value in extras.items() if value is not None}
        return json.dumps(conn)

    def stop(self) -> None:
        """Stop sshd by its PID (SIGTERM, then SIGKILL), then remove the session's folders."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SftpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NotRoot(RuntimeError):
    """The SFTP test server needs root (a system user, its password, sshd's privilege separation)."""


def ensure_user() -> pwd.struct_passwd:
    """Create the test user if missing and (re)set its password; serialised across xdist workers."""
    if os.geteuid() != 0:
        raise NotRoot("the SFTP test server needs root: it creates the system user contactsync-sftp")
    with open(Path(tempfile.gettempdir()) / "contactsync-sftp-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--create-home",
                    "--home-dir",
                    str(HOME),
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "contactsync SFTP tests",
                    USER,
                ],
                check=True,
                capture_output=True,
            )
        # Always: a locked account ("!" in /etc/shadow) is refused by sshd, keys included.
        subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n".encode(), check=True, capture_output=True)
        account = pwd.getpwnam(USER)
        home = Path(account.pw_dir)
        if not home.is_dir():
            home.mkdir(mode=0o750, parents=True)
            os.chown(home, account.pw_uid, account.pw_gid)
        return account


def _keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` / ``path.pub`` (no passphrase); returns ``"ssh-ed25519 AAAA..."``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    key_type, key_data = path.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {key_data}"


def _sshd_config(base: Path, port: int) -> str:
    return "\n".join(
        [
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {base / 'ssh_host_ed25519_key'}",
            f"PidFile {base / 'sshd.pid'}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}",
            f"AllowUsers {USER}",
            "UsePAM no",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "UseDNS no",
            "PrintMotd no",
            "MaxStartups 50:30:100",
            "LogLevel VERBOSE",
            "",
        ]
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(*, attempts: int = 5) -> SftpServer:
    """Start sshd on 127.0.0.1 with its own keys and config; return once it sends its SSH banner."""
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} is missing: run `bash scripts/install-servers.sh`")
    account = ensure_user()
    # sshd's privilege separation needs this empty root-owned folder (the Debian service makes it at boot).
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    # Not under pytest's tmp_path: its parents are root-only (0700), and sshd reads authorized_keys as the user.
    base = Path(tempfile.mkdtemp(prefix="contactsync-sshd-"))
    root = Path(tempfile.mkdtemp(prefix=f"session-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-", dir=HOME))
    try:
        base.chmod(0o711)
        os.chown(root, account.pw_uid, account.pw_gid)
        root.chmod(0o775)
        host_key_public = _keygen(base / "ssh_host_ed25519_key", "contactsync-test-host")
        client_public = _keygen(base / "client_ed25519", "contactsync-test-client")
        authorized = base / "authorized_keys"
        authorized.write_text(client_public + "\n")
        authorized.chmod(0o644)
        for _ in range(attempts):
            port = free_port()
            server = SftpServer(
                host="127.0.0.1",
                port=port,
                username=USER,
                password=PASSWORD,
                private_key_path=base / "client_ed25519",
                host_key_public=host_key_public,
                known_hosts_line=f"[127.0.0.1]:{port} {host_key_public}",
                root=root,
                remote_root=str(root),
                owner=(account.pw_uid, account.pw_gid),
                base_dir=base,
            )
            server.known_hosts_file.write_text(server.known_hosts_line + "\n")
            config = base / "sshd_config"
            config.write_text(_sshd_config(base, port))
            log = open(server.log_file, "ab")  # noqa: SIM115 - the server owns it while it runs
            try:
                server.process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads are started around it
                )
            finally:
                log.close()
            if _wait_until_ready(server):
                return server
            server.process = None  # exited (port taken): try another port
        raise RuntimeError(f"sshd did not start; log:\n{log_tail(base / 'sshd.log')}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        raise


def _banner(port: int) -> bytes:
    """The first line the server sends on a new connection ("SSH-2.0-OpenSSH_..."), or b"" if none yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\n", 1)[0]
    except OSError:
        return b""


def _wait_until_ready(server: SftpServer) -> bool:
    """Poll until the SSH banner arrives (True) or sshd exits (False); fail past the deadline."""
    assert server.process is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if "Bind to port" in log_tail(server.log_file) or "Cannot bind" in log_tail(server.log_file):
                return False
            raise RuntimeError(f"sshd exited with code {server.process.returncode}:\n{log_tail(server.log_file)}")
        if _banner(server.port).startswith(b"SSH-2.0-"):
            return True
        time.sleep(0.05)  # polling interval, not a wait for a guessed duration
    stop_process(server.process, STOP_TIMEOUT)
    raise RuntimeError(f"sshd sent no banner in {START_TIMEOUT:.0f} s:\n{log_tail(server.log_file)}")


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SftpServer]:
    """One sshd per test session (per xdist worker), stopped at the end; skips when not root."""
    try:
        server = start_server()
    except NotRoot as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()

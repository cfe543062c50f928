"""The SFTP, FTP and FTPS test servers work with the real provider hooks (apache-airflow-providers-sftp/ftp).

These tests pin what the file-source feature relies on: how each hook's connection must look to
reach the fixtures (see ``tests/servers/sftp.py`` and ``tests/servers/ftp.py``), that SFTP host keys
are really verified, that FTPS really runs TLS and verifies the certificate, and that half-written
files and chosen mtimes show up on the wire as a client would see them.
"""

from __future__ import annotations

import datetime as dt
import ftplib
import io
import ssl
import uuid
from pathlib import Path

import paramiko
import pytest
from servers.ftp import FtpServer
from servers.sftp import SftpServer

CSV = b"email,first_name\nada@example.com,Ada\n"
MTIME = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


def _conn_id(monkeypatch: pytest.MonkeyPatch, uri_json: str) -> str:
    conn_id = f"test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri_json)
    return conn_id


@pytest.fixture
def no_ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty HOME: no ~/.ssh/known_hosts, config or keys of the machine's can change the outcome."""
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def sftp(sftp_server: SftpServer, no_ssh_home: None) -> SftpServer:
    sftp_server.clear()
    return sftp_server


@pytest.fixture
def ftp(ftp_server: FtpServer) -> FtpServer:
    ftp_server.clear()
    return ftp_server


@pytest.fixture
def ftps(ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch) -> FtpServer:
    ftps_server.clear()
    # FTPSHook sets this class attribute to the connection's port; put it back after each test.
    monkeypatch.setattr(ftplib.FTP_TLS, "port", ftplib.FTP_TLS.port)
    return ftps_server


# --- SFTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["key_file", "private_key", "password"])
def test_sftp_hook_lists_and_reads_with_verified_host_key(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: str
) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    sftp.put("incoming/contacts.csv", CSV)
    sftp.put("incoming/more.csv", b"email\nbob@example.com\n")
    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection(auth=auth)))  # type: ignore[arg-type]
    assert hook.host_key is not None and not hook.no_host_key_check

    assert hook.list_directory(sftp.remote_path("incoming")) == ["contacts.csv", "more.csv"]
    local = tmp_path / "contacts.csv"
    hook.retrieve_file(sftp.remote_path("incoming/contacts.csv"), str(local))
    assert local.read_bytes() == CSV
    buffer = io.BytesIO()
    hook.retrieve_file(sftp.remote_path("incoming/more.csv"), buffer)  # type: ignore[arg-type]
    assert buffer.getvalue() == b"email\nbob@example.com\n"


def test_sftp_user_can_rename_and_delete_what_the_test_put(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files the test process (root) writes belong to the SFTP user: a source can move them when done."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    sftp.put("in/a.csv", CSV)
    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection()))
    with hook.get_managed_conn() as client:
        client.mkdir(sftp.remote_path("done"))
        client.rename(sftp.remote_path("in/a.csv"), sftp.remote_path("done/a.csv"))
        client.remove(sftp.remote_path("done/a.csv"))
    assert sftp.path("in").is_dir() and list(sftp.path("in").iterdir()) == []
    assert not sftp.path("done/a.csv").exists()


def test_sftp_partial_file_then_rest_and_mtime(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection()))
    sftp.put_partial("big.csv", CSV[:10])
    with hook.get_managed_conn() as client:
        assert client.stat(sftp.remote_path("big.csv")).st_size == 10
        sftp.append("big.csv", CSV[10:])
        assert client.stat(sftp.remote_path("big.csv")).st_size == len(CSV)
        sftp.touch("big.csv", MTIME)
        assert client.stat(sftp.remote_path("big.csv")).st_mtime == int(MTIME.timestamp())
        with client.open(sftp.remote_path("big.csv")) as handle:
            assert handle.read() == CSV
    sftp.put("dated.csv", CSV, mtime=MTIME.timestamp())
    attrs = {a.filename: a for a in hook.list_directory_with_attr(sftp.remote_root)}
    assert attrs["dated.csv"].st_mtime == int(MTIME.timestamp())
    assert attrs["dated.csv"].st_size == len(CSV)


def test_sftp_wrong_host_key_is_refused(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    other = paramiko.Ed25519Key.from_private_key_file(str(sftp.private_key_path))  # an ed25519 key, not the host's
    wrong = f"{other.get_name()} {other.get_base64()}"
    assert wrong != sftp.host_key_public
    sftp.put("secret.csv", CSV)
    # conn_retry_attempts=1: the hook otherwise retries a refused host key twice, 3-5 s apart.
    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection(host_key=wrong)), conn_retry_attempts=1)
    with pytest.raises(paramiko.BadHostKeyException) as refused:
        hook.list_directory(sftp.remote_root)
    assert refused.value.expected_key.get_base64() == other.get_base64()
    assert f"{refused.value.key.get_name()} {refused.value.key.get_base64()}" == sftp.host_key_public


def test_sftp_unknown_host_is_refused(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``host_key`` and no ``no_host_key_check``: the hook checks ~/.ssh/known_hosts, where the server is not."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection(host_key=None)), conn_retry_attempts=1)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        hook.list_directory(sftp.remote_root)


def test_sftp_known_hosts_file_is_what_the_hook_trusts(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``known_hosts_line`` in ~/.ssh/known_hosts works too, without the ``host_key`` extra."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    home = Path.home()
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "known_hosts").write_text(sftp.known_hosts_line + "\n")
    sftp.put("a.csv", CSV)
    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, sftp.airflow_connection(host_key=None)), conn_retry_attempts=1)
    assert hook.list_directory(sftp.remote_root) == ["a.csv"]


def test_sftp_async_hook_reads_the_same_connection(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """SFTPHookAsync (asyncssh; deferrable sensors use it) accepts the same connection, host key included."""
    import asyncio

    from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

    sftp.put("a.csv", CSV)
    hook = SFTPHookAsync(sftp_conn_id=_conn_id(monkeypatch, sftp.airflow_connection()))
    # Unlike SFTPHook.list_directory, the async one lists "." and ".." too.
    assert sorted(asyncio.run(hook.list_directory(sftp.remote_root)) or []) == [".", "..", "a.csv"]


def test_sftp_wrong_password_is_refused(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    conn = sftp.airflow_connection(auth="password").replace(sftp.password, "not-the-password")
    hook = SFTPHook(ssh_conn_id=_conn_id(monkeypatch, conn), conn_retry_attempts=1)
    with pytest.raises(paramiko.AuthenticationException):
        hook.list_directory(sftp.remote_root)


# --- FTP ----------------------------------------------------------------------------------------


def test_ftp_hook_lists_and_reads(ftp: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.ftp.hooks.ftp import FTPHook

    ftp.put("incoming/contacts.csv", CSV)
    ftp.put("incoming/more.csv", b"email\nbob@example.com\n")
    with FTPHook(ftp_conn_id=_conn_id(monkeypatch, ftp.airflow_connection())) as hook:
        assert sorted(hook.list_directory(ftp.remote_path("incoming"))) == ["contacts.csv", "more.csv"]
        buffer = io.BytesIO()
        hook.retrieve_file(ftp.remote_path("incoming/contacts.csv"), buffer)
        assert buffer.getvalue() == CSV
        listing = hook.describe_directory(ftp.remote_path("incoming"))
        assert listing["more.csv"]["type"] == "file" and listing["more.csv"]["size"] == "22"


def test_ftp_partial_file_then_rest_and_mtime(ftp: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.ftp.hooks.ftp import FTPHook

    with FTPHook(ftp_conn_id=_conn_id(monkeypatch, ftp.airflow_connection())) as hook:
        # FTPHook.get_size sends SIZE in the session's current type; a fresh session is ASCII, where
        # pyftpdlib (like ProFTPD) refuses SIZE. Binary first, as a file source has to.
        with pytest.raises(ftplib.error_perm, match="SIZE not allowed in ASCII mode"):
            hook.get_size(ftp.remote_path("missing.csv"))
        hook.get_conn().voidcmd("TYPE I")
        ftp.put_partial("big.csv", CSV[:10])
        assert hook.get_size(ftp.remote_path("big.csv")) == 10
        ftp.append("big.csv", CSV[10:])
        assert hook.get_size(ftp.remote_path("big.csv")) == len(CSV)
        ftp.touch("big.csv", MTIME)
        # MDTM is UTC; the hook returns it as a naive datetime.
        assert hook.get_mod_time(ftp.remote_path("big.csv")) == MTIME.replace(tzinfo=None)
        buffer = io.BytesIO()
        hook.retrieve_file(ftp.remote_path("big.csv"), buffer)
        assert buffer.getvalue() == CSV


def test_ftp_wrong_password_is_refused(ftp: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.ftp.hooks.ftp import FTPHook

    conn = ftp.airflow_connection().replace(ftp.password, "not-the-password")
    with pytest.raises(ftplib.error_perm, match="530"):
        FTPHook(ftp_conn_id=_conn_id(monkeypatch, conn)).get_conn()


# --- FTPS ---------------------------------------------------------------------------------------


def test_ftps_hook_lists_and_reads_over_tls(ftps: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.ftp.hooks.ftp import FTPSHook

    monkeypatch.setenv(*ftps.trust_env())
    ftps.put("incoming/contacts.csv", CSV)
    ftps.put_partial("incoming/partial.csv", CSV[:5])
    ftps.append("incoming/partial.csv", CSV[5:])
    with FTPSHook(ftp_conn_id=_conn_id(monkeypatch, ftps.airflow_connection())) as hook:
        conn = hook.get_conn()
        assert isinstance(conn.sock, ssl.SSLSocket)  # control connection
        assert sorted(hook.list_directory(ftps.remote_path("incoming"))) == ["contacts.csv", "partial.csv"]
        for name in ("contacts.csv", "partial.csv"):
            buffer = io.BytesIO()
            hook.retrieve_file(ftps.remote_path(f"incoming/{name}"), buffer)
            assert buffer.getvalue() == CSV
        ftps.touch("incoming/contacts.csv", MTIME)
        assert hook.get_mod_time(ftps.remote_path("incoming/contacts.csv")) == MTIME.replace(tzinfo=None)


def test_ftps_hook_verifies_the_certificate(ftps: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the test CA trusted (SSL_CERT_FILE), FTPSHook refuses the server: verification is on."""
    from airflow.providers.ftp.hooks.ftp import FTPSHook

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        FTPSHook(ftp_conn_id=_conn_id(monkeypatch, ftps.airflow_connection())).get_conn()


def test_ftps_server_requires_tls(ftps: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain FTPHook cannot log in to the FTPS server: TLS is required, not offered."""
    from airflow.providers.ftp.hooks.ftp import FTPHook

    with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required"):
        FTPHook(ftp_conn_id=_conn_id(monkeypatch, ftps.airflow_connection())).get_conn()


def test_ftps_client_helper(ftps: FtpServer) -> None:
    ftps.put("x.csv", CSV)
    client = ftps.client()
    try:
        buffer = io.BytesIO()
        client.retrbinary("RETR /x.csv", buffer.write)
        assert buffer.getvalue() == CSV
    finally:
        client.quit()

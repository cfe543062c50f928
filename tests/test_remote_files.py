"""SftpFileSystem and FtpFileSystem against real servers (OpenSSH's sshd, pyftpdlib FTP and FTPS).

Listing (patterns, recursion, exclusions, sizes and times), streaming reads in constant memory,
move and delete, host-key verification by default, both SSH auth kinds, and that neither a pattern
nor a symlink ever yields a path outside the folder.
"""

from __future__ import annotations

import datetime as dt
import ftplib
import hashlib
import io
import json
import logging
import os
import posixpath
import ssl
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from servers.ftp import FtpServer
from servers.sftp import SftpServer

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.models import FileSource
from airflow_provider_contactsync.sources.base import ReadWindow
from airflow_provider_contactsync.sources.files import FileInfo, FilesSource, LocalFileSystem
from airflow_provider_contactsync.sources.remote_files import (
    FtpFileSystem,
    HostKeyError,
    SftpFileSystem,
    filesystem_for,
)

UTC = dt.timezone.utc
OLD = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
NEW = dt.datetime(2024, 6, 1, 0, 0, 0, tzinfo=UTC)
BIG = 5 * 2 * 1024 * 1024 + 12345  # several SFTP read-ahead windows, not a whole number of blocks


def set_connection(monkeypatch: pytest.MonkeyPatch, connection: str, prefix: str = "remote") -> str:
    """Define an Airflow connection in the environment (JSON form) under a fresh id."""
    conn_id = f"{prefix}_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
    return conn_id


def names(found: list[FileInfo], root: str) -> list[str]:
    return [posixpath.relpath(info.path, root) for info in found]


def read_in_chunks(stream: io.BufferedReader, size: int = 50_000) -> bytes:
    digest = hashlib.sha256()
    while chunk := stream.read(size):
        digest.update(chunk)
    return digest.digest()


def connections(port: int) -> set[int]:
    """Local ports of this process's open TCP connections to a server port."""
    return {
        conn.laddr.port
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    }


# --- SFTP ---------------------------------------------------------------------------------------


@pytest.fixture
def sftp(sftp_server: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SftpServer:
    """The server, emptied; HOME is an empty folder so the machine's ~/.ssh cannot change outcomes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sftp_server.clear()
    return sftp_server


@pytest.fixture
def sftp_fs(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SftpFileSystem]:
    with SftpFileSystem(set_connection(monkeypatch, sftp.airflow_connection())) as fs:
        yield fs


def test_sftp_lists_files_matching_the_pattern_with_size_and_mtime(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("contacts_1.csv", b"a,b\n1,2\n", mtime=OLD)
    sftp.put("contacts_2.csv", b"a,b\n", mtime=NEW)
    sftp.put("notes.txt", b"not csv")
    sftp.put("sub/contacts_3.csv", b"deeper")

    found = sftp_fs.list_files(sftp.remote_root, "contacts_*.csv")

    assert found == [
        FileInfo(sftp.remote_path("contacts_1.csv"), 8, OLD.timestamp()),
        FileInfo(sftp.remote_path("contacts_2.csv"), 4, NEW.timestamp()),
    ]


def test_sftp_login_folder_and_relative_folders(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("in/a.csv", b"x")
    session = posixpath.basename(sftp.remote_root)  # the session folder is in the user's home

    assert names(sftp_fs.list_files(f"{session}/in", "*.csv"), sftp.remote_path("in")) == ["a.csv"]
    at_home = sftp_fs.list_files("", "*", recursive=True, exclude=[])
    assert sftp.remote_path("in/a.csv") in [info.path for info in at_home]


def test_sftp_recursive_listing_skips_excluded_folders(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    for path in ("a.csv", "x/b.csv", "x/y/c.csv", "archive/d.csv", "old/e.csv", "x/f.txt"):
        sftp.put(path, b"1")
    root = sftp.remote_root

    assert names(sftp_fs.list_files(root, "*.csv"), root) == ["a.csv"]
    recursive = sftp_fs.list_files(root, "*.csv", recursive=True, exclude=["archive", sftp.remote_path("old")])
    assert names(recursive, root) == ["a.csv", "x/b.csv", "x/y/c.csv"]
    # A pattern with '/' is matched against the relative path (as for local folders: '*' crosses '/').
    assert names(sftp_fs.list_files(root, "x/*.csv"), root) == ["x/b.csv", "x/y/c.csv"]
    assert names(sftp_fs.list_files(root, "x/y/*.csv"), root) == ["x/y/c.csv"]
    assert names(sftp_fs.list_files(root, "*/*.csv", exclude=["archive", "x"]), root) == ["old/e.csv"]


def test_sftp_missing_folder_raises_file_not_found(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("file.csv", b"1")
    with pytest.raises(FileNotFoundError, match="no folder"):
        sftp_fs.list_files(sftp.remote_path("nowhere"), "*.csv")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        sftp_fs.list_files(sftp.remote_path("file.csv"), "*.csv")


def test_sftp_streams_a_large_file_exactly_in_bounded_memory(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    data = os.urandom(BIG)
    sftp.put("big.bin", data)
    assert len(sftp_fs.list_files(sftp.remote_root, "*")) == 1  # connected (and imports done) before measuring

    tracemalloc.start()
    try:
        with sftp_fs.open(sftp.remote_path("big.bin")) as stream:
            digest = read_in_chunks(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest == hashlib.sha256(data).digest()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while streaming {BIG}"
    with sftp_fs.open(sftp.remote_path("big.bin")) as stream:
        assert stream.read() == data


def test_sftp_reads_small_empty_and_growing_files(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("empty.csv", b"")
    sftp.put("growing.csv", b"head\n")
    with sftp_fs.open(sftp.remote_path("empty.csv")) as stream:
        assert stream.read() == b""
    with sftp_fs.open(sftp.remote_path("growing.csv")) as stream:
        sftp.append("growing.csv", b"tail\n")  # written after the open: still read to the end
        assert stream.read() == b"head\ntail\n"
    with pytest.raises(FileNotFoundError):
        sftp_fs.open(sftp.remote_path("missing.csv"))


def test_sftp_a_reader_may_stop_early(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    data = os.urandom(BIG)
    sftp.put("big.bin", data)
    sftp.put("small.csv", b"small")

    with sftp_fs.open(sftp.remote_path("big.bin")) as stream:
        assert stream.read(100_000) == data[:100_000]

    assert names(sftp_fs.list_files(sftp.remote_root, "*"), sftp.remote_root) == ["big.bin", "small.csv"]
    with sftp_fs.open(sftp.remote_path("small.csv")) as stream:
        assert stream.read() == b"small"


def test_sftp_move_creates_the_folder_and_never_overwrites(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("in/contacts.csv", b"first")
    sftp.put("in/contacts.csv.tmp", b"x")

    moved = sftp_fs.move(sftp.remote_path("in/contacts.csv"), sftp.remote_path("archive/2024"))
    assert moved == sftp.remote_path("archive/2024/contacts.csv")
    assert sftp.read("archive/2024/contacts.csv") == b"first"
    assert not sftp.path("in/contacts.csv").exists()

    sftp.put("in/contacts.csv", b"second")
    again = sftp_fs.move(sftp.remote_path("in/contacts.csv"), sftp.remote_path("archive/2024"))
    assert again != moved
    assert posixpath.basename(again).startswith("contacts.") and again.endswith("Z.csv")
    assert sftp.read("archive/2024/contacts.csv") == b"first"
    assert sftp.path(posixpath.relpath(again, sftp.remote_root)).read_bytes() == b"second"

    sftp_fs.delete(sftp.remote_path("in/contacts.csv.tmp"))
    assert not sftp.path("in/contacts.csv.tmp").exists()
    with pytest.raises(FileNotFoundError):
        sftp_fs.delete(sftp.remote_path("in/contacts.csv.tmp"))


def test_sftp_symlinks_never_lead_outside_the_folder(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("secret.csv", b"outside the folder")
    sftp.put("drop/real.csv", b"inside")
    sftp.put("drop/sub/deep.csv", b"deep")
    drop = sftp.path("drop")
    os.symlink("real.csv", drop / "alias.csv")  # to a file inside: followed
    os.symlink("../secret.csv", drop / "escape.csv")  # to a file outside: never listed
    os.symlink("/etc/passwd", drop / "passwd.csv")
    os.symlink("missing.csv", drop / "dangling.csv")
    os.symlink("loop.csv", drop / "loop.csv")
    os.symlink("sub", drop / "linked")  # folders behind links are not walked
    os.symlink("..", drop / "up")
    folder = sftp.remote_path("drop")

    found = sftp_fs.list_files(folder, "*.csv", recursive=True)

    assert names(found, folder) == ["alias.csv", "real.csv", "sub/deep.csv"]
    assert found[0].size == len(b"inside")
    with sftp_fs.open(found[0].path) as stream:
        assert stream.read() == b"inside"
    for pattern in ("../*.csv", "../secret.csv", "*/../../secret.csv", "/etc/*", "up/*.csv", "linked/*.csv"):
        assert sftp_fs.list_files(folder, pattern, recursive=True) == [], pattern


@pytest.mark.parametrize("auth", ["key_file", "private_key", "password"])
def test_sftp_password_and_key_auth(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, auth: Any) -> None:
    sftp.put("a.csv", b"hello")
    with SftpFileSystem(set_connection(monkeypatch, sftp.airflow_connection(auth=auth))) as fs:
        [info] = fs.list_files(sftp.remote_root, "*.csv")
        with fs.open(info.path) as stream:
            assert stream.read() == b"hello"


def test_sftp_unknown_host_key_is_refused_by_default(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = set_connection(monkeypatch, sftp.airflow_connection(host_key=None))
    with SftpFileSystem(conn_id) as fs, pytest.raises(HostKeyError) as refused:
        fs.list_files(sftp.remote_root, "*")
    assert isinstance(refused.value, ConfigurationError)
    message = str(refused.value)
    assert conn_id in message and f"{sftp.host}:{sftp.port}" in message and '"host_key"' in message


def test_sftp_allow_host_key_change_does_not_turn_verification_off(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left to itself the hook accepts any key of a host missing from known_hosts with this extra.
    conn_id = set_connection(monkeypatch, sftp.airflow_connection(host_key=None, allow_host_key_change="true"))
    with SftpFileSystem(conn_id) as fs, pytest.raises(HostKeyError):
        fs.list_files(sftp.remote_root, "*")


def test_sftp_host_key_from_known_hosts_is_accepted(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir()
    (ssh / "known_hosts").write_text(sftp.known_hosts_line + "\n")
    sftp.put("a.csv", b"1")
    with SftpFileSystem(set_connection(monkeypatch, sftp.airflow_connection(host_key=None))) as fs:
        assert names(fs.list_files(sftp.remote_root, "*.csv"), sftp.remote_root) == ["a.csv"]


@pytest.mark.slow  # the hook retries the refused connection (3 attempts, 3-5 s apart)
def test_sftp_a_different_host_key_is_refused(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    other_key = " ".join(Path(f"{sftp.private_key_path}.pub").read_text().split()[:2])  # the client's key
    conn_id = set_connection(monkeypatch, sftp.airflow_connection(host_key=other_key))
    with SftpFileSystem(conn_id) as fs, pytest.raises(HostKeyError, match="presented the host key") as refused:
        fs.list_files(sftp.remote_root, "*")
    assert conn_id in str(refused.value)


def test_sftp_no_host_key_check_opt_out_is_honoured_and_warned_once(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = set_connection(monkeypatch, sftp.airflow_connection(host_key=None, no_host_key_check="true"))
    sftp.put("a.csv", b"1")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_contactsync.sources.remote_files"):
        for _ in range(2):
            with SftpFileSystem(conn_id) as fs:
                assert len(fs.list_files(sftp.remote_root, "*.csv")) == 1
    ours = [r for r in caplog.records if r.name.endswith("remote_files") and "no_host_key_check" in r.getMessage()]
    assert len(ours) == 1 and conn_id in ours[0].getMessage()


def test_sftp_close_ends_the_connection_and_the_next_call_reconnects(sftp: SftpServer, sftp_fs: SftpFileSystem) -> None:
    sftp.put("a.csv", b"1")
    before = connections(sftp.port)  # other tests' refused connections may linger until sshd drops them
    assert len(sftp_fs.list_files(sftp.remote_root, "*.csv")) == 1
    ours = connections(sftp.port) - before
    assert len(ours) == 1
    sftp_fs.close()
    assert not connections(sftp.port) & ours

    assert len(sftp_fs.list_files(sftp.remote_root, "*.csv")) == 1
    again = connections(sftp.port) - before
    assert len(again) == 1
    with sftp_fs:
        pass
    assert not connections(sftp.port) & again


def test_files_source_reads_rows_over_sftp(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sftp.put("drop/b.csv", b"id,email\n2,b@example.com\n", mtime=NEW)
    sftp.put("drop/a.csv", b"id,email\n1,a@example.com\n", mtime=OLD)
    conn_id = set_connection(monkeypatch, sftp.airflow_connection())
    spec = FileSource.model_validate(
        {
            "type": "sftp",
            "name": "drop",
            "conn_id": conn_id,
            "path": sftp.remote_path("drop"),
            "fields": ["id", "email"],
        }
    )
    source = FilesSource(spec)  # its file system comes from filesystem_for
    assert isinstance(source.filesystem, SftpFileSystem)
    with source.filesystem:
        rows = [row for chunk in source.read(ReadWindow(), chunk_size=10) for row in chunk]
    assert [row["email"] for row in rows] == ["a@example.com", "b@example.com"]  # oldest file first


# --- FTP and FTPS -------------------------------------------------------------------------------


@pytest.fixture(params=["ftp", "ftps"])
def ftp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FtpServer:
    """Each FTP test runs on plain FTP and on explicit FTPS (TLS required on control and data)."""
    server: FtpServer = request.getfixturevalue(f"{request.param}_server")
    if server.tls:
        monkeypatch.setenv(*server.trust_env())
        monkeypatch.setattr(ftplib.FTP_TLS, "port", ftplib.FTP_TLS.port)  # FTPSHook sets it process-wide
    server.clear()
    return server


@pytest.fixture
def ftp_fs(ftp: FtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FtpFileSystem]:
    with FtpFileSystem(set_connection(monkeypatch, ftp.airflow_connection()), tls=ftp.tls) as fs:
        yield fs


@pytest.fixture(params=["mlsd", "nlst"])
def listing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLSD as the server offers it, or the NLST + SIZE + MDTM fallback of servers without it (vsftpd)."""
    if request.param == "nlst":
        monkeypatch.setattr(FtpFileSystem, "_supports_mlsd", lambda self, conn: False)
    return str(request.param)


def test_ftp_lists_files_with_size_and_mtime(ftp: FtpServer, ftp_fs: FtpFileSystem, listing: str) -> None:
    ftp.put("contacts_1.csv", b"a,b\n1,2\n", mtime=OLD)
    ftp.put("contacts_2.csv", b"a,b\n", mtime=NEW)
    ftp.put("notes.txt", b"not csv")
    ftp.put("contacts_dir.csv/inner.csv", b"a folder named like a file")

    assert ftp_fs.list_files("", "contacts_*.csv") == [
        FileInfo("/contacts_1.csv", 8, OLD.timestamp()),
        FileInfo("/contacts_2.csv", 4, NEW.timestamp()),
    ]


def test_ftp_recursive_listing_skips_excluded_folders(ftp: FtpServer, ftp_fs: FtpFileSystem, listing: str) -> None:
    for path in ("in/a.csv", "in/x/b.csv", "in/x/y/c.csv", "in/archive/d.csv", "in/old/e.csv", "in/x/f.txt"):
        ftp.put(path, b"1")

    assert names(ftp_fs.list_files("in", "*.csv"), "/in") == ["a.csv"]
    found = ftp_fs.list_files("/in", "*.csv", recursive=True, exclude=["archive", "/in/old"])
    assert names(found, "/in") == ["a.csv", "x/b.csv", "x/y/c.csv"]
    assert names(ftp_fs.list_files("in", "x/y/*.csv"), "/in") == ["x/y/c.csv"]
    assert names(ftp_fs.list_files("in", "*/*.csv", exclude=["archive", "old"]), "/in") == ["x/b.csv", "x/y/c.csv"]
    for pattern in ("../*.csv", "../in/a.csv", "/in/*.csv"):
        assert ftp_fs.list_files("in/x", pattern, recursive=True) == [], pattern


def test_ftp_missing_folder_raises_file_not_found(ftp: FtpServer, ftp_fs: FtpFileSystem) -> None:
    ftp.put("file.csv", b"1")
    with pytest.raises(FileNotFoundError, match="no folder"):
        ftp_fs.list_files("/nowhere", "*.csv")
    with pytest.raises(FileNotFoundError):
        ftp_fs.list_files("/file.csv", "*.csv")


def test_ftp_streams_a_large_file_exactly_in_bounded_memory(ftp: FtpServer, ftp_fs: FtpFileSystem) -> None:
    data = os.urandom(BIG)
    ftp.put("big.bin", data)
    with ftp_fs.open("/big.bin") as stream:  # imports done before measuring
        assert stream.read(10) == data[:10]

    tracemalloc.start()
    try:
        with ftp_fs.open("/big.bin") as stream:
            digest = read_in_chunks(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest == hashlib.sha256(data).digest()
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while streaming {BIG}"
    with ftp_fs.open("/big.bin") as stream:
        assert stream.read() == data
    ftp.put("empty.csv", b"")
    with ftp_fs.open("/empty.csv") as stream:
        assert stream.read() == b""
    with pytest.raises(FileNotFoundError):
        ftp_fs.open("/missing.csv")


def test_ftp_a_reader_may_stop_early(ftp: FtpServer, ftp_fs: FtpFileSystem) -> None:
    data = os.urandom(BIG)
    ftp.put("big.bin", data)
    ftp.put("small.csv", b"small")
    before = connections(ftp.port)
    assert len(ftp_fs.list_files("", "*")) == 2
    listing = connections(ftp.port) - before
    assert len(listing) == 1

    with ftp_fs.open("/big.bin") as stream:
        assert stream.read(100_000) == data[:100_000]
        reading = connections(ftp.port) - before - listing
        assert len(reading) == 1  # each open file has its own control connection

    assert not connections(ftp.port) & reading
    assert names(ftp_fs.list_files("", "*"), "/") == ["big.bin", "small.csv"]
    with ftp_fs.open("/small.csv") as stream:
        assert stream.read() == b"small"
    ftp_fs.close()
    assert not connections(ftp.port) & listing


def test_ftp_move_creates_the_folder_and_never_overwrites(ftp: FtpServer, ftp_fs: FtpFileSystem) -> None:
    ftp.put("in/contacts.csv", b"first")
    ftp.put("in/contacts.csv.tmp", b"x")

    moved = ftp_fs.move("/in/contacts.csv", "archive/2024")
    assert moved == "/archive/2024/contacts.csv"
    assert ftp.read("archive/2024/contacts.csv") == b"first"
    assert not ftp.path("in/contacts.csv").exists()

    ftp.put("in/contacts.csv", b"second")
    again = ftp_fs.move("/in/contacts.csv", "/archive/2024")
    assert again != moved and again.startswith("/archive/2024/contacts.") and again.endswith("Z.csv")
    assert ftp.read("archive/2024/contacts.csv") == b"first"
    assert ftp.read(again.lstrip("/")) == b"second"

    ftp_fs.delete("/in/contacts.csv.tmp")
    assert not ftp.path("in/contacts.csv.tmp").exists()
    with pytest.raises(FileNotFoundError):
        ftp_fs.delete("/in/contacts.csv.tmp")
    with pytest.raises(FileNotFoundError):
        ftp_fs.move("/in/contacts.csv.tmp", "/archive")


def test_ftps_refuses_a_certificate_it_does_not_trust(ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ftplib.FTP_TLS, "port", ftplib.FTP_TLS.port)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with FtpFileSystem(set_connection(monkeypatch, ftps_server.airflow_connection()), tls=True) as fs:
        with pytest.raises(ssl.SSLCertVerificationError):
            fs.list_files("", "*")


def test_files_source_reads_rows_over_ftp(ftp: FtpServer, ftp_fs: FtpFileSystem) -> None:
    ftp.put("drop/b.csv", b"id,email\n2,b@example.com\n", mtime=NEW)
    ftp.put("drop/a.csv", b"id,email\n1,a@example.com\n", mtime=OLD)
    spec = FileSource.model_validate(
        {"type": "ftp", "name": "drop", "conn_id": ftp_fs.conn_id, "path": "drop", "fields": ["id", "email"]}
    )
    source = FilesSource(spec, filesystem=ftp_fs)
    rows = [row for chunk in source.read(ReadWindow(), chunk_size=10) for row in chunk]
    assert [row["email"] for row in rows] == ["a@example.com", "b@example.com"]


# --- the factory --------------------------------------------------------------------------------


def spec(kind: str, conn_id: str | None = None) -> FileSource:
    return FileSource.model_validate({"type": kind, "name": "drop", "conn_id": conn_id, "fields": ["id"]})


def test_filesystem_for_picks_the_file_system_of_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    ftp = {"conn_type": "ftp", "host": "ftp.example.com", "login": "u", "password": "p"}
    plain = set_connection(monkeypatch, json.dumps(ftp))
    tls_extra = set_connection(monkeypatch, json.dumps({**ftp, "extra": {"tls": True}}))
    ftps_type = set_connection(monkeypatch, json.dumps({**ftp, "conn_type": "ftps"}))

    assert isinstance(filesystem_for(spec("file")), LocalFileSystem)
    sftp_fs = filesystem_for(spec("sftp", "any_sftp"))
    assert isinstance(sftp_fs, SftpFileSystem) and sftp_fs.conn_id == "any_sftp"
    for conn_id, tls in ((plain, False), (tls_extra, True), (ftps_type, True)):
        fs = filesystem_for(spec("ftp", conn_id))
        assert isinstance(fs, FtpFileSystem) and (fs.conn_id, fs.tls) == (conn_id, tls)
    with pytest.raises(ConfigurationError, match="not defined"):
        filesystem_for(spec("ftp", "no_such_connection"))


# --- hostile servers: names and listings that do not decode, facts that are not numbers (issue 11) -----


def test_sftp_a_file_name_that_is_not_utf_8_is_a_clear_error_naming_the_folder(
    sftp: SftpServer, sftp_fs: SftpFileSystem
) -> None:
    sftp.put("good.csv", b"a\n1\n")
    sftp.put("caf\udce9.csv", b"a\n1\n")  # the bytes caf\xe9.csv on disk: Latin-1, not UTF-8
    with pytest.raises(ConfigurationError, match=r"is not valid UTF-8 \(.*caf\\xe9\.csv.*\): SFTP cannot list"):
        sftp_fs.list_files(sftp.remote_root, "*.csv")


class _FakeData:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __enter__(self) -> _FakeData:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.payload)

    def close(self) -> None:
        pass


class _FakeFtp:
    encoding = "utf-8"

    def __init__(self, listing: bytes) -> None:
        self.listing = listing

    def transfercmd(self, command: str) -> _FakeData:
        return _FakeData(self.listing)

    def voidresp(self) -> str:
        return "226"


def test_ftp_listing_lines_that_do_not_decode_keep_their_bytes() -> None:
    from airflow_provider_contactsync.sources.remote_files import _listing, _mlsd_entry

    conn = _FakeFtp(
        b"type=file;size=3;modify=20240101000000; caf\xe9.csv\r\n"
        b"type=file;size=x;modify=soon; odd.csv\r\n"
        b"type=file;size=4;modify=20240101000000; ok.csv\r\n"
    )
    lines = _listing(conn, "MLSD /")  # type: ignore[arg-type]
    entries = [_mlsd_entry(line) for line in lines]
    assert [e.name for e in entries if e] == ["caf\udce9.csv", "odd.csv", "ok.csv"]
    assert entries[1] is not None and entries[1].kind == ""  # facts that are not numbers: SIZE and MDTM ask
    assert entries[2] is not None and (entries[2].kind, entries[2].size) == ("file", 4)


def test_ftp_a_file_name_the_session_cannot_send_fails_that_file_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs = FtpFileSystem("nowhere")
    quits: list[Any] = []
    monkeypatch.setattr(fs, "_new_hook", lambda: "hook")
    monkeypatch.setattr(fs, "_connect", lambda hook: _FakeFtp(b""))
    monkeypatch.setattr("airflow_provider_contactsync.sources.remote_files._quit", quits.append)
    with pytest.raises(ConfigurationError) as info:
        fs.open("/in/caf\udce9.csv")
    assert str(info.value) == (
        "/in/caf\\xe9.csv: the file name is not valid utf-8, so FTP cannot ask for it: rename the file"
    )
    assert quits == ["hook"]  # the connection opened for it is closed

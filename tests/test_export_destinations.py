"""Export destinations (issue 16) against real servers: OpenSSH's sshd, pyftpdlib FTP and FTPS, moto's S3
server, a local folder, bqemulator.

Each destination delivers a packed file that is read back byte for byte from the server's side; a
two-step transfer whose upload is corrupted on the way (the server's temporary file changed between
upload and check, or the bytes sent altered) fails with TransferVerificationError, leaves no final
file and an earlier final file as it was; confirmation files are read back in JSON and key=value.
"""

from __future__ import annotations

import datetime as dt
import ftplib
import gzip
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.bigquery import BigQueryEmulator
from servers.ftp import FtpServer
from servers.s3 import S3Server
from servers.sftp import SftpServer

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.exports.confirmation import (
    check_confirmation_template,
    confirmation_path,
    confirmation_text,
    parse_keyvalue,
    render_confirmation_path,
    split_confirmation_location,
)
from airflow_provider_contactsync.exports.destinations import (
    Delivered,
    DestinationConfig,
    TransferVerificationError,
    destination_for,
)
from airflow_provider_contactsync.exports.destinations.folder import LocalStore, ObjectStore
from airflow_provider_contactsync.exports.packaging import Packed, pack
from airflow_provider_contactsync.sources.remote_files import FtpFileSystem, HostKeyError, SftpFileSystem

UTC = dt.timezone.utc
EXPORTED_AT = dt.datetime(2026, 11, 27, 6, 30, 5, tzinfo=UTC)
FILTER = {"contacts": "list", "status": "unsubscribed", "list_id": 7, "incremental": False}
COLUMNS = ["EMAIL", "FIRSTNAME", "COUNTRY"]


def set_connection(monkeypatch: pytest.MonkeyPatch, connection: str, prefix: str = "dest") -> str:
    conn_id = f"{prefix}_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
    return conn_id


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def contacts_csv(rows: int, *, tag: str = "a", delimiter: str = ",") -> bytes:
    lines = [delimiter.join(COLUMNS)]
    lines += [delimiter.join((f"{tag}{n}@example.com", f"Zoë {n}", "FR" if n % 2 else "DE")) for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def packed(tmp_path: Path) -> Callable[..., Packed]:
    """Pack a CSV of ``rows`` contacts with gzip, as the export does; the Packed file is what gets delivered."""

    def make(rows: int = 3000, *, tag: str = "a", compression: str = "gzip") -> Packed:
        source = tmp_path / f"{tag}-{uuid.uuid4().hex[:6]}.csv"
        source.write_bytes(contacts_csv(rows, tag=tag))
        target = f"{source}.{compression}"
        return pack(str(source), target, compression, member="x.csv")  # type: ignore[arg-type]

    return make


def deliver(destination: Any, file: Packed, name: str, *, rows: int = 3000, two_step: bool = True) -> Delivered:
    return destination.deliver(Path(file.path), name, size=file.size, sha256=file.sha256, rows=rows, two_step=two_step)


def flip_a_byte(path: Path) -> None:
    """Change one byte in the middle of a file in place: same size, different SHA-256."""
    with open(path, "r+b") as stream:
        stream.seek(os.path.getsize(path) // 2)
        byte = stream.read(1)
        stream.seek(-1, io.SEEK_CUR)
        stream.write(bytes([byte[0] ^ 0xFF]))


def corrupt_after_upload(monkeypatch: pytest.MonkeyPatch, store: type, corrupt: Callable[[str], None]) -> list[str]:
    """Wrap the store's upload: the real upload, then ``corrupt(remote path)``; returns the paths uploaded."""
    original = store.upload
    uploaded: list[str] = []

    def upload(self: Any, source: Any, path: str) -> int:
        sent = original(self, source, path)
        uploaded.append(path)
        corrupt(path)
        return sent

    monkeypatch.setattr(store, "upload", upload)
    return uploaded


# --- SFTP ------------------------------------------------------------------------------------------


@pytest.fixture
def sftp(sftp_server: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SftpServer:
    """The server, emptied; HOME is an empty folder so the machine's ~/.ssh cannot change outcomes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sftp_server.clear()
    return sftp_server


def sftp_config(sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, folder: str, **extra: Any) -> DestinationConfig:
    conn_id = set_connection(monkeypatch, sftp.airflow_connection(**extra))
    return DestinationConfig(type="sftp", conn_id=conn_id, folder=folder)


def test_sftp_delivers_two_step_into_a_created_folder_and_replaces_the_previous_file(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    config = sftp_config(sftp, monkeypatch, sftp.remote_path("out/daily"))  # host key checked against host_key
    first, second = packed(tag="first"), packed(tag="second")
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, first, "optouts.csv.gz")
        assert sftp.read("out/daily/optouts.csv.gz") == Path(first.path).read_bytes()
        replaced = deliver(destination, second, "optouts.csv.gz")

    assert delivered == Delivered(
        f"sftp://{config.conn_id}{sftp.remote_path('out/daily/optouts.csv.gz')}",
        "optouts.csv.gz",
        first.size,
        first.sha256,
        "read-back sha256",
    )
    data = sftp.read("out/daily/optouts.csv.gz")
    assert sha256(data) == second.sha256 == replaced.sha256
    assert gzip.decompress(data) == contacts_csv(3000, tag="second")
    assert os.listdir(sftp.path("out/daily")) == ["optouts.csv.gz"]  # no temporary file left


def test_sftp_folder_relative_to_the_login_folder(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    session = os.path.basename(sftp.remote_root)  # the session folder is in the user's home
    file = packed(10)
    with destination_for(sftp_config(sftp, monkeypatch, f"{session}/exports")) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "x.csv.gz", rows=10)
    assert delivered.location.endswith(sftp.remote_path("exports/x.csv.gz"))
    assert sha256(sftp.read("exports/x.csv.gz")) == file.sha256


def test_sftp_unknown_host_key_is_refused_before_anything_is_sent(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    config = sftp_config(sftp, monkeypatch, sftp.remote_path("out"), host_key=None)  # nor in ~/.ssh/known_hosts
    destination = destination_for(config)
    try:
        with pytest.raises(HostKeyError, match="host key .* is unknown"):
            deliver(destination, packed(10), "x.csv.gz", rows=10)
    finally:
        destination.close()
    assert list(sftp.root.iterdir()) == []


def test_sftp_corrupted_upload_is_detected_and_the_previous_file_stays(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    previous = sftp.put("out/optouts.csv.gz", b"yesterday's file").read_bytes()
    file = packed()
    # The server's temporary file changes between the upload and the check (no chroot: its path is the disk's).
    uploaded = corrupt_after_upload(monkeypatch, SftpFileSystem, lambda path: flip_a_byte(Path(path)))
    destination = destination_for(sftp_config(sftp, monkeypatch, sftp.remote_path("out")))
    try:
        with pytest.raises(TransferVerificationError) as caught:
            deliver(destination, file, "optouts.csv.gz")
    finally:
        destination.close()

    error = caught.value
    assert error.file == "optouts.csv.gz" and error.destination.startswith("sftp://")
    assert error.expected == {"size": file.size, "sha256": file.sha256}
    assert error.found["size"] == file.size and error.found["sha256"] != file.sha256
    assert f"sha256 {file.sha256} expected" in str(error) and "optouts.csv.gz" in str(error)
    assert os.path.basename(uploaded[0]).startswith(".optouts.csv.gz.part-")
    assert sftp.read("out/optouts.csv.gz") == previous
    assert os.listdir(sftp.path("out")) == ["optouts.csv.gz"]  # the temporary file was removed


def test_sftp_without_posix_rename_removes_the_old_file_then_renames(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    import paramiko

    def unsupported(self: Any, oldpath: str, newpath: str) -> None:
        raise OSError("Operation unsupported")  # what paramiko raises for SSH_FX_OP_UNSUPPORTED

    monkeypatch.setattr(paramiko.SFTPClient, "posix_rename", unsupported)
    sftp.put("out/x.csv.gz", b"old")
    file = packed(10)
    with destination_for(sftp_config(sftp, monkeypatch, sftp.remote_path("out"))) as destination:  # type: ignore[attr-defined]
        deliver(destination, file, "x.csv.gz", rows=10)
    assert sha256(sftp.read("out/x.csv.gz")) == file.sha256
    assert os.listdir(sftp.path("out")) == ["x.csv.gz"]


def test_sftp_one_step_writes_the_final_name_directly(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    file = packed(10)
    names: list[str] = []
    corrupt_after_upload(monkeypatch, SftpFileSystem, lambda path: names.append(os.path.basename(path)))
    with destination_for(sftp_config(sftp, monkeypatch, sftp.remote_path("out"))) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "x.csv.gz", rows=10, two_step=False)
    assert names == ["x.csv.gz"]
    assert (delivered.size, delivered.verified) == (file.size, "none (two_step off)")
    assert sha256(sftp.read("out/x.csv.gz")) == file.sha256


def test_sftp_confirmation_files_in_json_and_key_value_are_read_back(
    sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    file = packed(25)
    config = sftp_config(sftp, monkeypatch, sftp.remote_path("out"))
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "optouts.csv.gz", rows=25)
        for template, fmt in (("{file}.json", "json"), ("done/{file}.done", "keyvalue")):
            text = confirmation_text(
                fmt,  # type: ignore[arg-type]
                file_name=delivered.name,
                rows=25,
                size=delivered.size,
                sha256=delivered.sha256,
                exported_at=EXPORTED_AT,
                filter=FILTER,
            )
            where = destination.write_text(confirmation_path(template, file_name=delivered.name), text)
            assert where == f"sftp://{config.conn_id}" + sftp.remote_path("out/" + template.format(file=delivered.name))

    assert json.loads(sftp.read("out/optouts.csv.gz.json")) == {
        "file": "optouts.csv.gz",
        "rows": 25,
        "size": file.size,
        "sha256": file.sha256,
        "exported_at": "2026-11-27T06:30:05Z",
        "filter": FILTER,
    }
    assert sftp.read("out/done/optouts.csv.gz.done").decode() == (
        "file=optouts.csv.gz\n"
        "rows=25\n"
        f"size={file.size}\n"
        f"sha256={file.sha256}\n"
        "exported_at=2026-11-27T06:30:05Z\n"
        'filter={"contacts":"list","status":"unsubscribed","list_id":7,"incremental":false}\n'
    )
    assert sorted(os.listdir(sftp.path("out"))) == ["done", "optouts.csv.gz", "optouts.csv.gz.json"]


# --- FTP and FTPS ----------------------------------------------------------------------------------


@pytest.fixture(params=["ftp", "ftps"])
def ftp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FtpServer:
    """Each FTP case runs on plain FTP and on explicit FTPS (TLS required on control and data)."""
    server: FtpServer = request.getfixturevalue(f"{request.param}_server")
    if server.tls:
        monkeypatch.setenv(*server.trust_env())
        monkeypatch.setattr(ftplib.FTP_TLS, "port", ftplib.FTP_TLS.port)  # FTPSHook sets it process-wide
    server.clear()
    return server


def ftp_config(ftp: FtpServer, monkeypatch: pytest.MonkeyPatch, folder: str) -> DestinationConfig:
    conn_id = set_connection(monkeypatch, ftp.airflow_connection())
    return DestinationConfig(type="ftps" if ftp.tls else "ftp", conn_id=conn_id, folder=folder)


def test_ftp_delivers_two_step_replaces_and_writes_a_confirmation(
    ftp: FtpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    config = ftp_config(ftp, monkeypatch, "exports/brevo")  # relative to the login folder ("/")
    ftp.put("exports/brevo/optouts.csv.gz", b"yesterday's file")
    file = packed()
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "optouts.csv.gz")
        where = destination.write_text(
            "optouts.csv.gz.done",
            confirmation_text(
                "keyvalue",
                file_name="optouts.csv.gz",
                rows=3000,
                size=file.size,
                sha256=file.sha256,
                exported_at=EXPORTED_AT,
                filter="contacts=all\nrows=0",  # a filter text with a line break cannot forge a line
            ),
        )

    scheme = "ftps" if ftp.tls else "ftp"
    assert delivered.location == f"{scheme}://{config.conn_id}/exports/brevo/optouts.csv.gz"
    assert where == f"{scheme}://{config.conn_id}/exports/brevo/optouts.csv.gz.done"
    assert delivered.verified == "read-back sha256"
    assert ftp.read("exports/brevo/optouts.csv.gz") == Path(file.path).read_bytes()
    confirmation = ftp.read("exports/brevo/optouts.csv.gz.done").decode()
    assert confirmation.splitlines()[-1] == "filter=contacts=all\\nrows=0"
    assert parse_keyvalue(confirmation) == {
        "file": "optouts.csv.gz",
        "rows": "3000",
        "size": str(file.size),
        "sha256": file.sha256,
        "exported_at": "2026-11-27T06:30:05Z",
        "filter": "contacts=all\nrows=0",
    }
    assert sorted(os.listdir(ftp.path("exports/brevo"))) == ["optouts.csv.gz", "optouts.csv.gz.done"]


def test_ftp_truncated_upload_is_detected_and_the_previous_file_stays(
    ftp: FtpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    previous = ftp.put("out/optouts.csv.gz", b"yesterday's file").read_bytes()
    file = packed()

    def truncate(path: str) -> None:  # the server kept only part of the file
        os.truncate(ftp.path(path.lstrip("/")), file.size - 100)

    corrupt_after_upload(monkeypatch, FtpFileSystem, truncate)
    destination = destination_for(ftp_config(ftp, monkeypatch, "/out"))
    try:
        with pytest.raises(TransferVerificationError, match=f"size {file.size} expected, {file.size - 100} found"):
            deliver(destination, file, "optouts.csv.gz")
    finally:
        destination.close()
    assert ftp.read("out/optouts.csv.gz") == previous
    assert os.listdir(ftp.path("out")) == ["optouts.csv.gz"]


def test_ftp_corrupted_bytes_of_the_same_size_are_detected(
    ftp: FtpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    file = packed()
    corrupt_after_upload(monkeypatch, FtpFileSystem, lambda path: flip_a_byte(ftp.path(path.lstrip("/"))))
    destination = destination_for(ftp_config(ftp, monkeypatch, "out"))
    try:
        with pytest.raises(TransferVerificationError, match="sha256"):
            deliver(destination, file, "optouts.csv.gz")
    finally:
        destination.close()
    assert os.listdir(ftp.path("out")) == []  # no final file, no temporary file


# --- object storage (S3 through moto's server) -----------------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.fixture
def aws_conn(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, s3_server.connection(), prefix="aws")


def keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return sorted(item["Key"] for item in listing.get("Contents", []))


def s3_bytes(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]


def test_s3_delivers_two_step_and_writes_a_json_confirmation(
    s3_server: S3Server, bucket: str, aws_conn: str, packed: Callable[..., Packed]
) -> None:
    file = packed()
    config = DestinationConfig(type="storage", path=f"s3://{bucket}/exports/", conn_id=aws_conn)
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "optouts.csv.gz")
        where = destination.write_text(
            "done/optouts.csv.gz.json",
            confirmation_text(
                "json",
                file_name=delivered.name,
                rows=3000,
                size=delivered.size,
                sha256=delivered.sha256,
                exported_at=EXPORTED_AT,
                filter=FILTER,
                extra={"export": "optouts", "run_id": "scheduled__2026-11-27"},
            ),
        )

    assert delivered == Delivered(
        f"s3://{bucket}/exports/optouts.csv.gz", "optouts.csv.gz", file.size, file.sha256, "read-back sha256"
    )
    assert where == f"s3://{bucket}/exports/done/optouts.csv.gz.json"
    assert keys(s3_server, bucket) == ["exports/done/optouts.csv.gz.json", "exports/optouts.csv.gz"]
    assert sha256(s3_bytes(s3_server, bucket, "exports/optouts.csv.gz")) == file.sha256
    confirmation = s3_bytes(s3_server, bucket, "exports/done/optouts.csv.gz.json").decode()
    assert list(json.loads(confirmation).items()) == [
        ("file", "optouts.csv.gz"),
        ("rows", 3000),
        ("size", file.size),
        ("sha256", file.sha256),
        ("exported_at", "2026-11-27T06:30:05Z"),
        ("filter", FILTER),
        ("export", "optouts"),
        ("run_id", "scheduled__2026-11-27"),
    ]


def test_s3_corrupted_upload_is_detected_and_the_previous_object_stays(
    s3_server: S3Server,
    bucket: str,
    aws_conn: str,
    monkeypatch: pytest.MonkeyPatch,
    packed: Callable[..., Packed],
) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="exports/optouts.csv.gz", Body=b"yesterday")  # type: ignore[attr-defined]
    file = packed()
    data = Path(file.path).read_bytes()
    altered = data[:100] + bytes([data[100] ^ 1]) + data[101:]

    def overwrite(path: str) -> None:  # the object the server holds is not what was sent
        bucket_name, key = path.split("/", 1)
        s3_server.client().put_object(Bucket=bucket_name, Key=key, Body=altered)  # type: ignore[attr-defined]

    uploaded = corrupt_after_upload(monkeypatch, ObjectStore, overwrite)
    config = DestinationConfig(type="storage", path=f"s3://{bucket}/exports", conn_id=aws_conn)
    destination = destination_for(config)
    try:
        with pytest.raises(TransferVerificationError) as caught:
            deliver(destination, file, "optouts.csv.gz")
    finally:
        destination.close()
    assert caught.value.found == {"size": file.size, "sha256": sha256(altered)}
    assert uploaded[0].startswith(f"{bucket}/exports/.optouts.csv.gz.part-")
    assert keys(s3_server, bucket) == ["exports/optouts.csv.gz"]
    assert s3_bytes(s3_server, bucket, "exports/optouts.csv.gz") == b"yesterday"


# --- local folder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["absolute", "file-url"])
def test_local_folder_two_step_replaces_and_leaves_only_the_file(
    tmp_path: Path, packed: Callable[..., Packed], form: str
) -> None:
    folder = tmp_path / "drop" / "brevo"
    path = str(folder) if form == "absolute" else f"file://{folder}"
    first, second = packed(tag="first"), packed(tag="second")
    with destination_for(DestinationConfig(type="storage", path=path)) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, first, "optouts.csv.gz")
        deliver(destination, second, "optouts.csv.gz")
    assert delivered.location == str(folder / "optouts.csv.gz")
    assert sha256((folder / "optouts.csv.gz").read_bytes()) == second.sha256
    assert os.listdir(folder) == ["optouts.csv.gz"]


def test_local_corrupted_upload_is_detected_and_the_previous_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "optouts.csv.gz").write_bytes(b"yesterday")
    corrupt_after_upload(monkeypatch, LocalStore, lambda path: flip_a_byte(Path(path)))
    destination = destination_for(DestinationConfig(type="storage", path=str(folder)))
    with pytest.raises(TransferVerificationError, match="failed verification: sha256"):
        deliver(destination, packed(), "optouts.csv.gz")
    destination.close()
    assert os.listdir(folder) == ["optouts.csv.gz"]
    assert (folder / "optouts.csv.gz").read_bytes() == b"yesterday"


def test_a_local_file_changed_since_packing_is_named_as_such(tmp_path: Path, packed: Callable[..., Packed]) -> None:
    file = packed(10)
    flip_a_byte(Path(file.path))  # after pack() measured it
    folder = tmp_path / "drop"
    with destination_for(DestinationConfig(type="storage", path=str(folder))) as destination:  # type: ignore[attr-defined]
        with pytest.raises(TransferVerificationError, match="changed since it was packed"):
            deliver(destination, file, "two-step.csv.gz", rows=10)
        with pytest.raises(TransferVerificationError, match="changed since it was packed; nothing was sent"):
            deliver(destination, file, "one-step.csv.gz", rows=10, two_step=False)
    assert os.listdir(folder) == []


def test_confirmations_elsewhere_by_confirmation_path_url_or_absolute_path(
    tmp_path: Path, sftp: SftpServer, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    conn_id = set_connection(monkeypatch, sftp.airflow_connection())
    elsewhere = tmp_path / "confirmations"
    folder, name = split_confirmation_location(f"file://{elsewhere}/{{file}}.done")
    config = DestinationConfig(type="sftp", conn_id=conn_id, folder=sftp.remote_path("out"), confirmation_path=folder)
    file = packed(10)
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        deliver(destination, file, "x.csv.gz", rows=10)
        by_config = destination.write_text(confirmation_path(name, file_name="x.csv.gz"), "by confirmation_path\n")
        by_url = destination.write_text(
            render_confirmation_path(f"file://{tmp_path}/by-url/{{file}}.ok", file="x.csv.gz"), "by url\n"
        )
        on_server = destination.write_text(  # an absolute path is the server's for SFTP and FTP
            render_confirmation_path(sftp.remote_path("receipts") + "/{file}.ok", file="x.csv.gz"), "on server\n"
        )
    assert by_config == str(elsewhere / "x.csv.gz.done")
    assert (elsewhere / "x.csv.gz.done").read_text() == "by confirmation_path\n"
    assert by_url == str(tmp_path / "by-url" / "x.csv.gz.ok")
    assert (tmp_path / "by-url" / "x.csv.gz.ok").read_text() == "by url\n"
    assert on_server == f"sftp://{conn_id}{sftp.remote_path('receipts/x.csv.gz.ok')}"
    assert sftp.read("receipts/x.csv.gz.ok") == b"on server\n"
    assert os.listdir(sftp.path("out")) == ["x.csv.gz"]


# --- BigQuery (bqemulator) -------------------------------------------------------------------------


class Warehouse:
    def __init__(self, emulator: BigQueryEmulator, conn_id: str, dataset: str) -> None:
        self.client = emulator.client()
        self.project = emulator.project_id
        self.conn_id = conn_id
        self.dataset = dataset

    def config(self, **overrides: Any) -> DestinationConfig:
        values: dict[str, Any] = {
            "type": "bigquery",
            "conn_id": self.conn_id,
            "dataset": self.dataset,
            "table": "optouts",
            "columns": COLUMNS,
            "compression": "gzip",
        }
        return DestinationConfig(**{**values, **overrides})

    def rows(self, table: str = "optouts") -> list[tuple[Any, ...]]:
        return self.rows_by("EMAIL", table)

    def rows_by(self, order: str, table: str = "optouts") -> list[tuple[Any, ...]]:
        """Every row, its values in the table's column order (``SELECT *``)."""
        result = self.client.query(f"SELECT * FROM `{self.dataset}.{table}` ORDER BY {order}").result()
        return [tuple(row.values()) for row in result]

    def columns(self, table: str = "optouts") -> list[tuple[str, str]]:
        return [(f.name, f.field_type) for f in self.client.get_table(f"{self.dataset}.{table}").schema]

    def tables(self) -> list[str]:
        return sorted(table.table_id for table in self.client.list_tables(self.dataset))


@pytest.fixture
def warehouse(bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    conn_id = set_connection(monkeypatch, bigquery_emulator.airflow_connection(), prefix="bq")
    dataset = f"exports_{uuid.uuid4().hex[:10]}"
    warehouse = Warehouse(bigquery_emulator, conn_id, dataset)
    warehouse.client.create_dataset(dataset)
    try:
        yield warehouse
    finally:
        warehouse.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def expected_rows(rows: int, tag: str) -> list[tuple[str, str, str]]:
    return sorted((f"{tag}{n}@example.com", f"Zoë {n}", "FR" if n % 2 else "DE") for n in range(rows))


def test_bigquery_create_append_replace_with_row_counts_and_column_order(
    warehouse: Warehouse, packed: Callable[..., Packed]
) -> None:
    first, second, third = packed(40, tag="a"), packed(25, tag="b"), packed(7, tag="c")

    with destination_for(warehouse.config(write="create")) as destination:  # type: ignore[attr-defined]
        created = deliver(destination, first, "optouts.csv.gz", rows=40)
    assert created == Delivered(
        f"bigquery://{warehouse.project}.{warehouse.dataset}.optouts", "optouts", first.size, first.sha256, "rows"
    )
    assert warehouse.columns() == [("EMAIL", "STRING"), ("FIRSTNAME", "STRING"), ("COUNTRY", "STRING")]
    assert warehouse.rows() == expected_rows(40, "a")

    with destination_for(warehouse.config(write="append")) as destination:  # type: ignore[attr-defined]
        deliver(destination, second, "optouts.csv.gz", rows=25)
    assert warehouse.rows() == sorted(expected_rows(40, "a") + expected_rows(25, "b"))

    with destination_for(warehouse.config(write="replace")) as destination:  # type: ignore[attr-defined]
        deliver(destination, third, "optouts.csv.gz", rows=7)
    assert warehouse.rows() == expected_rows(7, "c")

    # replace also replaces the schema: the export's fields changed order and one was renamed
    renamed = warehouse.config(write="replace", columns=["MAIL", "FIRSTNAME", "COUNTRY"])
    with destination_for(renamed) as destination:  # type: ignore[attr-defined]
        deliver(destination, third, "optouts.csv.gz", rows=7)
    assert warehouse.columns() == [("MAIL", "STRING"), ("FIRSTNAME", "STRING"), ("COUNTRY", "STRING")]
    assert sorted(warehouse.rows_by("MAIL")) == expected_rows(7, "c")
    assert warehouse.tables() == ["optouts"]  # every temporary table dropped


def test_bigquery_create_refuses_a_table_with_rows_and_append_a_table_with_other_columns(
    warehouse: Warehouse, packed: Callable[..., Packed]
) -> None:
    file = packed(5)
    with destination_for(warehouse.config(write="create")) as destination:  # type: ignore[attr-defined]
        deliver(destination, file, "optouts.csv.gz", rows=5)
        with pytest.raises(ConfigurationError, match="already has 5 rows and write is create"):
            deliver(destination, file, "optouts.csv.gz", rows=5)
    reordered = warehouse.config(write="append", columns=["FIRSTNAME", "EMAIL", "COUNTRY"])
    with destination_for(reordered) as destination:  # type: ignore[attr-defined]
        with pytest.raises(ConfigurationError, match="has the columns EMAIL STRING, FIRSTNAME STRING, COUNTRY"):
            deliver(destination, file, "optouts.csv.gz", rows=5)
    assert warehouse.rows() == expected_rows(5, "a")
    assert warehouse.tables() == ["optouts"]


def test_bigquery_rows_lost_on_the_way_fail_the_delivery_and_leave_the_table(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, packed: Callable[..., Packed]
) -> None:
    with destination_for(warehouse.config(write="replace")) as destination:  # type: ignore[attr-defined]
        deliver(destination, packed(12, tag="old"), "optouts.csv.gz", rows=12)
    from google.cloud import bigquery

    original = bigquery.Client.load_table_from_file

    def lose_the_last_row(self: Any, stream: Any, *args: Any, **kwargs: Any) -> Any:
        data = stream.read()
        return original(self, io.BytesIO(data[: data.rstrip(b"\n").rfind(b"\n") + 1]), *args, **kwargs)

    monkeypatch.setattr(bigquery.Client, "load_table_from_file", lose_the_last_row)
    with destination_for(warehouse.config(write="replace")) as destination:  # type: ignore[attr-defined]
        with pytest.raises(TransferVerificationError, match="rows 30 expected, 29 found") as caught:
            deliver(destination, packed(30, tag="new"), "optouts.csv.gz", rows=30)
    assert caught.value.destination == f"bigquery://{warehouse.project}.{warehouse.dataset}.optouts"
    assert warehouse.rows() == expected_rows(12, "old")
    assert warehouse.tables() == ["optouts"]


def test_bigquery_json_lines_load_by_key_and_an_empty_export_still_creates_the_table(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    lines = [{"COUNTRY": "FR", "EMAIL": "a@example.com", "FIRSTNAME": "Ada"}, {"EMAIL": "b@example.com"}]
    source = tmp_path / "x.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    file = pack(str(source), str(source) + ".gz", "gzip", member="x.jsonl")
    (tmp_path / "none.jsonl").write_bytes(b"")  # no contacts matched: JSON lines without a line
    empty = Packed(str(tmp_path / "none.jsonl"), 0, sha256(b""))
    config = warehouse.config(source_format="jsonl", write="create")
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        deliver(destination, file, "x.jsonl.gz", rows=2)
    assert warehouse.rows() == [("a@example.com", "Ada", "FR"), ("b@example.com", None, None)]
    with destination_for(warehouse.config(source_format="jsonl", table="nobody", write="create")) as destination:  # type: ignore[attr-defined]
        deliver(destination, empty, "none.jsonl", rows=0)
        deliver(destination, empty, "none.jsonl", rows=0, two_step=False)
    assert warehouse.rows("nobody") == [] and len(warehouse.columns("nobody")) == 3
    assert warehouse.tables() == ["nobody", "optouts"]


def test_bigquery_one_step_loads_straight_into_the_table(warehouse: Warehouse, packed: Callable[..., Packed]) -> None:
    file = packed(9, compression="none")
    with destination_for(warehouse.config(compression="none", write="append")) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "optouts.csv", rows=9, two_step=False)
        deliver(destination, file, "optouts.csv", rows=9, two_step=False)
    assert delivered.verified == "none (two_step off)"
    assert warehouse.rows() == sorted(expected_rows(9, "a") * 2)


def test_bigquery_confirmation_goes_to_the_url_of_its_template(
    warehouse: Warehouse, s3_server: S3Server, bucket: str, aws_conn: str, packed: Callable[..., Packed]
) -> None:
    config = warehouse.config(confirmation_conn_id=aws_conn)
    file = packed(3)
    with destination_for(config) as destination:  # type: ignore[attr-defined]
        delivered = deliver(destination, file, "optouts.csv.gz", rows=3)
        text = confirmation_text(
            "keyvalue",
            file_name="optouts.csv.gz",
            rows=3,
            size=delivered.size,
            sha256=delivered.sha256,
            exported_at=EXPORTED_AT,
            filter=FILTER,
            extra={"table": delivered.location},
        )
        template = f"s3://{bucket}/confirmations/{{file}}.done"
        where = destination.write_text(render_confirmation_path(template, file="optouts.csv.gz"), text)
    assert where == f"s3://{bucket}/confirmations/optouts.csv.gz.done"
    assert keys(s3_server, bucket) == ["confirmations/optouts.csv.gz.done"]
    read = parse_keyvalue(s3_bytes(s3_server, bucket, "confirmations/optouts.csv.gz.done").decode())
    assert (read["rows"], read["sha256"], read["table"]) == ("3", file.sha256, delivered.location)


def test_bigquery_without_confirmation_path_says_where_to_set_one(warehouse: Warehouse) -> None:
    with destination_for(warehouse.config()) as destination:  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="confirmation_path"):
            destination.write_text("x.done", "file=x\n")


def test_bigquery_refuses_zip_and_encrypted_files(warehouse: Warehouse, packed: Callable[..., Packed]) -> None:
    with pytest.raises(ValueError, match="cannot load zip"):
        warehouse.config(compression="zip")
    with pytest.raises(ValueError, match="not encrypted files"):
        warehouse.config(encrypted=True)
    zipped = packed(3, compression="zip")
    with destination_for(warehouse.config(compression="none")) as destination:  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="cannot load a zip file"):
            deliver(destination, zipped, "optouts.csv", rows=3)  # a zip whatever its name
        with pytest.raises(ValueError, match="encrypted"):
            deliver(destination, packed(3), "optouts.csv.gz.gpg", rows=3)
    assert warehouse.tables() == []


# --- configuration and confirmation text -----------------------------------------------------------


def test_folder_none_is_the_login_folder() -> None:
    assert DestinationConfig(type="sftp", conn_id="x", folder=None).folder == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"type": "sftp"}, "needs conn_id"),
        ({"type": "ftp", "conn_id": "x", "path": "/tmp"}, "not path"),
        ({"type": "storage", "path": "relative/folder"}, "absolute folder"),
        ({"type": "storage", "path": "s3://key:secret@bucket/x"}, "no credentials"),
        ({"type": "bigquery", "conn_id": "x", "dataset": "d"}, "needs conn_id, dataset and table"),
        ({"type": "bigquery", "conn_id": "x", "dataset": "d", "table": "t"}, "needs the export's columns"),
        ({"type": "bigquery", "conn_id": "x", "dataset": "d", "table": "t", "columns": ["a b"]}, "column name"),
        ({"type": "bigquery", "conn_id": "x", "dataset": "d", "table": "t", "columns": ["A", "a"]}, "same name"),
        ({"type": "bigquery", "conn_id": "x", "dataset": "d;", "table": "t", "columns": ["a"]}, "dataset"),
        ({"type": "sftp", "conn_id": "x", "confirmation_path": "done"}, "confirmation_path"),
        ({"type": "s3", "conn_id": "x"}, "destination type"),
    ],
)
def test_configurations_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DestinationConfig(**values)


@pytest.mark.parametrize("name", ["", "..", "a/b", "x\n.csv", "x\r", "\x00"])
def test_deliver_takes_plain_file_names_only(tmp_path: Path, packed: Callable[..., Packed], name: str) -> None:
    with destination_for(DestinationConfig(type="storage", path=str(tmp_path / "d"))) as destination:  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="not a plain file name"):
            deliver(destination, packed(1), name, rows=1)
        with pytest.raises(ValueError, match="not a relative path inside"):
            destination.write_text("../escape.done" if name else "done//x.done", "x")
    assert not (tmp_path / "escape.done").exists()


def test_key_value_escapes_every_line_break_and_reads_back() -> None:
    hostile = "a\nrows=0\rsize=1\u2028x\u0085y\\n\t\x00z=é"
    text = confirmation_text(
        "keyvalue",
        file_name="x\nsha256=forged.csv",
        rows=1,
        size=2,
        sha256="0" * 64,
        exported_at=dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        filter=hostile,
        extra={"note": {"k": "v\n"}, "ok": True, "nothing": None},
    )
    lines = text.split("\n")
    assert [line.partition("=")[0] for line in lines[:-1]] == [
        "file",
        "rows",
        "size",
        "sha256",
        "exported_at",
        "filter",
        "note",
        "ok",
        "nothing",
    ]
    assert lines[-1] == "" and len(text.splitlines()) == 9  # str.splitlines also splits on U+2028 and U+0085
    values = parse_keyvalue(text)
    assert values["file"] == "x\nsha256=forged.csv" and values["sha256"] == "0" * 64
    assert values["filter"] == hostile
    assert values["exported_at"] == "2026-01-01T07:00:00Z"
    assert (values["note"], values["ok"], values["nothing"]) == ('{"k":"v\\n"}', "true", "")


def test_confirmation_text_checks_its_values() -> None:
    good: dict[str, Any] = {"file_name": "x", "rows": 1, "size": 1, "sha256": "a" * 64, "filter": {}}
    with pytest.raises(ValueError, match="aware datetime"):
        confirmation_text("json", exported_at=dt.datetime(2026, 1, 1), **good)  # noqa: DTZ001
    with pytest.raises(ValueError, match="standard keys"):
        confirmation_text("json", exported_at=EXPORTED_AT, extra={"rows": 2}, **good)
    with pytest.raises(ValueError, match="extra key"):
        confirmation_text("keyvalue", exported_at=EXPORTED_AT, extra={"a=b": 2}, **good)
    with pytest.raises(ValueError, match="sha256"):
        confirmation_text("json", exported_at=EXPORTED_AT, **{**good, "sha256": "XYZ"})
    with pytest.raises(ValueError, match="json or keyvalue"):
        confirmation_text("xml", exported_at=EXPORTED_AT, **good)  # type: ignore[arg-type]


def test_confirmation_templates_are_parsed_not_formatted() -> None:
    assert confirmation_path("{file}.done", file_name="a.csv.gz") == "a.csv.gz.done"
    assert confirmation_path("done/{file}.json", file_name="a.csv") == "done/a.csv.json"
    assert confirmation_path("{{literal}}-{file}", file_name="a") == "{literal}-a"
    for template in ("{file.__class__}", "{file:>999999999}", "{file!r}", "{date}", "{", ""):
        with pytest.raises(ValueError, match="confirmation path"):
            check_confirmation_template(template)
    for template in ("../{file}.done", "/abs/{file}", "a//{file}", "{file}", "x\n{file}"):
        with pytest.raises(ValueError, match="confirmation path"):
            confirmation_path(template, file_name="a.csv")
    assert render_confirmation_path("done/{file}.json", file="a.csv") == "done/a.csv.json"
    assert render_confirmation_path("s3://b/c/{file}.json", file="a.csv") == "s3://b/c/a.csv.json"
    assert render_confirmation_path("/srv/{file}.ok", file="a.csv") == "/srv/a.csv.ok"
    with pytest.raises(ValueError, match="no credentials"):
        render_confirmation_path("s3://key:secret@b/{file}.json", file="a.csv")
    assert split_confirmation_location("{file}.done") == (None, "{file}.done")
    assert split_confirmation_location("s3://b/c/{file}.json") == ("s3://b/c", "{file}.json")
    assert split_confirmation_location("/srv/done/{file}.ok") == ("/srv/done", "{file}.ok")
    with pytest.raises(ValueError, match="only be in the file's name"):
        split_confirmation_location("s3://b/{file}/x.done")

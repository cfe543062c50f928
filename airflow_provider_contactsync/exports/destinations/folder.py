"""Destinations that are folders: SFTP, FTP/FTPS, object storage (ObjectStoragePath), a local folder.

One :class:`FolderDestination` does the two-step transfer for all of them over a :class:`Store`, the
handful of file operations each kind provides: SFTP and FTP through the source side's file systems
(:mod:`airflow_provider_contactsync.sources.remote_files`: same hooks, same host-key checks), object
storage through the ObjectStoragePath's fsspec file system, a local folder through ``os``.

- **Read back, not trusted**: after the upload the file's size is asked of the server and the whole
  file is read back and hashed; neither SFTP (OpenSSH), most FTP servers nor S3's single/multipart
  upload API give a SHA-256 of the whole stored object for free, so the read-back is what works
  everywhere. It costs a download of the file.
- **Which side changed the bytes**: the bytes sent are hashed as they go, so a mismatch says whether
  the local file changed since it was packed or the destination holds something else.
- **Object storage has no rename**: the verified temporary object is copied server-side to the final
  key (atomic per object: readers see the old object or the new one) and then deleted.
- A local folder's file is flushed to disk (``fsync``) before the read-back and renamed with
  ``os.replace`` (atomic on one file system); files get the process's default mode (umask), as a
  drop folder's readers expect.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from airflow_provider_contactsync.exports.destinations import Delivered, Destination, TransferVerificationError
from airflow_provider_contactsync.exports.destinations.config import check_storage_url

if TYPE_CHECKING:
    from airflow_provider_contactsync.exports.destinations.config import DestinationConfig

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UNVERIFIED = "none (two_step off)"
READ_BACK = "read-back sha256"


class Store(Protocol):
    """The file operations a two-step transfer needs; paths are absolute in the store's own terms."""

    def makedirs(self, folder: str) -> str:
        """Create ``folder`` and its parents if missing; return its absolute path."""
        ...

    def upload(self, source: BinaryIO, path: str) -> int:
        """Write the stream to ``path`` (created or replaced); return the bytes written."""
        ...

    def file_size(self, path: str) -> int | None:
        """The size of the file at ``path``, None when there is none."""
        ...

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]: ...

    def rename(self, path: str, target: str) -> None:
        """Rename ``path`` to ``target``, replacing ``target`` if it exists."""
        ...

    def delete(self, path: str) -> None: ...

    def close(self) -> None: ...


class FolderDestination:
    """A folder of a :class:`Store`: the two-step transfer, and confirmation files next to the data.

    :param store: the file operations.
    :param folder: the folder as the store takes it (relative ones are the store's: an SFTP/FTP login
        folder); created on the first delivery.
    :param location: how a path is shown to people (``sftp://<conn_id>/abs/path``).
    :param confirmations: where :meth:`write_text` writes relative paths instead of this folder
        (``confirmation_path``).
    :param server: absolute paths given to :meth:`write_text` are on this store's server (SFTP, FTP);
        otherwise they are local paths.
    :param storage_conn_id: the connection for object storage URLs given to :meth:`write_text`.
    """

    def __init__(
        self,
        store: Store,
        folder: str,
        *,
        location: Callable[[str], str],
        confirmations: Destination | None = None,
        server: bool = False,
        storage_conn_id: str | None = None,
    ) -> None:
        self.store = store
        self.folder = folder
        self.location = location
        self.confirmations = confirmations
        self.server = server
        self.storage_conn_id = storage_conn_id
        self._base: str | None = None

    def deliver(self, local_file: Path, name: str, *, size: int, sha256: str, rows: int, two_step: bool) -> Delivered:
        """Put ``local_file`` into the folder as ``name``, replacing a file of that name once verified.

        :param rows: not checked here (a file's rows are only known to its reader); kept for BigQuery.
        :raises TransferVerificationError: the file read back is not ``size`` bytes with ``sha256``
            (nothing is under ``name`` that was not there before).
        """
        check_name(name)
        target = posixpath.join(self._folder(), name)
        verified = self._put(Path(local_file), target, size=size, sha256=sha256, two_step=two_step)
        return Delivered(self.location(target), name, size, sha256, verified)

    def write_text(self, relative_path: str, text: str) -> str:
        """Write ``text`` (UTF-8), two-step, and return where it is.

        :param relative_path: relative to the folder (or to ``confirmations`` when set), e.g.
            ``done/x.csv.gz.done``; or a URL (``s3://bucket/done/x.done``), written there; or an absolute
            path: on the server for SFTP and FTP, a local path otherwise.
        """
        if "://" in relative_path or (relative_path.startswith("/") and not self.server):
            return write_text_at(relative_path, text, self.storage_conn_id)
        if relative_path.startswith("/"):
            target = "/" + check_relative_path(relative_path[1:])
            self.store.makedirs(posixpath.dirname(target))
        elif self.confirmations is not None:
            return self.confirmations.write_text(relative_path, text)
        else:
            relative = check_relative_path(relative_path)
            target = posixpath.join(self._folder(), relative)
            if "/" in relative:
                self.store.makedirs(posixpath.dirname(target))
        with text_file(text) as (local, size, sha256):
            self._put(local, target, size=size, sha256=sha256, two_step=True)
        return self.location(target)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            if self.confirmations is not None:
                self.confirmations.close()

    def __enter__(self) -> FolderDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _folder(self) -> str:
        if self._base is None:
            self._base = self.store.makedirs(self.folder)
        return self._base

    def _put(self, local: Path, target: str, *, size: int, sha256: str, two_step: bool) -> str:
        """Upload ``local`` to ``target``; the ``verified`` label of :class:`Delivered`."""
        where = self.location(target)
        name = posixpath.basename(target)
        if not two_step:
            check_local(local, where, name, size=size, sha256=sha256)
            with open(local, "rb") as source:
                self.store.upload(source, target)
            return UNVERIFIED
        temporary = posixpath.join(posixpath.dirname(target), temporary_name(name))
        try:
            with open(local, "rb") as source:
                sending = HashingReader(source)
                self.store.upload(cast(BinaryIO, sending), temporary)  # it reads like the file it wraps
            self._verify(temporary, where, name, size=size, sha256=sha256, sent=sending)
            self.store.rename(temporary, target)
        except BaseException:
            self._remove(temporary)
            raise
        return READ_BACK

    def _verify(self, temporary: str, where: str, name: str, *, size: int, sha256: str, sent: HashingReader) -> None:
        expected = {"size": size, "sha256": sha256}
        sent_ok = sent.size == size and sent.hexdigest() == sha256
        detail = (
            "The temporary file was removed and the final name not written."
            if sent_ok
            else f"The local file was already different when sent ({sent.size} bytes, SHA-256 {sent.hexdigest()}): "
            "it changed since it was packed. The temporary file was removed and the final name not written."
        )
        found_size = self.store.file_size(temporary)
        if found_size != size:
            found: dict[str, object] = {"size": found_size if found_size is not None else "no file"}
            raise TransferVerificationError(where, name, expected={"size": size}, found=found, detail=detail)
        with self.store.open(temporary) as stream:
            _, found_sha256 = digest(stream)
        if found_sha256 != sha256:
            found = {"size": found_size, "sha256": found_sha256}
            raise TransferVerificationError(where, name, expected=expected, found=found, detail=detail)

    def _remove(self, temporary: str) -> None:
        try:
            if self.store.file_size(temporary) is not None:
                self.store.delete(temporary)
        except Exception as exc:  # noqa: BLE001 - the transfer's own error is the one to raise
            log.warning("could not remove the temporary file %s: %s", self.location(temporary), exc)


# -- building ---------------------------------------------------------------------------------------


def remote_folder(config: DestinationConfig, *, confirmations: Destination | None = None) -> FolderDestination:
    """An SFTP or FTP/FTPS folder through the source side's file systems (host keys verified)."""
    from airflow_provider_contactsync.sources.remote_files import SftpFileSystem, ftp_filesystem

    assert config.conn_id is not None
    conn_id = config.conn_id
    store: Any
    if config.type == "sftp":
        store = SftpFileSystem(conn_id)
    else:
        store = ftp_filesystem(conn_id, tls=config.type == "ftps")
    scheme = "ftps" if config.type == "ftp" and store.tls else config.type
    return FolderDestination(
        store,
        config.folder or "",
        location=lambda path: f"{scheme}://{conn_id}{path}",
        confirmations=confirmations,
        server=True,
        storage_conn_id=config.confirmation_conn_id,
    )


def storage_folder(url: str, conn_id: str | None, *, confirmations: Destination | None = None) -> FolderDestination:
    """A folder under an ObjectStoragePath URL (``s3://bucket/prefix``) or a local folder (``/abs``, ``file://``).

    :param conn_id: the bucket's connection; also used for URLs given to ``write_text``.
    """
    from airflow.sdk import ObjectStoragePath

    check_storage_url(url, "path")
    base = ObjectStoragePath("file://" + url if url.startswith("/") else url, conn_id=conn_id)
    if base.protocol in ("file", "local"):
        store: Store = LocalStore()
        folder: str = base.path
        location: Callable[[str], str] = str
    else:
        protocol = base.protocol
        store, folder = ObjectStore(base.fs), base.path.rstrip("/")
        location = lambda path: f"{protocol}://{path}"  # noqa: E731
    return FolderDestination(store, folder, location=location, confirmations=confirmations, storage_conn_id=conn_id)


def write_text_at(url: str, text: str, conn_id: str | None) -> str:
    """Write ``text`` two-step at a URL or absolute local path (``s3://bucket/done/x.done``); return where."""
    folder, _, name = url.rpartition("/")
    with storage_folder(folder or "/", conn_id) as destination:
        return destination.write_text(check_name(name), text)


class LocalStore:
    """A local (or mounted) folder."""

    def makedirs(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        return os.path.abspath(folder)

    def upload(self, source: BinaryIO, path: str) -> int:
        written = 0
        with open(path, "wb") as out:
            while block := source.read(_CHUNK):
                out.write(block)
                written += len(block)
            out.flush()
            os.fsync(out.fileno())  # what is read back is what the disk holds
        return written

    def file_size(self, path: str) -> int | None:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return open(path, "rb")

    def rename(self, path: str, target: str) -> None:
        os.replace(path, target)
        descriptor = os.open(os.path.dirname(target) or ".", os.O_RDONLY)
        try:
            os.fsync(descriptor)  # the rename itself survives a crash
        finally:
            os.close(descriptor)

    def delete(self, path: str) -> None:
        os.unlink(path)

    def close(self) -> None:
        pass


class ObjectStore:
    """An fsspec file system of object storage (s3fs, gcsfs, ...); paths are ``bucket/key``."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def makedirs(self, folder: str) -> str:
        return folder  # no folders in object storage (and s3fs would create a missing bucket)

    def upload(self, source: BinaryIO, path: str) -> int:
        written = 0
        with self.fs.open(path, "wb") as out:  # multipart above the block size, in bounded memory
            while block := source.read(_CHUNK):
                out.write(block)
                written += len(block)
        return written

    def file_size(self, path: str) -> int | None:
        self.fs.invalidate_cache(path)  # asked of the server, not of a listing cached earlier
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return self.fs.open(path, "rb")

    def rename(self, path: str, target: str) -> None:
        self.fs.copy(path, target)  # server-side; the final object appears whole
        self.fs.rm_file(path)
        self.fs.invalidate_cache(target)

    def delete(self, path: str) -> None:
        self.fs.rm_file(path)
        self.fs.invalidate_cache(path)

    def close(self) -> None:
        pass


# -- helpers ----------------------------------------------------------------------------------------


def temporary_name(name: str) -> str:
    """``.<name>.part-<12 hex>``: hidden, and never matching a pattern for the final name's extension."""
    return f".{name}.part-{secrets.token_hex(6)}"


def check_name(name: str) -> str:
    """A plain file name (no folder, no control characters); ValueError otherwise."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or _CONTROL.search(name):
        raise ValueError(f"{name!r} is not a plain file name")
    return name


def check_relative_path(path: str) -> str:
    """A relative ``/`` path that stays in its folder (``done/x.csv.done``); ValueError otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{path!r} is not a relative path inside the destination's folder")
    for part in parts:
        check_name(part)
    return path


class HashingReader:
    """A binary stream that counts and hashes what is read from it (what an upload sends)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        block = self._stream.read(size)
        self._hash.update(block)
        self.size += len(block)
        return block

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest(stream: IO[bytes]) -> tuple[int, str]:
    """Size and SHA-256 (hex) of what is left of a binary stream."""
    hashed = hashlib.sha256()
    size = 0
    while block := stream.read(_CHUNK):
        hashed.update(block)
        size += len(block)
    return size, hashed.hexdigest()


def check_local(local: Path, where: str, name: str, *, size: int, sha256: str) -> None:
    """The local file is the one packed (``size`` bytes, ``sha256``): checked before it is sent anywhere."""
    with open(local, "rb") as stream:
        found_size, found_sha256 = digest(stream)
    if (found_size, found_sha256) != (size, sha256):
        raise TransferVerificationError(
            where,
            name,
            expected={"size": size, "sha256": sha256},
            found={"size": found_size, "sha256": found_sha256},
            detail=f"The local file {local} changed since it was packed; nothing was sent.",
        )


@contextlib.contextmanager
def text_file(text: str) -> Iterator[tuple[Path, int, str]]:
    """A temporary local file holding ``text`` as UTF-8: ``(path, size, sha256)``, removed afterwards."""
    data = text.encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="contactsync-text-") as folder:
        path = Path(folder) / "text"
        path.write_bytes(data)
        yield path, len(data), hashlib.sha256(data).hexdigest()

"""Files in a folder (CSV or JSON lines), read through ``core/rows.py``, oldest file first.

Listing and opening files sit behind the small :class:`FileSystem` protocol, so SFTP and FTP
sources only need to provide another file system (list files with size and mtime, open one as a
binary stream); the reading, filtering and chunking here stay the same. :class:`LocalFileSystem`
serves local or mounted folders.

With an ``updated_field``, each row's value is parsed by ``core.cursor.normalize_value``: rows
at or before the window's cursor are left out (earlier runs read them), rows newer than the
safety-lag bound wait for a later run (counted in ``skipped``), and a value that cannot order
rows becomes a :class:`RowError` for that row. Rows keep file order (no sort: that would hold a
whole file in memory); the extract task keeps the largest cursor, so order does not matter to it.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from airflow_provider_contactsync.core.cursor import UTC, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import (
    UNDECODABLE,
    Row,
    csv_header,
    first_json_keys,
    read_csv,
    read_jsonl,
)
from airflow_provider_contactsync.core.spec.models import FileSource
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NO_FILE,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    Source,
    check_chunk_size,
    chunked,
)
from airflow_provider_contactsync.sources.file_names import display_name


@dataclass(frozen=True)
class FileInfo:
    """One file found in the folder.

    :param path: what :meth:`FileSystem.open` takes (a full path on this file system).
    :param size: bytes.
    :param mtime: last modification, POSIX seconds: files are read oldest first.
    """

    path: str
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


class FileSystem(Protocol):
    """Where files come from: the local disk here; SFTP and FTP implement the same methods."""

    def list_files(
        self, folder: str, pattern: str, *, recursive: bool = False, exclude: Sequence[str] = ()
    ) -> list[FileInfo]:
        """Regular files under ``folder`` matching the glob ``pattern`` (see :func:`matches`), never
        inside an ``exclude`` folder; raise FileNotFoundError without the folder."""
        ...

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of the file, closed when the context ends."""
        ...

    def move(self, path: str, folder: str) -> str:
        """Move a file into ``folder`` (created if needed, never overwriting); return its new path."""
        ...

    def delete(self, path: str) -> None: ...


def matches(relative: str, pattern: str) -> bool:
    """A pattern with '/' is matched against the path relative to the folder, else against the name."""
    target = relative if "/" in pattern else PurePosixPath(relative).name
    return fnmatch.fnmatchcase(target, pattern)


class LocalFileSystem:
    """Local or mounted folders."""

    def list_files(
        self, folder: str, pattern: str, *, recursive: bool = False, exclude: Sequence[str] = ()
    ) -> list[FileInfo]:
        base = Path(folder or ".")
        if not base.is_dir():
            raise FileNotFoundError(f"no folder {str(base)!r}")
        root = base.resolve()
        excluded = {(base / e).resolve() for e in exclude}
        found = []
        descend = recursive or "/" in pattern  # '2024/*/*.csv' names subfolders itself
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if descend and (here / d).resolve() not in excluded)
            for name in filenames:
                path = here / name
                relative = path.relative_to(base).as_posix()
                if not matches(relative, pattern) or not path.is_file():
                    continue
                if not path.resolve().is_relative_to(root):  # a symlink pointing out of the folder
                    continue
                stat = path.stat()
                found.append(FileInfo(str(path), stat.st_size, stat.st_mtime))
        return found

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return open(path, "rb")

    def move(self, path: str, folder: str) -> str:
        source = Path(path)
        target_folder = Path(folder)
        target_folder.mkdir(parents=True, exist_ok=True)
        target = target_folder / source.name
        if target.exists():
            target = target_folder / f"{source.stem}.{time.strftime('%Y%m%dT%H%M%S')}{source.suffix}"
        os.replace(source, target)
        return str(target)

    def delete(self, path: str) -> None:
        os.unlink(path)


class FilesSource(Source):
    """Rows of the files matching ``spec.pattern`` under ``spec.path``.

    :param spec: a file source definition.
    :param filesystem: where the files are; by default the local disk for ``file`` sources and the
        provider hooks' servers for ``sftp`` and ``ftp`` ones.
    """

    spec: FileSource

    def __init__(self, spec: FileSource, *, filesystem: FileSystem | None = None) -> None:
        super().__init__(spec)
        if filesystem is None and spec.type != "file":
            from airflow_provider_contactsync.sources.remote_files import filesystem_for

            filesystem = filesystem_for(spec)
        self.filesystem = filesystem or LocalFileSystem()

    @property
    def archive_folder(self) -> str | None:
        """Where imported files go with ``after_import: archive`` (relative to the source folder)."""
        archive = self.spec.archive_path
        if archive is None:
            return None
        if archive.startswith("/"):
            return archive
        return str(PurePosixPath(self.spec.path or ".") / archive) if self.spec.path else archive

    def _list(self, pattern: str) -> list[FileInfo]:
        # exclude is relative to the listed folder (archive_folder is already joined onto it)
        exclude = [self.spec.archive_path] if self.spec.archive_path else []
        try:
            return self.filesystem.list_files(self.spec.path, pattern, recursive=self.spec.recursive, exclude=exclude)
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"source {self.spec.name!r}: cannot list {self.spec.path or 'the login folder'!r}: {exc}",
                key_path="source.path",
            ) from None

    def files(self) -> list[FileInfo]:
        """Matching files, oldest first (ties by path, so the order is stable)."""
        return sorted(self._list(self.spec.pattern), key=lambda f: (f.mtime, f.path))

    def markers(self) -> list[FileInfo]:
        """Done-marker files present (empty when the definition names no done marker)."""
        from airflow_provider_contactsync.sources.pickup import marker_glob

        glob = marker_glob(self.spec.ready)
        return self._list(glob) if glob else []

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        """Every matching file's rows (used for previews; the extract task reads file by file)."""
        check_chunk_size(chunk_size)
        self.skipped.clear()
        files = self.files()
        if not files:
            self.skipped[SKIP_NO_FILE] = 0  # no rows lost; the entry tells the run why it is empty
            return
        yield from chunked((row for info in files for row in self._all_rows(info, window)), chunk_size)

    def read_file(self, info: FileInfo, window: ReadWindow, *, chunk_size: int, hasher: Any = None) -> Iterator[Chunk]:
        """One file's rows in chunks that never mix files, so rows and rejects are counted per file.

        A problem with the whole file (empty, a header without a needed field, a broken archive)
        raises :class:`ConfigurationError` naming it; the caller drops what it read of that file.
        """
        check_chunk_size(chunk_size)
        if info.size == 0:
            raise ConfigurationError("the file is empty", file=info.path)
        yield from chunked(self._all_rows(info, window, hasher), chunk_size)

    def _all_rows(self, info: FileInfo, window: ReadWindow, hasher: Any = None) -> Iterator[Row | RowError]:
        """The rows of every member of the file, in order."""
        for _member, rows in self.file_rows(info, window, hasher=hasher):
            yield from rows

    def checksum(self, info: FileInfo) -> str:
        """sha256 of the file as stored (compressed bytes for archives)."""
        digest = hashlib.sha256()
        with self.filesystem.open(info.path) as binary:
            while block := binary.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def file_rows(
        self, info: FileInfo, window: ReadWindow, *, hasher: Any = None
    ) -> Iterator[tuple[str, Iterator[Row | RowError]]]:
        """``(member name, rows)`` for the file, or for each member of a zip archive."""
        with self.filesystem.open(info.path) as raw:
            binary: IO[bytes] = _Hashing(raw, hasher) if hasher is not None else raw
            for member, stream in _members(binary, info, self.spec.compression):
                yield member, self._rows(info, member, stream, window)
            if hasher is not None:
                _drain(binary)  # the checksum covers the whole file even if a reader stopped early

    def _rows(self, info: FileInfo, member: str, binary: IO[bytes], window: ReadWindow) -> Iterator[Row | RowError]:
        rows = self._parse(member, binary)
        if not self.incremental:
            yield from rows
            return
        field, key = self.spec.updated_field, self.spec.key
        assert field is not None and key is not None
        since, until = window.since, window.until
        for row in rows:
            if isinstance(row, RowError):
                yield row
                continue
            raw = row[field]
            if raw is None:
                self._skip(SKIP_NULL.format(field=field))
                continue
            try:
                value = normalize_value(raw, field=field)
                if since is not None and not since.is_before(value, row[key]):
                    continue  # read by an earlier run
            except RowError as exc:
                yield RowError(f"{member}: {key} {row[key]!r}: {exc.reason}", field=field, value=raw)
                continue
            except TypeError:
                yield RowError(
                    f"{member}: {key} {row[key]!r}: {field} {raw!r} cannot be compared with the cursor ({since})",
                    field=field,
                    value=raw,
                )
                continue
            if until is not None and _after(value, until):
                self._skip(SKIP_AFTER_UNTIL)
                continue
            yield row

    def _parse(self, member: str, binary: IO[bytes]) -> Iterator[Row | RowError]:
        """Rows of one (decompressed) stream; row problems come back as RowErrors naming the file."""
        spec = self.spec
        text = self._text(binary)
        try:
            if spec.format == "csv":
                rows = read_csv(text, spec.csv, spec.fields, name=member)
            else:
                rows = read_jsonl(text, spec.fields, name=member)
            for row in rows:
                if isinstance(row, RowError):
                    yield RowError(f"{member} {row.reason}", field=row.field, value=row.value)
                else:
                    yield row
        except _BROKEN_ARCHIVE as exc:
            raise ConfigurationError(f"cannot read the file to its end: {exc}", file=member) from None
        finally:
            text.detach()  # the file system closes the stream (and may still need it)

    def _text(self, binary: IO[bytes]) -> io.TextIOWrapper:
        encoding = self.spec.csv.encoding if self.spec.format == "csv" else "utf-8"
        # newline="" lets the csv module handle quoted newlines itself; undecodable bytes become
        # lone surrogates that core.rows turns into a reject of their row, not a failed file.
        try:
            return io.TextIOWrapper(binary, encoding=encoding, errors=UNDECODABLE, newline="")
        except LookupError:
            raise ConfigurationError(f"unknown encoding {encoding!r}", key_path="source.csv.encoding") from None

    def discover(self) -> list[str]:
        """The header of the oldest matching CSV file, or the keys of the first JSON object."""
        files = self.files()
        if not files:
            raise ConfigurationError(
                f"source {self.spec.name!r}: no file matches {self.spec.pattern!r} in {self.spec.path!r}",
                key_path="source.pattern",
            )
        [(info, columns)] = self.describe_files(limit=1)
        if isinstance(columns, str):
            raise ConfigurationError(columns, file=info.path)
        return columns

    def describe_files(self, limit: int = 20) -> list[tuple[FileInfo, list[str] | str]]:
        """The matching files (oldest first, at most ``limit``) with their columns, or why they cannot be read."""
        described: list[tuple[FileInfo, list[str] | str]] = []
        for info in self.files()[:limit]:
            try:
                with self.filesystem.open(info.path) as raw:
                    for member, binary in _members(raw, info, self.spec.compression):
                        text = self._text(binary)
                        try:
                            described.append((info, self._columns(member, text)))
                        finally:
                            text.detach()
                        break
                    else:
                        described.append((info, []))  # an archive with no file in it
            except ConfigurationError as exc:
                described.append((info, exc.message))
        return described

    def _columns(self, member: str, text: IO[str]) -> list[str]:
        if self.spec.format == "csv":
            return csv_header(text, self.spec.csv, name=member)
        return first_json_keys(text, name=member)

    def test_connection(self) -> tuple[bool, str]:
        try:
            files = self.files()
        except Exception as exc:  # the answer for the UI, not a crash
            return False, str(exc)
        where = f"{self.spec.path or '.'!s}"
        if not files:
            return True, f"{where} is readable; no file matches {self.spec.pattern!r} yet"
        return True, f"{where}: {len(files)} file(s) match {self.spec.pattern!r}"


class _Hashing(io.RawIOBase):
    """Feeds every byte read through a hash: the checksum of a file costs no second download."""

    def __init__(self, raw: IO[bytes], hasher: Any) -> None:
        self._raw = raw
        self._hasher = hasher

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self._hasher.update(data)
        buffer[: len(data)] = data
        return len(data)


_BROKEN_ARCHIVE = (gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile)
"""Errors of a corrupt or truncated archive (network errors are other OSErrors: those fail the task)."""


def _drain(binary: IO[bytes]) -> None:
    while binary.read(1 << 20):
        pass


def _compression_of(info: FileInfo, compression: str) -> str:
    if compression != "auto":
        return compression
    name = info.name.lower()
    return "gzip" if name.endswith(".gz") else "zip" if name.endswith(".zip") else "none"


def _members(binary: IO[bytes], info: FileInfo, compression: str) -> Iterator[tuple[str, IO[bytes]]]:
    """The streams to parse: the file itself, its gunzipped content, or each file in a zip archive.

    Gzip streams as it reads. A zip archive needs random access: a stream that cannot seek (FTP)
    is first spooled to a temporary file (memory up to 16 MB, then disk).
    """
    kind = _compression_of(info, compression)
    label = display_name(info.name)
    if kind == "none":
        yield label, binary
        return
    try:
        if kind == "gzip":
            with gzip.GzipFile(fileobj=binary, mode="rb") as unzipped:
                yield label, io.BufferedReader(unzipped, 1 << 20)  # type: ignore[arg-type]
            return
        seekable = binary if _can_seek(binary) else None
        with tempfile.SpooledTemporaryFile(max_size=16 << 20) as spool:
            if seekable is None:
                shutil.copyfileobj(binary, spool, 1 << 20)
                spool.seek(0)
            with zipfile.ZipFile(seekable or spool) as archive:  # type: ignore[arg-type]
                for entry in archive.infolist():
                    if not entry.is_dir():
                        with archive.open(entry) as member:
                            yield f"{label}!{display_name(entry.filename)}", member  # type: ignore[misc]
    except _BROKEN_ARCHIVE as exc:
        raise ConfigurationError(f"cannot read the {kind} archive: {exc}", file=info.path) from None


def _can_seek(binary: IO[bytes]) -> bool:
    try:
        return binary.seekable()
    except (AttributeError, OSError):
        return False


def _after(value: Any, until: dt.datetime) -> bool:
    """Newer than the safety-lag bound; numbers (version cursors) have no time bound."""
    if isinstance(value, dt.datetime):
        return value > until
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC) > until
    return False

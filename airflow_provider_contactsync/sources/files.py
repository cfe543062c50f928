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

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from airflow_provider_contactsync.core.cursor import UTC, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import Row, read_csv, read_jsonl
from airflow_provider_contactsync.core.spec.models import FileSource
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NO_FILE,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    Source,
    check_chunk_size,
)


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
    """Where files come from: the local disk here; SFTP and FTP implement the same two methods."""

    def list_files(self, folder: str, pattern: str) -> list[FileInfo]:
        """Regular files under ``folder`` matching the glob ``pattern``; raise FileNotFoundError without the folder."""
        ...

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of the file, closed when the context ends."""
        ...


class LocalFileSystem:
    """Local or mounted folders."""

    def list_files(self, folder: str, pattern: str) -> list[FileInfo]:
        base = Path(folder or ".")
        if not base.is_dir():
            raise FileNotFoundError(f"no folder {str(base)!r}")
        found = []
        for path in base.glob(pattern):
            stat = path.stat()
            if path.is_file():
                found.append(FileInfo(str(path), stat.st_size, stat.st_mtime))
        return found

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return open(path, "rb")


class FilesSource(Source):
    """Rows of the files matching ``spec.pattern`` under ``spec.path``.

    :param spec: a file source definition.
    :param filesystem: where the files are; local disk by default (SFTP/FTP pass their own).
    """

    spec: FileSource

    def __init__(self, spec: FileSource, *, filesystem: FileSystem | None = None) -> None:
        super().__init__(spec)
        self.filesystem = filesystem or LocalFileSystem()

    def files(self) -> list[FileInfo]:
        """Matching files, oldest first (ties by path, so the order is stable)."""
        try:
            found = self.filesystem.list_files(self.spec.path, self.spec.pattern)
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"source {self.spec.name!r}: cannot list {self.spec.path!r}: {exc}", key_path="source.path"
            ) from None
        return sorted(found, key=lambda f: (f.mtime, f.path))

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        files = self.files()
        if not files:
            self.skipped[SKIP_NO_FILE] = 0  # no rows lost; the entry tells the run why it is empty
            return
        chunk: Chunk = []
        for info in files:
            for row in self._rows(info, window):
                chunk.append(row)
                if len(chunk) == chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _rows(self, info: FileInfo, window: ReadWindow) -> Iterator[Row | RowError]:
        rows = self._read_file(info)
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
                yield RowError(f"{info.name}: {key} {row[key]!r}: {exc.reason}", field=field, value=raw)
                continue
            except TypeError:
                yield RowError(
                    f"{info.name}: {key} {row[key]!r}: {field} {raw!r} cannot be compared with the cursor ({since})",
                    field=field,
                    value=raw,
                )
                continue
            if until is not None and _after(value, until):
                self._skip(SKIP_AFTER_UNTIL)
                continue
            yield row

    def _read_file(self, info: FileInfo) -> Iterator[Row | RowError]:
        spec = self.spec
        with self.filesystem.open(info.path) as binary, self._text(binary) as text:
            if spec.format == "csv":
                yield from read_csv(text, spec.csv, spec.fields, name=info.path)
            else:
                yield from read_jsonl(text, spec.fields, name=info.path)

    def _text(self, binary: IO[bytes]) -> io.TextIOWrapper:
        encoding = self.spec.csv.encoding if self.spec.format == "csv" else "utf-8"
        # newline="" lets the csv module handle quoted newlines itself.
        return io.TextIOWrapper(binary, encoding=encoding, newline="")

    def discover(self) -> list[str]:
        """The header of the oldest matching CSV file, or the keys of the first JSON object."""
        files = self.files()
        if not files:
            raise ConfigurationError(
                f"source {self.spec.name!r}: no file matches {self.spec.pattern!r} in {self.spec.path!r}",
                key_path="source.pattern",
            )
        info = files[0]
        with self.filesystem.open(info.path) as binary, self._text(binary) as text:
            if self.spec.format == "csv":
                options = self.spec.csv
                if not options.header:
                    return list(options.columns or ())
                reader = csv.reader(text, delimiter=options.delimiter, quotechar=options.quotechar)
                header = next(reader, [])
                return [header[0].removeprefix("\ufeff"), *header[1:]] if header else []
            for line in text:
                if line.strip():
                    try:
                        document = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ConfigurationError(f"first line is not JSON: {exc.msg}", file=info.path) from None
                    return list(document) if isinstance(document, dict) else []
        return []

    def test_connection(self) -> tuple[bool, str]:
        try:
            files = self.files()
        except Exception as exc:  # the answer for the UI, not a crash
            return False, str(exc)
        where = f"{self.spec.path or '.'!s}"
        if not files:
            return True, f"{where} is readable; no file matches {self.spec.pattern!r} yet"
        return True, f"{where}: {len(files)} file(s) match {self.spec.pattern!r}"


def _after(value: Any, until: dt.datetime) -> bool:
    """Newer than the safety-lag bound; numbers (version cursors) have no time bound."""
    if isinstance(value, dt.datetime):
        return value > until
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC) > until
    return False

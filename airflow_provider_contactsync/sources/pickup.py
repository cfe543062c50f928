"""Which files a run imports: new or changed since their last import, completely uploaded, oldest first.

Two small JSON documents in the source's state store (next to the cursor) remember files:

- ``files_imported``: ``{path: {"size", "mtime", "sha256"}}``, written by the load task only after
  the contacts are in Brevo, so a run that fails anywhere leaves its files to be tried again.
  Paths are keys as :func:`~.file_names.portable_path` writes them.
- ``files_seen``: ``{path: {"size", "mtime", "since"}}``, what each check (sensor poke or run) saw,
  so ``ready.stable_seconds`` can tell a file still growing from a finished one without sleeping.

A file whose size or modification time changed since its import is a new version and is imported
again; one that was only touched (same size, same checksum) is not.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from airflow_provider_contactsync.core.spec.models import FileReadiness
from airflow_provider_contactsync.sources.file_names import portable_path
from airflow_provider_contactsync.sources.files import FileInfo

IMPORTED_KEY = "files_imported"
SEEN_KEY = "files_seen"

WAIT_MARKER = "waiting for its done marker"
WAIT_STABLE = "still changing (size or modification time)"


def marker_glob(readiness: FileReadiness) -> str | None:
    """Glob that lists the done markers (``{name}.done`` -> ``*.done``)."""
    if readiness.done_marker is None:
        return None
    return readiness.done_marker.format(name="*", stem="*")


def marker_name(readiness: FileReadiness, file_name: str) -> str:
    assert readiness.done_marker is not None
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    return readiness.done_marker.format(name=file_name, stem=stem)


@dataclass
class Selection:
    """The outcome of one look at the folder.

    :ivar ready: files to import now, oldest first (ties by path).
    :ivar waiting: reason -> files not ready yet (still uploading), for the log and the summary.
    :ivar unchanged: files already imported in this version.
    :ivar touched: paths whose modification time changed but not their content: recorded again.
    """

    ready: list[FileInfo] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    touched: dict[str, dict[str, Any]] = field(default_factory=dict)

    def wait(self, reason: str) -> None:
        self.waiting[reason] = self.waiting.get(reason, 0) + 1


def select_files(
    files: Iterable[FileInfo],
    markers: Iterable[FileInfo],
    readiness: FileReadiness,
    imported: dict[str, dict[str, Any]],
    seen: dict[str, dict[str, Any]],
    now: float,
    *,
    checksum: Callable[[FileInfo], str],
) -> tuple[Selection, dict[str, dict[str, Any]]]:
    """Sort the listed files into ready, waiting and unchanged; return the selection and the new ``seen``.

    :param files: files matching the source's pattern (markers among them are ignored).
    :param markers: files matching :func:`marker_glob` (empty without a done marker).
    :param imported: the ``files_imported`` document.
    :param seen: the ``files_seen`` document of the previous check.
    :param now: POSIX seconds of this check (the worker's clock, never the server's).
    :param checksum: sha256 of a file, asked only for a touched file (same size, new mtime).
    """
    selection = Selection()
    marker_paths = {m.path for m in markers}
    glob = marker_glob(readiness)
    new_seen: dict[str, dict[str, Any]] = {}
    for info in sorted(files, key=lambda f: (f.mtime, f.path)):
        if glob is not None and (info.path in marker_paths or fnmatch.fnmatchcase(info.name, glob)):
            continue
        key = portable_path(info.path)
        previous = imported.get(key)
        if previous is not None and (previous["size"], previous["mtime"]) == (info.size, info.mtime):
            selection.unchanged += 1
            continue
        if previous is not None and previous["size"] == info.size and previous.get("sha256"):
            digest = checksum(info)
            if digest == previous["sha256"]:
                selection.unchanged += 1
                selection.touched[key] = {"size": info.size, "mtime": info.mtime, "sha256": digest}
                continue
        before = seen.get(key)
        same = before is not None and (before["size"], before["mtime"]) == (info.size, info.mtime)
        new_seen[key] = {"size": info.size, "mtime": info.mtime, "since": before["since"] if same else now}
        if readiness.done_marker is not None:
            marker = str(PurePosixPath(info.path).with_name(marker_name(readiness, info.name)))
            if marker not in marker_paths:
                selection.wait(WAIT_MARKER)
                continue
        if readiness.stable_seconds is not None:
            if not same or now - before["since"] < readiness.stable_seconds:  # type: ignore[index]
                selection.wait(WAIT_STABLE)
                continue
        selection.ready.append(info)
    return selection, new_seen

"""Error report downloads: the file a run's XCom names, and only if it lies in that DAG's report folder.

The request names a DAG and a run, never a path: the report's location is read from the map task's
XCom, then checked to be ``<staging base>/<dag_id>/reports/<name>.csv`` for one of the staging bases in
use (the DAG's own ``staging`` argument, else ``[contactsync] staging``). Anything else (another folder,
``..``, a symbolic link leading out of a local staging folder, another protocol) is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

CHUNK_BYTES = 64 * 1024


class ReportRefused(Exception):
    """The stored location is not a report of this DAG under a staging base."""


def checked_report_path(url: str, dag_id: str, bases: list[str]) -> Any:
    """``url`` as an ObjectStoragePath when it is a report of ``dag_id`` under one of ``bases``."""
    from airflow.sdk import ObjectStoragePath

    try:
        path = ObjectStoragePath(url)
    except Exception as exc:  # an unknown protocol, a malformed URL
        raise ReportRefused(f"not a staging URL: {exc}") from None
    parts = PurePosixPath(path.path).parts
    if ".." in parts or "." in parts or not path.name.endswith(".csv"):
        raise ReportRefused("not a report file name")
    for base in bases:
        root = ObjectStoragePath(base)
        if root.protocol != path.protocol:
            continue
        folder = PurePosixPath(root.path) / dag_id / "reports"
        if PurePosixPath(path.path).parent != folder:
            continue
        if path.protocol == "file" and not _inside(path.path, str(folder)):
            continue
        return path
    raise ReportRefused("the report is not in this DAG's report folder of the staging store")


def _inside(file: str, folder: str) -> bool:
    """A local file really is in ``folder`` once symbolic links are resolved."""
    real_folder = os.path.realpath(folder)
    return os.path.dirname(os.path.realpath(file)) == real_folder


def stream(handle: Any) -> Iterator[bytes]:
    """An open report's bytes in chunks, then closed (constant memory, whatever its size or store)."""
    try:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()

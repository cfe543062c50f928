"""The file-source side of the operators: pick up new files, report per file, settle them after the load.

Extract reads each ready file (oldest first) into chunks of its own, so rows and rejects can be
counted per file. A file that fails as a whole (empty, a header without a needed field, a broken
archive) is dropped from the run with its reason, and is not marked imported: the next run tries
it again. Files are marked imported (and archived or deleted) only by the load task, after their
contacts are in Brevo.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from airflow_provider_contactsync.core.cursor import Cursor
from airflow_provider_contactsync.core.errors import ConfigurationError, Reject
from airflow_provider_contactsync.operators.contactsync import latest_cursor
from airflow_provider_contactsync.sources.base import ReadWindow
from airflow_provider_contactsync.sources.file_names import display_name, native_path, portable_path
from airflow_provider_contactsync.sources.files import FileInfo, FilesSource
from airflow_provider_contactsync.sources.pickup import IMPORTED_KEY, SEEN_KEY, Selection, select_files
from airflow_provider_contactsync.staging import ChunkStore
from airflow_provider_contactsync.state import SourceState


def look_for_files(source: FilesSource, state: SourceState, *, full_refresh: bool = False) -> Selection:
    """List the folder, record what this check saw (for ``stable_seconds``) and select ready files."""
    imported = {} if full_refresh else state.get(IMPORTED_KEY) or {}
    selection, seen = select_files(
        source.files(),
        source.markers(),
        source.spec.ready,
        imported,
        state.get(SEEN_KEY) or {},
        time.time(),
        checksum=source.checksum,
    )
    state.set(SEEN_KEY, seen)
    if selection.touched and not full_refresh:  # same content under a new mtime: not a new version
        state.set(IMPORTED_KEY, {**imported, **selection.touched})
    return selection


def describe_wait(source: FilesSource, selection: Selection) -> str:
    where = source.spec.path or "the login folder"
    waiting = ", ".join(f"{count} {reason}" for reason, count in selection.waiting.items()) or "none"
    return (
        f"no new file matching {source.spec.pattern!r} in {where!r} "
        f"({selection.unchanged} already imported; not ready yet: {waiting})"
    )


def extract_files(
    operator: Any, context: Any, source: FilesSource, window: ReadWindow, store: ChunkStore, *, full_refresh: bool
) -> dict[str, Any]:
    """Stage the rows of every ready file; skip the run (not fail it) when there is none.

    A run with no new file still goes on when contacts Brevo refused earlier wait in the ledger's
    retry queue: the load sends them again (they would otherwise wait for the next file).
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from airflow_provider_contactsync.load.ledger import queued_retries

    spec = source.spec
    selection = look_for_files(source, SourceState(context, operator.asset), full_refresh=full_refresh)
    if not selection.ready:
        waiting = queued_retries(store.dag_root)
        if not waiting:
            reason = describe_wait(source, selection)
            operator.log.info("Nothing to import, the run is skipped: %s", reason)  # the exception's text is not logged
            raise AirflowSkipException(reason)
        operator.log.info(
            "%s; %d contact(s) Brevo refused before wait to be sent again: the run goes on for them",
            describe_wait(source, selection),
            waiting,
        )
    source.skipped.clear()
    from airflow_provider_contactsync.operators.contactsync import trace_rows

    tracer = operator.tracer()
    urls: list[str] = []
    chunk_rows: list[int] = []
    chunk_files: list[int] = []
    files: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    latest: Cursor | None = None
    for info in selection.ready:
        hasher = hashlib.sha256()
        staged: list[tuple[str, int]] = []
        file_latest: Cursor | None = None
        try:
            for chunk in source.read_file(info, window, chunk_size=operator.chunk_size, hasher=hasher):
                if tracer is not None:
                    trace_rows(tracer, chunk, spec.key)
                staged.append((store.write("extract", len(urls) + len(staged), chunk), len(chunk)))
                if spec.updated_field and spec.key:
                    file_latest = latest_cursor(chunk, spec.updated_field, spec.key, file_latest)
        except ConfigurationError as exc:
            failed.append(_file_doc(info) | {"error": display_name(exc.message)})
            operator.log.error(
                "File %s is not imported this run (it will be tried again): %s", display_name(info.path), exc
            )
            continue
        for url, count in staged:
            urls.append(url)
            chunk_rows.append(count)
            chunk_files.append(len(files))
        files.append(_file_doc(info) | {"sha256": hasher.hexdigest(), "rows": sum(c for _, c in staged)})
        latest = file_latest.max(latest) if file_latest else latest
    rows = sum(chunk_rows)
    if tracer is not None:
        tracer.finish()
    if failed and not files:
        problems = "; ".join(f"{f['name']}: {f['error']}" for f in failed)
        raise AirflowFailException(f"no file could be imported: {problems}")
    operator.log.info(
        "Extracted %d rows from %d file(s) (%d failed, %d already imported, not ready: %s)",
        rows,
        len(files),
        len(failed),
        selection.unchanged,
        selection.waiting or "none",
    )
    return {
        "chunks": urls,
        "chunk_rows": chunk_rows,
        "chunk_files": chunk_files,
        "files": files,
        "failed_files": failed,
        "rows": rows,
        "skipped": dict(source.skipped),
        "full_refresh": full_refresh,
        "cursor_end": latest.to_json() if latest else None,
    }


def _file_doc(info: FileInfo) -> dict[str, Any]:
    """What XCom carries of a file: its path reversible (:func:`portable_path`), its name readable."""
    return {"path": portable_path(info.path), "name": display_name(info.name), "size": info.size, "mtime": info.mtime}


def file_rejects(extracted: dict[str, Any]) -> list[Reject]:
    """One error-report line per file that failed as a whole."""
    return [
        Reject(f["name"], None, None, f"file not imported: {f['error']}") for f in extracted.get("failed_files") or []
    ]


def per_file_counts(extracted: dict[str, Any], chunk_rejected: list[int]) -> list[dict[str, Any]]:
    """Rows and rejected rows of each imported file, from the per-chunk counts."""
    counts = [{"file": f["name"], "rows": f["rows"], "rejected": 0} for f in extracted["files"]]
    for file_index, rejected in zip(extracted["chunk_files"], chunk_rejected, strict=True):
        counts[file_index]["rejected"] += rejected
    return counts


def settle_files(operator: Any, context: Any, source: FilesSource, extracted: dict[str, Any]) -> list[str]:
    """After a successful load: mark the files imported, then archive or delete them; return what happened."""
    state = SourceState(context, operator.asset)
    imported = state.get(IMPORTED_KEY) or {}
    for doc in extracted["files"]:
        imported[doc["path"]] = {"size": doc["size"], "mtime": doc["mtime"], "sha256": doc["sha256"]}
    state.set(IMPORTED_KEY, imported)  # first: a failed move must not import the file twice
    action = source.spec.after_import
    done: list[str] = []
    gone: set[str] = set()
    for doc in extracted["files"]:
        try:
            if action == "archive":
                target = source.filesystem.move(native_path(doc["path"]), source.archive_folder or "")
                done.append(f"{doc['name']} archived to {display_name(target)}")
            elif action == "delete":
                source.filesystem.delete(native_path(doc["path"]))
                done.append(f"{doc['name']} deleted")
            else:
                continue
            gone.add(doc["path"])
        except OSError as exc:  # loaded and recorded: the file stays where it is, not re-imported
            operator.log.warning("Could not %s %s after its import: %s", action, doc["name"], exc)
            done.append(f"{doc['name']}: {action} failed ({display_name(str(exc))})")
    if gone:  # a file uploaded later under the same name is a new file
        state.set(IMPORTED_KEY, {path: value for path, value in imported.items() if path not in gone})
    return done

"""Each export execution's record and file, kept in the staging store: what the history shows and retries re-send.

Layout, under the staging base (``[contactsync] staging`` / the operators' ``staging``)::

    <dag_id>/exports/<run>/record.json    what the execution was: definition text as it was, filter,
                                          file name, size, SHA-256, rows, steps with timings, result
    <dag_id>/exports/<run>/<file name>    the exact file produced (kept history.keep_days days)
    <dag_id>/exports/<run>/ignored.json   present when someone chose "ignore" in the history

Airflow's DAG run stays the record of the execution itself (state, logs, try numbers); this adds
what Airflow does not keep: the produced bytes and the export's own facts. A retry (a manual run
with ``conf {"retry_of": "<run id>"}``) reads the original record and re-sends its file unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD = "record.json"
IGNORED = "ignored.json"
RETRY_OF = "retry_of"
"""The run conf key naming the execution a retry re-sends."""


def _safe(run_id: str) -> str:
    from airflow_provider_contactsync.staging import _safe as safe_run_id

    return safe_run_id(run_id)


def run_folder(base: str, dag_id: str, run_id: str) -> Any:
    """The ObjectStoragePath of one execution's record and file."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(base) / dag_id / "exports" / _safe(run_id)


@dataclass
class Step:
    name: str
    started: str
    seconds: float
    detail: str = ""
    ok: bool = True


@dataclass
class ExportRecord:
    """One execution of an export, as the history shows it."""

    dag_id: str
    run_id: str
    export: str
    integration: str
    status: str = "running"
    """running, built, delivered, failed, empty (nothing matched and the export skips empty files)."""
    definition_file: str | None = None
    definition_text: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    file_name: str | None = None
    file_url: str | None = None
    size: int | None = None
    sha256: str | None = None
    rows: int | None = None
    read: dict[str, Any] = field(default_factory=dict)
    delivered: dict[str, Any] = field(default_factory=dict)
    confirmation: str | None = None
    error: str | None = None
    retry_of: str | None = None
    cursor_before: dict[str, Any] | None = None
    cursor_after: dict[str, Any] | None = None
    started_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    keep_until: str | None = None
    file_removed: bool = False
    steps: list[Step] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[Step]:
        """Time one step; a step that raises is recorded with ok false and its error, then re-raised."""
        started = time.monotonic()
        entry = Step(name=name, started=_now(), seconds=0.0, detail=detail)
        self.steps.append(entry)
        try:
            yield entry
        except BaseException as exc:
            entry.ok = False
            entry.detail = (entry.detail + " " if entry.detail else "") + f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            entry.seconds = round(time.monotonic() - started, 3)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> ExportRecord:
        data = json.loads(text)
        steps = [Step(**s) for s in data.pop("steps", [])]
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known}, steps=steps)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def write_record(base: str, record: ExportRecord) -> None:
    """Store the record (owner-only on a local store: it names files of personal data)."""
    from airflow_provider_contactsync.staging import write_private

    folder = run_folder(base, record.dag_id, record.run_id)
    if folder.protocol == "file":
        write_private(str(folder.path) + "/" + RECORD, record.to_json().encode())
    else:
        (folder / RECORD).write_text(record.to_json(), encoding="utf-8")


def read_record(base: str, dag_id: str, run_id: str) -> ExportRecord | None:
    target = run_folder(base, dag_id, run_id) / RECORD
    try:
        return ExportRecord.from_json(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def list_records(base: str, dag_id: str, *, include_ignored: bool = False) -> list[ExportRecord]:
    """The records of a DAG's executions, newest first; ignored ones left out unless asked for."""
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(base) / dag_id / "exports"
    if not root.exists():
        return []
    records = []
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        if not include_ignored and (folder / IGNORED).exists():
            continue
        try:
            records.append(ExportRecord.from_json((folder / RECORD).read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda r: r.started_at, reverse=True)


def is_ignored(base: str, dag_id: str, run_id: str) -> bool:
    return (run_folder(base, dag_id, run_id) / IGNORED).exists()


def mark_ignored(base: str, dag_id: str, run_id: str, *, by: str, ignored: bool = True) -> None:
    """Hide (or show again) one execution in the history; Airflow's run and the record stay."""
    marker = run_folder(base, dag_id, run_id) / IGNORED
    if not (run_folder(base, dag_id, run_id) / RECORD).exists():
        raise FileNotFoundError(f"no export execution {run_id!r} for {dag_id}")
    if ignored:
        marker.write_text(json.dumps({"by": by, "at": _now()}), encoding="utf-8")
    elif marker.exists():
        marker.unlink()


def prune(base: str, dag_id: str, *, now: dt.datetime | None = None) -> list[str]:
    """Remove the files of executions past their ``keep_until`` (records stay); the run ids pruned."""
    now = now or dt.datetime.now(dt.timezone.utc)
    pruned = []
    for record in list_records(base, dag_id, include_ignored=True):
        if record.file_removed or not record.keep_until or not record.file_url:
            continue
        if dt.datetime.fromisoformat(record.keep_until) > now:
            continue
        from airflow.sdk import ObjectStoragePath

        target = ObjectStoragePath(record.file_url)
        if target.exists():
            target.unlink()
        record.file_removed = True
        write_record(base, record)
        pruned.append(record.run_id)
    return pruned

"""State kept between runs: the cursor, and a source's other small values (imported files).

The cursor lives in Airflow's asset state store (Airflow >= 3.3), keyed by the source's asset,
because XCom cannot give the right answer across manual runs, backfills and cleared tasks (see
docs/adr/0001-cursor-storage.md). On older Airflow it falls back to a Variable. It only moves
forward, and only after a successful load.

What each contact was last delivered as lives in the contact ledger (:mod:`.load.ledger`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_provider_contactsync.core.boundary import Boundary
from airflow_provider_contactsync.core.cursor import Cursor

log = logging.getLogger(__name__)

CURSOR_KEY = "cursor"


def source_asset(integration: str, source: str) -> Any:
    """The Airflow asset standing for one source's contacts in Brevo (inlet and outlet of the DAG)."""
    from airflow.sdk import Asset

    # "x-": Airflow's prefix for schemes no provider handles. Any other scheme makes the first Asset of
    # a process discover every provider's URI handlers (about a second with the Google provider
    # installed), which every DAG file parse would pay.
    return Asset(name=f"contactsync/{integration}/{source}", uri=f"x-contactsync://{integration}/{source}")


class SourceState:
    """A source's small persistent state (JSON values by key): the asset state store, else Variables.

    :param context: the task context (its ``asset_state_store`` is used when present).
    :param asset: the source's asset (must be an inlet or outlet of the task).
    """

    def __init__(self, context: Any, asset: Any) -> None:
        self._accessor = None
        store = context.get("asset_state_store") if hasattr(context, "get") else None
        if store is not None:
            self._accessor = store[asset]
        self._variable_prefix = f"contactsync__{asset.name.replace('/', '__')}__"

    @property
    def backend(self) -> str:
        return "asset_state_store" if self._accessor is not None else "variable"

    def get(self, key: str) -> Any:
        if self._accessor is not None:
            return self._accessor.get(key)
        from airflow.sdk import Variable

        raw = Variable.get(self._variable_prefix + key, default=None)
        return json.loads(raw) if raw else None

    def set(self, key: str, value: Any) -> None:
        if self._accessor is not None:
            self._accessor.set(key, value)
            return
        from airflow.sdk import Variable

        Variable.set(self._variable_prefix + key, json.dumps(value))

    def delete(self, key: str) -> None:
        if self._accessor is not None:
            self._accessor.delete(key)
            return
        from airflow.sdk import Variable

        Variable.delete(self._variable_prefix + key)


class CursorStore:
    """Read and advance one source's cursor from inside a task (it never moves backwards).

    :param context: the task context.
    :param asset: the source's asset (must be an inlet or outlet of the task).
    """

    def __init__(self, context: Any, asset: Any) -> None:
        self._state = SourceState(context, asset)

    @property
    def backend(self) -> str:
        return self._state.backend

    def get(self) -> Cursor | None:
        return Cursor.from_json(self._state.get(CURSOR_KEY))

    def advance(self, cursor: Cursor | None) -> Cursor | None:
        """Store ``cursor`` unless the stored one is already later; return the stored cursor."""
        current = self.get()
        if cursor is None:
            return current
        new = cursor.max(current)
        if new == current:
            return current
        self._state.set(CURSOR_KEY, new.to_json())
        return new

    def reset(self) -> None:
        self._state.delete(CURSOR_KEY)


BOUNDARY_FILE = "cursor-boundary.json"
"""Under ``<staging>/<dag_id>/state/``: the rows the last successful run read at the cursor's value."""


def write_boundary(target: Any, boundary: Boundary) -> str:
    """Write a boundary as JSON to an ObjectStoragePath; return its URL."""
    target.parent.mkdir(parents=True, exist_ok=True)
    cursor = Cursor(boundary.value, None).to_json()
    text = json.dumps({"cursor": cursor, "digests": boundary.digests})
    if target.protocol == "file":  # digests of personal data: owner only, like the error reports;
        from airflow_provider_contactsync.staging import write_private  # and atomic: it outlives runs

        write_private(target.path, text.encode("utf-8"))
    else:  # an object store replaces an object whole
        target.write_text(text, encoding="utf-8")
    return str(target)


def read_boundary(target: Any) -> Boundary | None:
    """The boundary stored at an ObjectStoragePath, or None."""
    if not target.exists():
        return None
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except ValueError:
        # Cut short by a kill before writes became atomic. Without it the rows at the cursor's value
        # are read again and the ledger finds them unchanged: slower once, never wrong.
        log.warning("cursor boundary %s is unreadable; the rows at the cursor's value are read again", target)
        return None
    cursor = Cursor.from_json(data.get("cursor"))
    return None if cursor is None else Boundary(cursor.value, dict(data.get("digests") or {}))


def promote_boundary(dag_root: Any, run_boundary_url: str, stored: Cursor | None) -> None:
    """After a successful load, keep the run's boundary if the stored cursor has its value.

    A run that read only rows at the value it started from adds them to the boundary it had.
    """
    from airflow.sdk import ObjectStoragePath

    run_boundary = read_boundary(ObjectStoragePath(run_boundary_url))
    if run_boundary is None or stored is None or run_boundary.value != stored.value:
        return
    target = dag_root / "state" / BOUNDARY_FILE
    kept = read_boundary(target)
    if kept is not None and kept.value == run_boundary.value:
        run_boundary.digests = {**kept.digests, **run_boundary.digests}
    write_boundary(target, run_boundary)

"""A definitions folder -> one DAG per file (``load_dags``) and the folder's problems (``check_definitions``).

The two are called from two one-line DAG files, because Airflow's dag-processor marks every DAG of
a file that has an import error as stale ("Deactivated"): the problems must be raised from a file
that holds no DAG (docs/adr/0003-broken-definition-isolation.md)::

    # contactsync_dags.py: every good definition's DAG; never raises for a broken one
    from airflow_provider_contactsync.dag_factory import load_dags; load_dags()

    # contactsync_check.py: no DAG; one import error listing every broken file, line and problem
    from airflow_provider_contactsync.dag_factory import check_definitions; check_definitions()

Which folder: the ``folder`` argument, else the ``[contactsync] definitions_folder`` option
(``AIRFLOW__CONTACTSYNC__DEFINITIONS_FOLDER``), else ``definitions/``. A relative folder is taken
from the folder of the DAG file that makes the call (Airflow's working directory is anything).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec import SourceDefinition, iter_definition_files, load_definition
from airflow_provider_contactsync.dag_factory.builder import build_dag
from airflow_provider_contactsync.dag_factory.errors import ContactsyncDefinitionsError
from airflow_provider_contactsync.dag_factory.index import dag_id_of, files_for_dag_id, read_or_empty

log = logging.getLogger(__name__)

DEFAULT_FOLDER = "definitions"

CHECK_FILE_HINT = (
    "To see these problems in the Airflow UI as an import error, without touching the other DAGs, "
    "add a DAG file with: from airflow_provider_contactsync.dag_factory import check_definitions; "
    "check_definitions()  (same folder argument as load_dags)"
)


def load_dags(
    folder: str | Path | None = None,
    *,
    staging: str | None = None,
    default_args: dict[str, Any] | None = None,
    strict: bool = False,
) -> dict[str, DAG]:
    """Build one DAG per definition file under ``folder``; return them by DAG id.

    A broken file (an invalid definition, a second file with the same DAG id, a DAG that fails to
    build) gets no DAG and is logged with every problem it has; it never stops, hides or
    deactivates the others, because this function does not raise for it. The Airflow import error
    that names it comes from :func:`check_definitions`, in a DAG file of its own. With
    ``strict=True`` the problems are raised instead, as :class:`ContactsyncDefinitionsError`
    (for scripts and CI checks: in a DAG file that would deactivate every DAG of the folder).

    When a worker parses the DAG file to run one task (``get_parsing_context().dag_id`` is set),
    only that DAG's definition is read and built; other files, broken or not, are not looked at.

    :param folder: definitions folder; see the module docstring for the default.
    :param staging: ObjectStoragePath URL for chunk files, passed to every operator.
    :param default_args: task arguments overriding the factory's defaults, for every DAG.
    :param strict: raise the problems instead of logging them.
    """
    root = definitions_folder(folder, _caller_file())
    files = _definition_files(root)
    wanted = get_parsing_context().dag_id
    if wanted is not None:
        return _load_one(files, wanted, staging=staging, default_args=default_args)

    scan = scan_definitions(files)
    dags = _build_dags(scan, staging=staging, default_args=default_args)
    if scan.problems:
        error = scan.error()
        if strict:
            raise error
        log.error("%s\nThe other definitions' DAGs are loaded. %s", error, CHECK_FILE_HINT)
    return dags


def check_definitions(folder: str | Path | None = None) -> None:
    """Raise one :class:`ContactsyncDefinitionsError` naming every broken definition file under ``folder``.

    For its own one-line DAG file, next to the one that calls :func:`load_dags` with the same
    folder: the error becomes that file's import error, and since that file holds no DAG, no DAG
    is deactivated. It finds what ``load_dags`` refuses, with the same messages: invalid
    definitions (every problem, with file, line and key), a second file with an already used DAG
    id, and a DAG that fails to build (built here and thrown away, never registered). Returns
    quietly when every file is good; Airflow then clears the import error. Does nothing on a
    worker (``get_parsing_context().dag_id`` set): workers only parse the file of the DAG they run.
    Called from a file that has already defined DAGs (``load_dags(); check_definitions()`` in one
    file), it logs the problems instead of raising, since raising would deactivate those DAGs.

    :param folder: definitions folder, as for :func:`load_dags`.
    """
    if get_parsing_context().dag_id is not None:
        return
    root = definitions_folder(folder, _caller_file())
    scan = scan_definitions(_definition_files(root))
    _build_dags(scan, register=False)
    if not scan.problems:
        return
    error = scan.error()
    shared_with = _dags_registered_by_this_file()
    if shared_with:
        # Raising would make Airflow deactivate these DAGs: the very thing this function avoids.
        log.error(
            "%s\ncheck_definitions() must be called from a DAG file of its own: this file also defines "
            "%s, which an import error would deactivate, so the problems are only logged.",
            error,
            ", ".join(sorted(shared_with)),
        )
        return
    raise error


def _dags_registered_by_this_file() -> set[str]:
    """DAG ids the DAG file being parsed has registered so far (``with DAG`` blocks, ``load_dags``)."""
    try:
        from airflow.sdk.definitions._internal.contextmanager import DagContext
    except ImportError:  # an internal module; without it the check cannot see, and raises as documented
        return set()
    module = DagContext.current_autoregister_module_name
    if module is None:
        return set()
    return {dag.dag_id for dag, mod in DagContext.autoregistered_dags if getattr(mod, "__name__", None) == module}


def definitions_folder(folder: str | Path | None = None, dag_file: str | None = None) -> Path:
    """The folder ``load_dags`` and ``check_definitions`` read: argument, then config option, then ``definitions/``."""
    if folder is None:
        from airflow.configuration import conf

        folder = conf.get("contactsync", "definitions_folder", fallback=None) or DEFAULT_FOLDER
    path = Path(folder).expanduser()
    if not path.is_absolute():
        path = (Path(dag_file).resolve().parent if dag_file else Path.cwd()) / path
    return path


@dataclass
class FolderScan:
    """A folder's definition files, sorted into good ones (by DAG id) and problems (by file)."""

    definitions: dict[str, tuple[Path, SourceDefinition]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    lost_dag_ids: dict[str, str] = field(default_factory=dict)

    def add_problem(self, path: Path, message: str, dag_id: str | None = None) -> None:
        self.problems[str(path)] = message
        if dag_id is not None:
            self.lost_dag_ids[str(path)] = dag_id

    def error(self) -> ContactsyncDefinitionsError:
        return ContactsyncDefinitionsError(self.problems, self.lost_dag_ids)


def scan_definitions(files: list[Path]) -> FolderScan:
    """Load every file; the first file (in sorted order) that gives a DAG id keeps it.

    Both DAG files sort the same way, so ``load_dags`` builds exactly the definitions that
    ``check_definitions`` finds good.
    """
    scan = FolderScan()
    defined_by: dict[str, Path] = {}
    for path in files:
        try:
            definition = load_definition(path)
        except Exception as exc:
            scan.add_problem(path, _problem(path, exc), _dag_id_of_file(path))
            continue
        dag_id = definition.dag_id
        if dag_id in defined_by:
            scan.add_problem(
                path,
                f"{path}: DAG id {dag_id} is already defined by {defined_by[dag_id]}; this file is "
                "ignored (give it another integration or source.name)",
            )
            continue
        defined_by[dag_id] = path
        scan.definitions[dag_id] = (path, definition)
    _limit_salesforce_connections(scan)
    # a broken file whose DAG id another file gives does not lose that DAG
    for path, dag_id in list(scan.lost_dag_ids.items()):
        if dag_id in scan.definitions:
            del scan.lost_dag_ids[path]
    return scan


def _limit_salesforce_connections(scan: FolderScan) -> None:
    """The seed: one Salesforce account (one connection) serves at most five definitions, contacts and
    leads together. The first five (in file order) keep their DAGs; a sixth is a problem naming them."""
    from airflow_provider_contactsync.core.spec.models import MAX_CONNECTIONS_PER_ORG

    users: dict[str, list[str]] = {}
    for dag_id, (path, definition) in list(scan.definitions.items()):
        if getattr(getattr(definition, "source", None), "type", None) != "salesforce":
            continue
        conn_id = definition.source.conn_id
        taken = users.setdefault(conn_id, [])
        if len(taken) < MAX_CONNECTIONS_PER_ORG:
            taken.append(f"{path.name} ({dag_id})")
            continue
        del scan.definitions[dag_id]
        scan.add_problem(
            path,
            f"{path}: source.conn_id: the Salesforce connection {conn_id!r} already serves "
            f"{MAX_CONNECTIONS_PER_ORG} definitions ({', '.join(taken)}); one Salesforce account can be connected "
            f"at most {MAX_CONNECTIONS_PER_ORG} times across contacts and leads",
            dag_id,
        )


def _build_dags(scan: FolderScan, *, register: bool = True, **kwargs: Any) -> dict[str, DAG]:
    """Build the scan's good definitions; one that fails to build becomes a problem of the scan."""
    dags: dict[str, DAG] = {}
    for dag_id, (path, definition) in scan.definitions.items():
        try:
            dags[dag_id] = build_dag(definition, file=str(path), register=register, **kwargs)
        except Exception as exc:
            scan.add_problem(path, f"{path}: cannot build DAG {dag_id}: {type(exc).__name__}: {exc}", dag_id)
    return dags


def _problem(path: Path, exc: Exception) -> str:
    if isinstance(exc, ConfigurationError):
        return str(exc)  # the loader's messages already name file, line and key
    return f"{path}: {type(exc).__name__}: {exc}"  # a loader bug must not hide the other DAGs either


def _definition_files(root: Path) -> list[Path]:
    files = iter_definition_files(root) if root.is_dir() else []
    if not files:
        log.warning("No contactsync definition files (*.yaml, *.yml) under %s", root)
    return files


def _dag_id_of_file(path: Path) -> str | None:
    return dag_id_of(read_or_empty(path))


def _load_one(
    files: list[Path], dag_id: str, *, staging: str | None, default_args: dict[str, Any] | None
) -> dict[str, DAG]:
    """The worker case: build only ``dag_id`` (the first valid file giving it, as a full parse does)."""
    problems: dict[str, str] = {}
    for path in files_for_dag_id(files, dag_id):
        try:
            # Formulas were checked by the DAG processor, and the transform task compiles them again.
            definition = load_definition(path, formulas=False)
        except Exception as exc:
            problems[str(path)] = _problem(path, exc)
            continue
        if definition.dag_id == dag_id:
            return {dag_id: build_dag(definition, file=str(path), staging=staging, default_args=default_args)}
    if problems:
        # The DAG this worker must run is broken: fail the import, and so the task, saying why.
        raise ContactsyncDefinitionsError(problems, dict.fromkeys(problems, dag_id))
    return {}  # not one of ours (another DAG of the same file, or another folder's)


def _caller_file() -> str | None:
    """``__file__`` of the module that called ``load_dags`` or ``check_definitions`` (the DAG file)."""
    frame = sys._getframe(2)
    return frame.f_globals.get("__file__")

"""``load_dags()``: every definition file of a folder -> one DAG each, for the one-line DAG file.

    from airflow_provider_contactsync.dag_factory import load_dags; load_dags()

Which folder: the ``folder`` argument, else the ``[contactsync] definitions_folder`` option
(``AIRFLOW__CONTACTSYNC__DEFINITIONS_FOLDER``), else ``definitions/``. A relative folder is taken
from the folder of the DAG file that calls ``load_dags`` (Airflow's working directory is anything).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec import SourceDefinition, iter_definition_files, load_definition
from airflow_provider_contactsync.dag_factory.builder import build_dag
from airflow_provider_contactsync.dag_factory.errors import ContactsyncDefinitionsError, register_report
from airflow_provider_contactsync.dag_factory.index import files_for_dag_id

log = logging.getLogger(__name__)

DEFAULT_FOLDER = "definitions"


def load_dags(
    folder: str | Path | None = None,
    *,
    staging: str | None = None,
    default_args: dict[str, Any] | None = None,
    strict: bool = False,
) -> dict[str, DAG]:
    """Build one DAG per definition file under ``folder``; return them by DAG id.

    Broken files (invalid definitions, two files with one DAG id, a DAG that fails to build) do not
    stop the others: every good DAG is built, then the problems are reported together as one
    Airflow import error of the calling DAG file, each naming its file, line and key (see
    :mod:`.errors`). With ``strict=True`` they are raised instead, as
    :class:`ContactsyncDefinitionsError` (for scripts and CI checks).

    When a worker parses the DAG file to run one task (``get_parsing_context().dag_id`` is set),
    only that DAG's definition is read and built; other files, broken or not, are not looked at.

    :param folder: definitions folder; see the module docstring for the default.
    :param staging: ObjectStoragePath URL for chunk files, passed to every operator.
    :param default_args: task arguments overriding the factory's defaults, for every DAG.
    :param strict: raise instead of reporting an import error.
    """
    root = definitions_folder(folder, _caller_file())
    files = iter_definition_files(root) if root.is_dir() else []
    if not files:
        log.warning("No contactsync definition files (*.yaml, *.yml) under %s", root)
    wanted = get_parsing_context().dag_id
    if wanted is not None:
        return _load_one(files, wanted, staging=staging, default_args=default_args)

    dags: dict[str, DAG] = {}
    defined_by: dict[str, Path] = {}
    problems: dict[str, str] = {}
    for path in files:
        definition = _definition_or_problem(path, problems)
        if definition is None:
            continue
        dag_id = definition.dag_id
        if dag_id in defined_by:
            problems[str(path)] = (
                f"{path}: DAG id {dag_id} is already defined by {defined_by[dag_id]}; this file is "
                "ignored (give it another integration or source.name)"
            )
            continue
        defined_by[dag_id] = path
        try:
            dags[dag_id] = build_dag(definition, file=str(path), staging=staging, default_args=default_args)
        except Exception as exc:
            problems[str(path)] = f"{path}: cannot build DAG {dag_id}: {type(exc).__name__}: {exc}"
    if problems:
        error = ContactsyncDefinitionsError(problems)
        if strict:
            raise error
        log.error("%s", error)
        register_report(error)
    return dags


def definitions_folder(folder: str | Path | None = None, dag_file: str | None = None) -> Path:
    """The folder ``load_dags`` reads: argument, then config option, then ``definitions/``."""
    if folder is None:
        from airflow.configuration import conf

        folder = conf.get("contactsync", "definitions_folder", fallback=None) or DEFAULT_FOLDER
    path = Path(folder).expanduser()
    if not path.is_absolute():
        path = (Path(dag_file).resolve().parent if dag_file else Path.cwd()) / path
    return path


def _load_one(
    files: list[Path], dag_id: str, *, staging: str | None, default_args: dict[str, Any] | None
) -> dict[str, DAG]:
    """The worker case: build only ``dag_id`` (the first valid file giving it, as a full parse does)."""
    problems: dict[str, str] = {}
    for path in files_for_dag_id(files, dag_id):
        # Formulas were checked by the DAG processor, and the transform task compiles them again.
        definition = _definition_or_problem(path, problems, formulas=False)
        if definition is not None and definition.dag_id == dag_id:
            return {dag_id: build_dag(definition, file=str(path), staging=staging, default_args=default_args)}
    if problems:
        # The DAG this worker must run is broken: fail the import, and so the task, saying why.
        raise ContactsyncDefinitionsError(problems)
    return {}  # not one of ours (another DAG of the same file, or another folder's)


def _definition_or_problem(path: Path, problems: dict[str, str], formulas: bool = True) -> SourceDefinition | None:
    try:
        return load_definition(path, formulas=formulas)
    except ConfigurationError as exc:  # the loader's messages already name file, line and key
        problems[str(path)] = str(exc)
    except Exception as exc:  # a loader bug must not hide the folder's other DAGs
        problems[str(path)] = f"{path}: {type(exc).__name__}: {exc}"
    return None


def _caller_file() -> str | None:
    """``__file__`` of the module that called ``load_dags`` (the DAG file), if any."""
    frame = sys._getframe(2)
    return frame.f_globals.get("__file__")

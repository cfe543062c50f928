"""Find the one definition file behind a DAG id without validating the others (the worker case).

A worker re-parses the DAG file for every task it runs; it needs one DAG, so it should pay for one
definition. The DAG id is ``contactsync__<integration>__<source>`` (an export's:
``contactsync_export__<integration>__<name>``) and names contain no ``__``, so
a file can only match if both names appear in its text; those few are read, and only
``integration`` and ``source.name`` are looked at.

Files are read and parsed within the same limits as definitions (size, nesting, values after
alias expansion: ``core/spec/limits.py``), so a YAML bomb that names the DAG cannot hang a worker.
Only duplicate keys are tolerated (the last one wins), to name the DAG id of a broken file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from airflow_provider_contactsync.core.errors import DefinitionError
from airflow_provider_contactsync.core.spec.loader import read_definition_text
from airflow_provider_contactsync.core.spec.yaml_source import parse_yaml

DAG_ID_PREFIX = "contactsync__"
EXPORT_DAG_ID_PREFIX = "contactsync_export__"


def split_dag_id(dag_id: str) -> tuple[str, str] | None:
    """``contactsync__crm__customers`` -> ``("crm", "customers")`` (an export's DAG id too); None for other DAG ids."""
    parts = dag_id.split("__")
    if (
        len(parts) != 3
        or parts[0] not in (DAG_ID_PREFIX[:-2], EXPORT_DAG_ID_PREFIX[:-2])
        or not parts[1]
        or not parts[2]
    ):
        return None
    return parts[1], parts[2]


def files_for_dag_id(files: Iterable[Path], dag_id: str) -> list[Path]:
    """Definition files (in the given order) whose integration and source name give ``dag_id``.

    Files are first filtered by whether both names occur in their text; when that finds nothing
    (a name written with YAML escapes, say), every file is read, so the answer never depends on
    the shortcut.
    """
    names = split_dag_id(dag_id)
    if names is None:
        return []
    texts = [(path, read_or_empty(path)) for path in files]
    likely = [(path, text) for path, text in texts if names[0] in text and names[1] in text]
    matches = [path for path, text in likely if dag_id_of(text) == dag_id]
    if matches:
        return matches
    checked = {path for path, _ in likely}
    return [path for path, text in texts if path not in checked and dag_id_of(text) == dag_id]


def dag_id_of(text: str) -> str | None:
    """The DAG id a definition's text asks for, or None when the text doesn't say (or isn't YAML within the limits)."""
    try:
        data = parse_yaml(text, file="<definition>", lenient=True).data
    except DefinitionError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("kind") == "export":
        prefix, name = EXPORT_DAG_ID_PREFIX, data.get("name")
    elif isinstance(data.get("source"), dict):
        prefix, name = DAG_ID_PREFIX, data["source"].get("name")
    else:
        return None
    integration = data.get("integration")
    if not isinstance(integration, str) or not isinstance(name, str):
        return None
    # the models strip surrounding whitespace, so the DAG id does too
    return f"{prefix}{integration.strip()}__{name.strip()}"


def read_or_empty(path: Path) -> str:
    """A definition file's text; "" when it cannot be read or is over the size limit."""
    try:
        return read_definition_text(path)
    except DefinitionError:
        return ""

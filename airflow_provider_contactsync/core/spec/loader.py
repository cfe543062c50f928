"""Load source definitions: safe YAML, credential refusal, schema validation, formula checks.

Every problem found in a file is reported at once, each naming the file, the line, the key path
and, for formulas, the position inside the formula.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_contactsync.core.errors import (
    ConfigurationError,
    DefinitionError,
    DefinitionErrors,
    FormulaError,
)
from airflow_provider_contactsync.core.spec.models import (
    FileSource,
    MongoSource,
    SourceDefinition,
    SqlSource,
)
from airflow_provider_contactsync.core.spec.secrets import find_credentials
from airflow_provider_contactsync.core.spec.yaml_source import KeyPath, YamlDocument, dotted, parse_yaml

DEFINITION_SUFFIXES = (".yaml", ".yml")

_SOURCE_MODELS: dict[str, type[BaseModel]] = {
    **{name: SqlSource for name in ("postgres", "bigquery", "snowflake")},
    "mongo": MongoSource,
    **{name: FileSource for name in ("file", "sftp", "ftp")},
}
_PATH_IN_MESSAGE = re.compile(r"^((?:source|mapping|transform|destination|alerts)(?:\.[\w.]+)?): (.*)$", re.S)


def load_definition(path: str | Path, *, formulas: bool = True) -> SourceDefinition:
    """Read, validate and check one definition file; raise DefinitionErrors listing every problem.

    ``formulas=False`` skips compiling the formulas: for a worker that re-reads a definition the
    DAG processor has already checked, where the formula parser's start-up is most of the time.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read the file: {exc}", file=str(path)) from None
    definition = parse_definition(text, file=str(path), formulas=formulas)
    return _resolve_local_folder(definition, path.parent)


def parse_definition(text: str, *, file: str = "<definition>", formulas: bool = True) -> SourceDefinition:
    """Validate definition text; ``file`` is only used to name the source in errors."""
    document = parse_yaml(text, file=file)
    errors: list[ConfigurationError] = [
        DefinitionError(reason, file=file, key_path=dotted(key_path), file_line=document.line_of(key_path))
        for key_path, reason in find_credentials(document.data)
    ]
    if errors:
        raise DefinitionErrors(errors, file=file)
    if not isinstance(document.data, dict):
        raise DefinitionError("a definition is a mapping of keys (integration, source, ...)", file=file)
    try:
        definition = SourceDefinition.model_validate(document.data)
    except ValidationError as exc:
        raise DefinitionErrors(_schema_errors(exc, document, file), file=file) from None
    errors = check_formulas(definition, document, file) if formulas else []
    if errors:
        raise DefinitionErrors(errors, file=file)
    return definition


def _resolve_local_folder(definition: SourceDefinition, base: Path) -> SourceDefinition:
    """A relative folder of a ``file`` source is relative to the definition file, not the worker's cwd."""
    source = definition.source
    if not isinstance(source, FileSource) or source.type != "file" or Path(source.path).is_absolute():
        return definition
    resolved = source.model_copy(update={"path": str((base / source.path).resolve())})
    return definition.model_copy(update={"source": resolved})


def check_formulas(
    definition: SourceDefinition, document: YamlDocument | None = None, file: str | None = None
) -> list[ConfigurationError]:
    """Compile every formula against the source fields; return the errors, located."""
    if not definition.transform:
        return []
    from airflow_provider_contactsync.core.formulas import compile_formula

    fields = definition.source.fields
    errors: list[ConfigurationError] = []
    for name, text in definition.transform.items():
        if isinstance(text, str) and _compiles(text, _fields_named_in(text, fields)):
            continue
        try:
            compile_formula(text, fields)
        except FormulaError as exc:
            line = document.line_of(("transform", name)) if document else None
            errors.append(exc.located(file=file, key_path=f"transform.{name}", file_line=line))
    return errors


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fields_named_in(text: str, fields: list[str]) -> tuple[str, ...]:
    """The fields a formula can refer to: those whose first name part appears in its text.

    A formula's check and compilation depend only on which of its identifiers are fields, so this
    is a cache key that definitions with different field lists share.
    """
    names = set(_IDENTIFIER.findall(text))
    return tuple(f for f in fields if f.partition(".")[0] in names)


_CHECK_ONLY_MAX_CHARS = 100
"""Formulas up to this long are checked, not compiled, on the cached path. Compiling can only add
one error to checking: Python's nesting limit (200), and the shortest formulas that reach it are
about 200 characters (``!!...!a``, ``a+a+...``). Generating and compiling code was a third of the
load time of a definition."""


@functools.lru_cache(maxsize=4096)
def _compiles(text: str, fields: tuple[str, ...]) -> bool:
    """Whether a formula compiles against these fields (cached: many definitions share formulas).

    A failure is not explained here: the caller compiles again against every field, so the
    message (and its "did you mean" hint) is the one the full field list gives.
    """
    from airflow_provider_contactsync.core.formulas import check_transform, compile_formula

    if len(text) <= _CHECK_ONLY_MAX_CHARS:
        return not check_transform({"formula": text}, fields)
    try:
        compile_formula(text, fields)
    except FormulaError:
        return False
    return True


def iter_definition_files(folder: str | Path) -> list[Path]:
    """Definition files under ``folder``, sorted, hidden files and folders skipped."""
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in DEFINITION_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _schema_errors(exc: ValidationError, document: YamlDocument, file: str) -> list[ConfigurationError]:
    errors: list[ConfigurationError] = []
    for error in exc.errors(include_url=False):
        loc = _user_loc(error["loc"])
        message = _message(error, loc, document.data)
        located = _PATH_IN_MESSAGE.match(message)
        if located:
            loc = tuple(located.group(1).split("."))
            message = located.group(2)
        errors.append(
            DefinitionError(message, file=file, key_path=dotted(loc) or None, file_line=document.line_of(loc))
        )
    return errors


def _user_loc(loc: tuple[Any, ...]) -> KeyPath:
    """Drop pydantic's discriminator tags (``source.postgres.table`` -> ``source.table``)."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "source" and parts[1] in _SOURCE_MODELS:
        del parts[1]
    return tuple(p for p in parts if p != "[key]")


def _message(error: dict[str, Any], loc: KeyPath, data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1], data)
        hint = difflib.get_close_matches(key, allowed, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown key {key!r}{suggestion}; allowed: {', '.join(sorted(allowed))}"
    if kind == "missing":
        return "this key is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"type must be one of: {', '.join(_SOURCE_MODELS)}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _allowed_keys(parent: KeyPath, data: Any) -> list[str]:
    model: type[BaseModel] | None = SourceDefinition
    node = data
    for part in parent:
        node = node.get(part) if isinstance(node, dict) else None
        if model is None:
            break
        if part == "source":
            source_type = node.get("type") if isinstance(node, dict) else None
            model = _SOURCE_MODELS.get(str(source_type), SqlSource)
            continue
        annotation = model.model_fields.get(str(part))
        inner = getattr(annotation, "annotation", None) if annotation else None
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return list(model.model_fields) if model else []

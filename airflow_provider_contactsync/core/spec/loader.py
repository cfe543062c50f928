"""Load source definitions: safe YAML, credential refusal, schema validation, formula checks.

Every problem found in a file is reported at once, each naming the file, the line, the key path
and, for formulas, the position inside the formula: one pass checks credentials, the schema, the
formulas and the mapping, each as far as the rest of the file allows (:func:`inspect_definition`).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_contactsync.core.errors import (
    ConfigurationError,
    DefinitionError,
    DefinitionErrors,
    FormulaError,
)
from airflow_provider_contactsync.core.spec.export_models import ExportDefinition
from airflow_provider_contactsync.core.spec.limits import DEFINITION_SIZE, ERRORS_SHOWN
from airflow_provider_contactsync.core.spec.models import (
    ATTRIBUTE_PATTERN,
    FIELD_PATTERN,
    MAPPING_ERROR_TYPE,
    PATTERN_DESCRIPTIONS,
    Destination,
    FileSource,
    MongoSource,
    Payload,
    SourceDefinition,
    SqlSource,
    expand_events_source,
    expand_salesforce_source,
    mapping_problems,
)
from airflow_provider_contactsync.core.spec.secrets import find_credentials
from airflow_provider_contactsync.core.spec.yaml_source import KeyPath, YamlDocument, check_size, dotted, parse_yaml

DEFINITION_SUFFIXES = (".yaml", ".yml")

_SOURCE_MODELS: dict[str, type[BaseModel]] = {
    **{name: SqlSource for name in ("postgres", "bigquery", "snowflake")},
    "mongo": MongoSource,
    **{name: FileSource for name in ("file", "sftp", "ftp")},
}
_PATH_IN_MESSAGE = re.compile(
    r"^((?:source|mapping|transform|destination|deletes|consent|alerts)(?:\.[\w.]+)?): (.*)$", re.S
)


def load_definition(path: str | Path, *, formulas: bool = True) -> SourceDefinition | ExportDefinition:
    """Read, validate and check one definition file; raise DefinitionErrors listing every problem.

    ``formulas=False`` skips compiling the formulas: for a worker that re-reads a definition the
    DAG processor has already checked, where the formula parser's start-up is most of the time.
    """
    return inspect_definition_file(path, formulas=formulas).raise_for_errors()


def parse_definition(text: str, *, file: str = "<definition>", formulas: bool = True) -> SourceDefinition:
    """Validate definition text; ``file`` is only used to name the source in errors."""
    return inspect_definition(text, file=file, formulas=formulas).raise_for_errors()


@dataclass
class DefinitionReport:
    """One pass over a definition file: every problem found, and the definition when there is none.

    :ivar file: the file, as named in errors.
    :ivar errors: every problem, sorted by line, each naming the file, line and key path.
    :ivar document: the parsed YAML with key lines (None when the file is not readable YAML).
    :ivar validated: the definition when the schema accepted it (other problems may remain).
    :ivar credential_paths: key paths refused as credentials (their values are never used).
    """

    file: str
    errors: list[ConfigurationError] = field(default_factory=list)
    document: YamlDocument | None = None
    validated: SourceDefinition | None = None
    credential_paths: frozenset[KeyPath] = frozenset()

    @property
    def definition(self) -> SourceDefinition | None:
        """The definition, when the file has no problem."""
        return None if self.errors else self.validated

    def raise_for_errors(self) -> SourceDefinition:
        """The definition; raises a :class:`DefinitionError` (every problem, when several) if the file has any."""
        if len(self.errors) == 1 and isinstance(self.errors[0], DefinitionError):
            raise self.errors[0]
        if self.errors:
            raise DefinitionErrors(self.errors, file=self.file)
        assert self.validated is not None
        return self.validated

    def locate(self, error: ConfigurationError) -> ConfigurationError:
        """Name this file and the line of the error's key path (for problems found by later checks)."""
        path: KeyPath = ()
        if error.key_path:
            head, _, rest = error.key_path.partition(".")
            path = (head, rest) if head in _USER_NAMED and rest else tuple(error.key_path.split("."))
        line = self.document.line_of(path) if self.document is not None and path else None
        return error.located(file=self.file, file_line=line)

    def mapping_view(self) -> SourceDefinition | None:
        """What checking the mapping against an account needs, even when other parts of the file are broken.

        The definition when it validates; else an unvalidated stand-in holding only the mapping
        entries and payload that are valid on their own, the destination (or its defaults and the
        connection it names) and the formulas (``source`` is absent). None when no mapping entry is
        usable.
        """
        if self.validated is not None:
            return self.validated
        data = self.document.data if self.document is not None else None
        raw = data.get("mapping") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return None
        mapping = {
            k.strip(): v.strip()
            for k, v in raw.items()
            if isinstance(k, str) and isinstance(v, str) and _FIELD.match(k.strip()) and _ATTRIBUTE.match(v.strip())
        }
        if not mapping:
            return None
        destination = _valid_or(Destination, data.get("destination"), None)
        if destination is None:
            conn_id = self.destination_conn_id()
            destination = Destination.model_construct(**({"conn_id": conn_id} if conn_id else {}))
        return SourceDefinition.model_construct(
            mapping=mapping,
            transform=_usable_transform(data) or {},
            destination=destination,
            payload=_valid_or(Payload, data.get("payload"), None),
        )

    def result_types(self) -> dict[str, str]:
        """Static result type of every formula that compiles (the others are left out)."""
        from airflow_provider_contactsync.core.formulas import compile_formula

        if self.validated is not None:
            transform, fields = dict(self.validated.transform), list(self.validated.source.fields)
        else:
            data = self.document.data if self.document is not None else None
            transform = (_usable_transform(data) or {}) if isinstance(data, dict) else {}
            fields = (_usable_fields(data) or []) if isinstance(data, dict) else []
        types: dict[str, str] = {}
        for name, text in transform.items():
            try:
                types[name] = compile_formula(text, fields).result_type
            except FormulaError:
                continue
        return types

    def destination_conn_id(self) -> str | None:
        """The Brevo connection the file names (the default when it names none); None when unusable."""
        if self.validated is not None:
            return self.validated.destination.conn_id
        data = self.document.data if self.document is not None else None
        destination = data.get("destination", {}) if isinstance(data, dict) else None
        if not isinstance(destination, dict) or ("destination", "conn_id") in self.credential_paths:
            return None
        conn_id = destination.get("conn_id", Destination.model_fields["conn_id"].default)
        return (conn_id.strip() or None) if isinstance(conn_id, str) else None


def inspect_definition_file(path: str | Path, *, formulas: bool = True) -> DefinitionReport:
    """Like :func:`inspect_definition`, for a file; a relative folder of a ``file`` source is made absolute."""
    path = Path(path)
    try:
        text = read_definition_text(path)
    except DefinitionError as exc:
        return DefinitionReport(str(path), [exc])
    report = inspect_definition(text, file=str(path), formulas=formulas)
    if report.validated is not None:
        report.validated = _resolve_local_folder(report.validated, path.parent)
    return report


def read_definition_text(path: Path) -> str:
    """A definition file's text; a file over the size limit is refused without being read whole."""
    try:
        with path.open("rb") as stream:
            check_size(path.stat().st_size, file=str(path))
            data = stream.read(DEFINITION_SIZE.value * 1024 + 1)  # it may have grown since, or be /dev/zero
        check_size(len(data), file=str(path), truncated=True)
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        column = exc.start - (exc.object.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DefinitionError(
            f"cannot read the file: not UTF-8 text (byte {exc.object[exc.start]:#04x}: {exc.reason}); "
            "definitions are UTF-8",
            file=str(path),
            line=line,
            column=column,
        ) from None
    except OSError as exc:
        raise DefinitionError(f"cannot read the file: {exc}", file=str(path)) from None


def inspect_definition(text: str, *, file: str = "<definition>", formulas: bool = True) -> DefinitionReport:
    """Check definition text in one pass and report every problem found, without raising.

    Credentials, the schema (unknown keys, types), every formula whose text and the source fields
    are usable, and the mapping's consistency are each checked even when other parts are broken.
    Only YAML that cannot be read at all (syntax, duplicate keys, tags) stops at its first problem.
    """
    try:
        document = parse_yaml(text, file=file)
    except DefinitionError as exc:
        return DefinitionReport(file, [exc])
    data = document.data
    credentials = list(find_credentials(data))
    report = DefinitionReport(file, document=document, credential_paths=frozenset(p for p, _ in credentials))
    errors = report.errors
    errors.extend(
        DefinitionError(reason, file=file, key_path=dotted(key_path), file_line=document.line_of(key_path))
        for key_path, reason in credentials
    )
    if not isinstance(data, dict):
        errors.append(DefinitionError("a definition is a mapping of keys (integration, source, ...)", file=file))
        return report
    if data.get("kind") == "export":
        return _inspect_export(report, data, document, file)
    try:
        report.validated = SourceDefinition.model_validate(data)
    except ValidationError as exc:
        errors.extend(_schema_errors(exc, document, file, skip=report.credential_paths))
        errors.extend(_consistency_errors(data, document, file))
    if formulas:
        if report.validated is not None:
            errors.extend(check_formulas(report.validated, document, file))
        else:
            transform, fields = _usable_transform(data), _usable_fields(data)
            if transform and fields:
                errors.extend(_formula_errors(transform, fields, document, file))
    if len(errors) > 1:
        errors.sort(key=lambda error: error.file_line or 0)
    if len(errors) > ERRORS_SHOWN.value:
        hidden = len(errors) - ERRORS_SHOWN.value
        del errors[ERRORS_SHOWN.value :]
        errors.append(
            DefinitionError(
                f"... and {hidden:,} more problems (only the first {ERRORS_SHOWN.value} of a file are listed)",
                file=file,
            )
        )
    return report


def _inspect_export(
    report: DefinitionReport, data: dict[str, Any], document: YamlDocument, file: str
) -> DefinitionReport:
    """The export branch of :func:`inspect_definition`: schema, then the ``where`` condition."""
    errors = report.errors
    try:
        report.validated = ExportDefinition.model_validate(data)  # type: ignore[assignment]
    except ValidationError as exc:
        errors.extend(_schema_errors(exc, document, file, skip=report.credential_paths, root=ExportDefinition))
    if report.validated is not None:
        from airflow_provider_contactsync.exports.condition import check_condition

        problem = check_condition(report.validated.content)  # type: ignore[attr-defined]
        if problem is not None:
            errors.append(problem.located(file=file, file_line=document.line_of(("content", "where"))))
    errors.sort(key=lambda error: error.file_line or 0)
    del errors[ERRORS_SHOWN.value :]
    return report


_USER_NAMED = ("mapping", "transform")
_FIELD = re.compile(FIELD_PATTERN)
_ATTRIBUTE = re.compile(ATTRIBUTE_PATTERN)


def _usable_fields(data: dict[str, Any]) -> list[str] | None:
    """The source fields of raw data when they can be trusted: a list of names (None otherwise)."""
    source = data.get("source")
    fields = source.get("fields") if isinstance(source, dict) else None
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        return None
    return [f.strip() for f in fields]


def _usable_transform(data: dict[str, Any]) -> dict[str, str] | None:
    """The formulas of raw data written as text (None when ``transform`` is not a mapping)."""
    transform = data.get("transform", {})
    if not isinstance(transform, dict):
        return None
    return {k.strip(): v for k, v in transform.items() if isinstance(k, str) and isinstance(v, str)}


def _valid_or(model: type[BaseModel], value: Any, default: Any) -> Any:
    if value is None:
        return default
    try:
        return model.model_validate(value)
    except ValidationError:
        return default


def _consistency_errors(data: dict[str, Any], document: YamlDocument, file: str) -> list[ConfigurationError]:
    """Mapping problems from raw data: pydantic skips the model's own check when a field is invalid."""
    data = expand_salesforce_source(expand_events_source(data))  # presets' fields and mapping, as the model sees
    mapping = data.get("mapping")
    if not isinstance(mapping, dict):
        return []
    transform = _usable_transform(data)
    payload = data.get("payload")
    problems = mapping_problems(
        _usable_fields(data),
        transform.keys() if transform is not None else None,
        mapping,
        payload.get("field") if isinstance(payload, dict) else None,
    )
    return [
        DefinitionError(message, file=file, key_path=dotted(path), file_line=document.line_of(path))
        for path, message in problems
    ]


def _resolve_local_folder(definition: SourceDefinition, base: Path) -> SourceDefinition:
    """A relative folder of a ``file`` source is relative to the definition file, not the worker's cwd."""
    source = getattr(definition, "source", None)
    if not isinstance(source, FileSource) or source.type != "file" or Path(source.path).is_absolute():
        return definition
    resolved = source.model_copy(update={"path": str((base / source.path).resolve())})
    return definition.model_copy(update={"source": resolved})


def check_formulas(
    definition: SourceDefinition, document: YamlDocument | None = None, file: str | None = None
) -> list[ConfigurationError]:
    """Compile every formula (and every rule: deleted_when, list conditions, consent); return the errors, located."""
    from airflow_provider_contactsync.core.sync_rules import check_rules

    errors = (
        _formula_errors(definition.transform, definition.source.fields, document, file) if definition.transform else []
    )
    for error in check_rules(definition):
        path = tuple(int(p) if p.isdigit() else p for p in (error.key_path or "").split("."))
        errors.append(error.located(file=file, file_line=document.line_of(path) if document else None))
    return errors


def _formula_errors(
    transform: dict[str, str], fields: list[str], document: YamlDocument | None, file: str | None
) -> list[ConfigurationError]:
    from airflow_provider_contactsync.core.formulas import compile_formula

    errors: list[ConfigurationError] = []
    for name, text in transform.items():
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


def _schema_errors(
    exc: ValidationError,
    document: YamlDocument,
    file: str,
    *,
    skip: frozenset[KeyPath] = frozenset(),
    root: type[BaseModel] = SourceDefinition,
) -> list[ConfigurationError]:
    """pydantic's errors, located; not those under ``skip`` (credentials, already reported) nor the
    mapping check's, which :func:`_consistency_errors` reports in full."""
    errors: list[ConfigurationError] = []
    for error in exc.errors(include_url=False):
        if error["type"] == MAPPING_ERROR_TYPE:
            continue
        loc = _user_loc(error["loc"])
        if any(loc[: len(path)] == path for path in skip):
            continue
        message = _message(error, loc, document.data, root)
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


def _message(error: dict[str, Any], loc: KeyPath, data: Any, root: type[BaseModel] = SourceDefinition) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1], data, root)
        hint = difflib.get_close_matches(key, allowed, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown key {key!r}{suggestion}; allowed: {', '.join(sorted(allowed))}"
    if kind == "missing":
        return "this key is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"type must be one of: {', '.join(_SOURCE_MODELS)}"
    if kind == "string_pattern_mismatch":
        description = PATTERN_DESCRIPTIONS.get(str((error.get("ctx") or {}).get("pattern")))
        if description:
            return f"{_short(error.get('input'))} is not valid here: {description}"
    message = str(error["msg"])
    if kind in _STRICT_TYPES:
        message = f"{message}, not {_yaml_kind(error.get('input'))}"
    return message.removeprefix("Value error, ")


_STRICT_TYPES = frozenset(
    ("int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type", "model_type", "literal_error")
)


def _yaml_kind(value: Any) -> str:
    """What a mistyped value was, in YAML's terms: ``true`` is a boolean, ``'5'`` a string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the {type(value).__name__} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(parent: KeyPath, data: Any, root: type[BaseModel] = SourceDefinition) -> list[str]:
    model: type[BaseModel] | None = root
    node = data
    for part in parent:
        node = node.get(part) if isinstance(node, dict) else None
        if model is None:
            break
        if part == "source" and root is SourceDefinition:
            source_type = node.get("type") if isinstance(node, dict) else None
            model = _SOURCE_MODELS.get(str(source_type), SqlSource)
            continue
        if isinstance(part, int):  # an entry of a list of models (content.fields.0)
            continue
        annotation = model.model_fields.get(str(part))
        model = _model_in(getattr(annotation, "annotation", None) if annotation else None)
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: ``Model``, ``Model | None``, ``list[Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None

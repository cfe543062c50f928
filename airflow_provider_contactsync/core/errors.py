"""One error hierarchy for contactsync: every message names the file, the key or the row.

Configuration problems (a bad YAML file, a formula that does not compile, a mapping that cannot
fit the Brevo account) raise :class:`ConfigurationError` subclasses before any data moves.
Per-row problems never raise out of the pipeline: they become :class:`Reject` records in the
error report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ContactsyncError(Exception):
    """Base class of every error contactsync raises on purpose."""


class ConfigurationError(ContactsyncError):
    """A source definition, formula or mapping that cannot work; found before any write.

    :param message: what is wrong, in the user's terms.
    :param file: the definition file, when known.
    :param key_path: dotted path of the offending key, e.g. ``transform.email``.
    :param line: 1-based line of the problem (in the file; in the formula for formula errors).
    :param column: 1-based column, when known.
    :param file_line: 1-based line in the file of the key, when ``line`` is a position elsewhere
        (a formula's own text).
    """

    #: how positions are introduced in messages ("" for file positions, "formula " for formulas)
    position_label = ""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        file_line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key_path = key_path
        self.line = line
        self.column = column
        self.file_line = file_line
        super().__init__(self.__str__())

    def located(
        self, *, file: str | None = None, key_path: str | None = None, file_line: int | None = None
    ) -> ConfigurationError:
        """Return a copy of this error that also names the file, key path and line in the file."""
        return type(self)(
            self.message,
            file=file or self.file,
            key_path=key_path or self.key_path,
            line=self.line,
            column=self.column,
            file_line=file_line or self.file_line,
        )

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.file_line}" if self.file_line else self.file)
        if self.key_path:
            where.append(self.key_path)
        if self.line is not None:
            pos = f"{self.position_label}line {self.line}"
            if self.column is not None:
                pos += f", column {self.column}"
            where.append(pos)
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class DefinitionError(ConfigurationError):
    """A YAML source definition that is malformed or breaks the schema."""


class FormulaError(ConfigurationError):
    """A CEL formula that does not compile: syntax, unknown field or function, wrong arity, types.

    ``line``/``column`` are positions inside the formula text.
    """

    position_label = "formula "


class MappingError(ConfigurationError):
    """A mapping that cannot fit the Brevo account: unknown attribute, type mismatch, no identifier."""


class BrevoError(ContactsyncError):
    """Brevo answered with an error the caller must see (after any retries).

    :param status: HTTP status code.
    :param code: Brevo's ``code`` field (do not branch on it alone: Brevo has changed codes).
    :param message: Brevo's ``message`` field.
    :param metadata: Brevo's optional ``metadata`` object.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        method: str = "",
        path: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.path = path
        self.metadata = metadata or {}
        super().__init__(f"Brevo {method} {path} -> {status} {code or ''}: {message}".strip())


class RowError(ContactsyncError):
    """Raised inside per-row code (formulas, value checks); always caught and turned into a Reject."""

    def __init__(self, reason: str, *, field: str | None = None, value: Any = None, row: Any = None) -> None:
        self.reason = reason
        self.field = field
        self.value = value
        self.row = row  # the row's key when a source knows it (else reports show the row's position)
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields survive pickling (rows cross process boundaries in parallel transforms).
        return (_row_error, (self.reason, self.field, self.value, self.row))


def _row_error(reason: str, field: str | None, value: Any, row: Any = None) -> RowError:
    return RowError(reason, field=field, value=value, row=row)


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected value of one row: what the error report holds.

    :param row: the row's key (or 1-based index when the source has no key).
    :param field: the field (after transform) that failed, or ``None`` for whole-row reasons.
    :param value: the offending value, as a short string.
    :param reason: why, in the user's terms.
    """

    row: Any
    field: str | None
    value: str | None
    reason: str


class ConfigurationErrors(ConfigurationError):
    """Several problems reported together, so a user fixes them all in one pass."""

    def __init__(self, errors: list[ConfigurationError], *, file: str | None = None) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(
            "\n".join(str(error) for error in errors),
            key_path=first.key_path,
            line=first.line,
            column=first.column,
        )
        self.file = file or first.file

    def located(
        self, *, file: str | None = None, key_path: str | None = None, file_line: int | None = None
    ) -> ConfigurationError:
        """Name the file in every grouped error that does not name one yet."""
        errors = [error if error.file else error.located(file=file) for error in self.errors]
        return type(self)(errors, file=file or self.file)

    def __str__(self) -> str:
        return self.message


class DefinitionErrors(ConfigurationErrors, DefinitionError):
    """Several problems in one definition file."""


class MappingErrors(ConfigurationErrors, MappingError):
    """Several mapping problems at once."""

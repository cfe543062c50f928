"""Debug mode (``debug: true``): each row's path through the stages, one log line per row and stage.

A user who wonders why one customer did not arrive turns debug on and reads, in the task logs::

    extract row 42: email='j***@example.com', first_name='J**n'
    transform row 42: email='j***@example.com', phone=null
    map row 42: rejected: EMAIL: not a valid email address
    load row 42: sent in import 3

Values go through :func:`~airflow_provider_contactsync.core.masking.protect`: masked unless
``reports.values`` is explicitly ``raw`` (hashed when it is ``hashed``), since a task log is read by more
people than an error report. Bounded: at most ``limit`` rows per stage and run are traced, then one
``... and M more`` line (:meth:`RowTracer.finish`), so debug on a million rows cannot flood the logs.
Pure: no Airflow; the operators pass their logger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_contactsync.core.masking import protect, protect_reason
from airflow_provider_contactsync.core.spec.models import DEBUG_ROWS_PER_STAGE, SourceDefinition

STAGES = ("extract", "transform", "map", "load")
MAX_VALUES_PER_LINE = 50
"""Fields shown per line; a wider row ends with ``... (N more fields)``."""
MAX_VALUE_CHARS = 200
"""Characters shown per value (after masking); longer values are cut with ``...``."""
MAX_MESSAGE_CHARS = 1000


def debug_value_mode(definition: SourceDefinition) -> str:
    """How debug lines show values: ``reports.values`` when the definition sets it, else ``masked``.

    ``reports.values`` defaults to ``raw`` for error reports; the debug log does not inherit that default.
    """
    return definition.reports.values or "masked"  # None: not set, whatever JSON round trips the definition made


class RowTracer:
    """One line per row per stage, values protected, at most ``limit`` rows per stage.

    :param mode: ``raw``, ``masked`` or ``hashed`` (see :mod:`~airflow_provider_contactsync.core.masking`).
    :param limit: rows traced per stage; the rest are counted and reported once by :meth:`finish`.
    :param logger: where lines go (the operator's ``self.log``); ``None`` keeps them only in :attr:`lines`
        when ``keep`` is set.
    :param keep: also keep the lines in :attr:`lines` (tests, the CLI).
    """

    def __init__(
        self,
        *,
        mode: str = "masked",
        limit: int = DEBUG_ROWS_PER_STAGE,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        keep: bool = False,
    ) -> None:
        if mode not in ("raw", "masked", "hashed"):
            raise ValueError(f"mode must be raw, masked or hashed, not {mode!r}")
        if limit < 0:
            raise ValueError("limit cannot be negative")
        self.mode = mode
        self.limit = limit
        self.logger = logger
        self.keep = keep
        self.lines: list[str] = []
        self._traced: dict[str, int] = {}
        self._skipped: dict[str, int] = {}

    @classmethod
    def for_definition(
        cls, definition: SourceDefinition, logger: logging.Logger | logging.LoggerAdapter[Any] | None = None
    ) -> RowTracer | None:
        """The tracer of a definition's run, or None when ``debug`` is off (callers skip tracing then)."""
        if not definition.debug:
            return None
        return cls(mode=debug_value_mode(definition), logger=logger)

    # One method per kind of line; all go through trace().
    def extract(self, row: int | str, values: Mapping[str, Any]) -> str | None:
        """The row as read from the source."""
        return self.trace("extract", row, self.format_values(values))

    def transform(self, row: int | str, values: Mapping[str, Any]) -> str | None:
        """The row after the formulas (the fields the mapping reads)."""
        return self.trace("transform", row, self.format_values(values))

    def mapped(self, row: int | str, attributes: Mapping[str, Any]) -> str | None:
        """The contact's Brevo attributes."""
        return self.trace("map", row, self.format_values(attributes))

    def rejected(self, stage: str, row: int | str, reason: str, *, field: str | None = None, value: Any = None) -> str:
        """A row that stops at ``stage``: why, and the offending value (protected)."""
        text = f"rejected: {protect_reason(reason, self.mode)}"
        if field is not None:
            text += f" ({field}={self._value(value)})"
        return self.trace(stage, row, text) or ""

    def loaded(self, row: int | str, outcome: str) -> str | None:
        """What the load did with it: ``sent in import 3``, ``unchanged``, ``refused: ...``."""
        return self.trace("load", row, protect_reason(outcome, self.mode))

    def trace(self, stage: str, row: int | str, message: str) -> str | None:
        """Log ``<stage> row <row>: <message>`` unless the stage already traced ``limit`` rows.

        ``message`` is logged as given: pass values through :meth:`format_values` (or ``protect``) first.
        Returns the line, or None when it was over the bound.
        """
        traced = self._traced.get(stage, 0)
        if traced >= self.limit:
            self._skipped[stage] = self._skipped.get(stage, 0) + 1
            return None
        self._traced[stage] = traced + 1
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        line = f"{stage} row {self._row(row)}: {message}"
        self._emit(line)
        return line

    def finish(self) -> list[str]:
        """One ``... and M more`` line per stage that went over the bound; call once at the end of a task."""
        lines = []
        for stage, skipped in self._skipped.items():
            line = f"{stage}: ... and {skipped:,} more rows not traced (debug traces {self.limit} rows per stage)"
            self._emit(line)
            lines.append(line)
        self._skipped.clear()
        return lines

    def format_values(self, values: Mapping[str, Any]) -> str:
        """``name=value, ...`` with each value protected and cut, at most :data:`MAX_VALUES_PER_LINE` fields."""
        items = list(values.items())
        shown = ", ".join(f"{name}={self._value(value)}" for name, value in items[:MAX_VALUES_PER_LINE])
        if len(items) > MAX_VALUES_PER_LINE:
            shown += f", ... ({len(items) - MAX_VALUES_PER_LINE} more fields)"
        return shown or "(no fields)"

    def _value(self, value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        text = protect(str(value), self.mode)
        if len(text) > MAX_VALUE_CHARS:
            text = text[:MAX_VALUE_CHARS] + "..."
        return repr(text) if isinstance(value, str) else text

    def _row(self, row: int | str) -> str:
        """Row numbers as they are; a row key (it may be an email) protected like a value."""
        if isinstance(row, int) and not isinstance(row, bool):
            return str(row)
        return protect(str(row), self.mode)

    def _emit(self, line: str) -> None:
        if self.keep:
            self.lines.append(line)
        if self.logger is not None:
            self.logger.info("%s", line)

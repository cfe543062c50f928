"""The one interface every source type adapts to: read chunks of rows inside a window.

A source module adapts one provider hook (PostgresHook, a file system, ...) to :class:`Source`;
:func:`open_source` picks the module by the definition's ``type``. Adding a source type means
adding one module, one entry in ``_REGISTRY`` and one test file.
"""

from __future__ import annotations

import datetime as dt
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow_provider_contactsync.core.cursor import Cursor, as_instant
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import (
    EventsSource,
    FileSource,
    MongoSource,
    SalesforceSource,
    SqlSource,
)

SourceSpec = SqlSource | MongoSource | FileSource | EventsSource | SalesforceSource
Chunk = list[dict[str, Any] | RowError]
"""Rows read together; every row dict has exactly the spec's ``fields`` as keys."""


@dataclass(frozen=True)
class ReadWindow:
    """Which rows a run reads, in (updated, key) order.

    :param since: the stored cursor; None reads from the start. Database sources read rows with
        ``updated >= since.value``: the cursor's own value is read again, so a row committed late
        with that value and a key below ``since.key`` is not lost (rows sharing the value are read
        again and the load's digests skip those that did not change; docs/adr/0004). File sources
        read rows strictly after the ``(value, key)`` pair (:meth:`Cursor.is_before`): a file's
        rows are complete once it is picked up.
    :param until: read rows with updated <= this (the safety lag bound); None is unbounded.
    """

    since: Cursor | None = None
    until: dt.datetime | None = None


# Reasons reported in ``Source.skipped``: the same words for every source type.
SKIP_NULL = "{field} is null"
SKIP_AFTER_UNTIL = "updated after the safety lag bound"
SKIP_NO_FILE = "no matching file"


class Source(ABC):
    """Reads rows of one source definition.

    :param spec: the ``source`` part of a definition.
    :ivar skipped: filled by :meth:`read`: reason -> number of rows deliberately not read (null
        cursor values, rows newer than the safety lag bound), so nothing is lost silently.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.skipped: dict[str, int] = {}

    #: True when incremental reads come in (updated, key) order, so the last row holds the cursor.
    ordered_reads: bool = False

    #: Set by :meth:`read` when the column types guarantee every value stages as it is (text,
    #: integers, floats, booleans, aware timestamps, JSON): the chunks skip staging's per-value scan.
    native_rows: bool = False

    @property
    def incremental(self) -> bool:
        """Sources without ``updated_field`` read everything on every run."""
        return self.spec.updated_field is not None

    @abstractmethod
    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        """Yield chunks of at most ``chunk_size`` rows inside ``window`` ((updated, key) order when incremental).

        Non-incremental sources ignore the window. Reading is lazy and in constant memory.
        """

    @abstractmethod
    def discover(self) -> list[str]:
        """Field names the source offers (columns, CSV header, JSON keys), to help write ``fields``."""

    #: What :meth:`list_tables` lists, as messages name it.
    tables_word: str = "tables"

    def list_tables(self) -> list[str]:
        """Tables, views or collections the connection can read, for discovery; empty for file sources."""
        return []

    @abstractmethod
    def test_connection(self) -> tuple[bool, str]:
        """(ok, message) for the UI and the CLI; never raises for an unreachable source."""

    def _skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count


class SqlTableSource(Source):
    """What the SQL sources share: the spec's type checked, the provider hook built once, the relation's name.

    :param spec: a SQL source of this class's ``source_type``.
    :param hook: a ready hook (tests, callers that already hold one); built from ``conn_id`` if omitted.
    """

    ordered_reads = True  # ORDER BY updated, key
    source_type: str = ""
    database_name: str = ""

    spec: SqlSource

    def __init__(self, spec: SqlSource, *, hook: Any = None) -> None:
        if spec.type != self.source_type:
            raise ConfigurationError(f"source {spec.name!r}: a {spec.type} source is not {self.database_name}")
        super().__init__(spec)
        self._hook = hook

    @cached_property
    def hook(self) -> Any:
        return self._hook if self._hook is not None else self.make_hook()

    @abstractmethod
    def make_hook(self) -> Any:
        """The provider's hook for ``spec.conn_id`` (imported here: provider packages are optional extras)."""

    @property
    def relation_name(self) -> str:
        """How messages name what is read: the table, or "the query"."""
        return f"table {self.spec.table}" if self.spec.table else "the query"

    def check_fields(self, columns: list[str]) -> None:
        """Refuse, before reading, fields whose (top-level) column the table or query does not have."""
        missing = [f for f in self.spec.fields if f.split(".", 1)[0] not in columns]
        if missing:
            raise ConfigurationError(
                f"source {self.spec.name!r}: {self.relation_name} has no column "
                + ", ".join(repr(f) for f in missing)
                + f" (listed in fields); its columns are {columns}",
                key_path="source.fields",
            )


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")


def chunked(rows: Iterable[dict[str, Any] | RowError], size: int) -> Iterator[Chunk]:
    """Rows grouped into lists of ``size`` (the last one shorter), holding one chunk at a time."""
    chunk: Chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def refuse_nested_cursor(spec: SourceSpec, hint: str) -> None:
    """SQL sources order rows by columns: a dotted ``updated_field`` or ``key`` is a configuration error."""
    for attr in ("updated_field", "key"):
        name = getattr(spec, attr)
        if name is not None and "." in name:
            raise ConfigurationError(
                f"source {spec.name!r}: {attr} {name!r} must be a column, not a nested field; {hint}",
                key_path=f"source.{attr}",
            )


def read_window(spec: SourceSpec, cursor: Cursor | None, now: dt.datetime, *, full_refresh: bool) -> ReadWindow:
    """The window of one run: from the stored cursor, up to ``now`` minus the safety lag.

    The upper bound is applied even with a zero lag: a row stamped in the future (clock skew, a
    typo) would otherwise move the cursor ahead of every row written until then. Such rows wait,
    counted in ``skipped``. A full refresh rereads from the start but keeps the bound, for the
    same reason.

    :param spec: the source definition (``updated_field``, ``safety_lag_seconds``).
    :param cursor: the cursor stored by the last successful run, if any.
    :param now: the run's clock (tz-aware, or naive UTC).
    :param full_refresh: ignore the stored cursor and read everything.
    """
    if spec.updated_field is None:
        return ReadWindow()
    until = as_instant(now) - dt.timedelta(seconds=spec.safety_lag_seconds)
    return ReadWindow(since=None if full_refresh else cursor, until=until)


_REGISTRY: dict[str, str] = {
    "postgres": "airflow_provider_contactsync.sources.postgres:PostgresSource",
    "file": "airflow_provider_contactsync.sources.files:FilesSource",
    "sftp": "airflow_provider_contactsync.sources.files:FilesSource",
    "ftp": "airflow_provider_contactsync.sources.files:FilesSource",
    "mongo": "airflow_provider_contactsync.sources.mongo:MongoSource",
    "bigquery": "airflow_provider_contactsync.sources.bigquery:BigQuerySource",
    "snowflake": "airflow_provider_contactsync.sources.snowflake:SnowflakeSource",
    "events": "airflow_provider_contactsync.sources.events.source:EventsQueueSource",
    "salesforce": "airflow_provider_contactsync.sources.salesforce:SalesforceSource",
}


def open_source(spec: SourceSpec) -> Source:
    """The :class:`Source` for a definition's source type; modules load lazily (their hooks are optional)."""
    target = _REGISTRY.get(spec.type)
    if target is None:
        available = ", ".join(sorted(_REGISTRY))
        raise ConfigurationError(
            f"source {spec.name!r}: type {spec.type!r} is not available yet (available: {available})",
            key_path="source.type",
        )
    module_name, class_name = target.split(":")
    source_class: type[Source] = getattr(importlib.import_module(module_name), class_name)
    return source_class(spec)

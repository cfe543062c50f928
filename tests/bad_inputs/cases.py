"""What a bad-input case is: its channel, its kind, how its inputs are made, and which endings are good.

A case never holds its inputs (some are megabytes): ``make`` writes them when the case runs, in the
worker process that runs it (:mod:`bad_inputs.harness`), into a folder of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CHANNELS = ("validate", "parse", "preview", "dag_run")
"""``contactsync validate``; the DAG factory's parse (check_definitions, load_dags, the worker's
load_dags); ``contactsync preview`` over a rows file; a real DAG run of a file source."""

# Endings. The first three are good when a case lists them; the others never are.
CLEAR_ERROR = "clear error"
"""Refused as a whole with an error naming the file and a key path or line (and, for limits, the limit)."""
PER_ROW_REJECT = "per-row reject"
"""Every bad row rejected with a reason naming it (its line), every valid row of the file ok or loaded."""
ACCEPTED = "accepted"
"""Hostile but legitimate data, taken as it is: every row ok or loaded, nothing lost (only where declared)."""
UNCLEAR_ERROR = "unclear error"
"""Refused, but the error does not say where (no file, no key or line), or a reject names the wrong line."""
CRASH = "crash"
"""An exception escaping main() or the factory, a Python traceback in the output, a failed task, a dead worker."""
HANG = "hang"
"""Over the per-case deadline (60 s): the worker is killed."""
SILENT_DROP = "silent drop"
"""A valid row of the file not ok / not loaded, or a bad row that vanished without a reject."""
WRONG_PASS = "wrong pass"
"""A bad definition accepted, or a bad row (one Brevo refuses) passed as ok."""

OUTCOMES = (CLEAR_ERROR, PER_ROW_REJECT, ACCEPTED, UNCLEAR_ERROR, CRASH, HANG, SILENT_DROP, WRONG_PASS)
GOOD_OUTCOMES = frozenset({CLEAR_ERROR, PER_ROW_REJECT, ACCEPTED})


@dataclass(frozen=True)
class Expect:
    """One row of a generated rows file and what must become of it.

    :param ext_id: its ``id`` (mapped to EXT_ID), when it has a readable one.
    :param email: the EMAIL it must load with (valid rows).
    :param line: the physical line where the row starts (the header is line 1); a reject of a row
        that cannot be read must name it.
    :param index: its number among the file's rows (preview's ``row``): a reject of one of its
        values (an email Brevo refuses) names the row by number (preview) or key (error report).
    :param value: a value a reject of this row may show instead.
    :param ok: a valid row (must be ok / loaded); otherwise a bad row (must be rejected).
    :param may_pass: a bad row that may also be taken as legitimate data (``ACCEPTED``).
    """

    ext_id: str | None
    email: str | None
    line: int
    index: int | None = None
    value: str | None = None
    ok: bool = False
    may_pass: bool = False


@dataclass
class RowsFile:
    """A generated CSV or JSON lines file.

    :param name: file name (its extension says the format to preview).
    :param data: its bytes.
    :param rows: what must become of its rows (unless ``whole``).
    :param whole: the file cannot be read at all: the good ending is an error naming it (and
        ``keys``), for a DAG run next to a good file whose rows must still load.
    """

    name: str
    data: bytes
    rows: list[Expect] = field(default_factory=list)
    whole: bool = False

    @property
    def format(self) -> str:
        return "jsonl" if self.name.endswith(".jsonl") else "csv"


@dataclass(frozen=True)
class Inputs:
    """What a case's ``make`` wrote: a definition file and, for preview and DAG runs, a rows file.

    ``definition`` is the text of the definition for previews and DAG runs (the runner fills in the
    folder, integration and connection of a DAG run); for validate and parse, the file's bytes.
    """

    definition: bytes
    rows: RowsFile | None = None
    attributes: list[dict[str, str]] | None = None
    """For preview: the account's attributes (``--attributes``), when the default catalog won't do."""


@dataclass(frozen=True)
class Case:
    """One bad input through one channel.

    :param name: unique, ``<channel>/<kind>/<what>``; a failing test is named after it.
    :param channel: one of :data:`CHANNELS`.
    :param kind: what is hostile: yaml, value, query, identifier, formula, csv, jsonl, email.
    :param make: builds the inputs (called in the worker, never at import).
    :param good: the endings that count as good for this case.
    :param limit: a clear error must name the limit it hit.
    :param keys: fragments one of which a clear error may name as its location (besides a line).
    :param file_level: the whole file is the problem (empty, not text): naming the file is enough.
    :param note: what the case is about, when its name does not say.
    """

    name: str
    channel: str
    kind: str
    make: Callable[[], Inputs]
    good: frozenset[str]
    limit: bool = False
    keys: tuple[str, ...] = ()
    file_level: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        assert self.channel in CHANNELS, self.channel
        assert self.good <= GOOD_OUTCOMES, self.good

    @property
    def file_name(self) -> str:
        """The definition's file name: ``<what>.yaml``, so errors can be told apart."""
        return self.name.rsplit("/", 1)[-1] + ".yaml"

    def __repr__(self) -> str:
        return f"Case({self.name})"


def write_inputs(folder: Path, case: Case, inputs: Inputs) -> tuple[Path, Path | None]:
    """Write a case's definition (and rows file) into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    definition = folder / case.file_name
    definition.write_bytes(inputs.definition)
    rows = None
    if inputs.rows is not None:
        rows = folder / inputs.rows.name
        rows.write_bytes(inputs.rows.data)
    return definition, rows

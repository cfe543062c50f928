"""Random histories of commits and incremental runs, replayed against a database source.

The property every database source keeps (docs/adr/0004-cursor-boundary.md), checked after each run:

- **nothing missed**: every row updated at or before the run's bound has had its current version
  read, by this run or an earlier one, whatever order its commit came in; late commits included:
  a row committed after a run with the stored cursor's own timestamp and a key *below* the
  cursor's key (what second-precision timestamps and concurrent transactions produce), and rows
  committed late with a timestamp anywhere in the window;
- **order**: each run reads its rows in strictly increasing (updated, key) order, across chunks
  of at most ``chunk_size`` rows;
- **the window, exactly**: a run reads the rows with ``cursor value <= updated <= bound`` and no
  other (:meth:`Cursor.reaches`), each at its current version;
- **bounded overhead**: a row read again without having changed is one sharing the stored
  cursor's value (the boundary), and every such row is read again: that is the whole cost.

Each run reads with ``read_window(spec, stored cursor, now, full_refresh=False)`` and advances the
cursor as the extract operator does (``latest_cursor`` of each chunk's last readable row), then as
the load stores it (``max`` with the stored one). Timestamps have whole seconds, so ties are common.

A test module supplies a :class:`Backend` (its own database, emulator or server) and calls
:func:`check_history` from a hypothesis test drawing ``histories()``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from airflow_provider_contactsync.core.boundary import Boundary, BoundaryFilter
from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.operators.contactsync import _last_row, latest_cursor
from airflow_provider_contactsync.sources import Source, read_window

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KEYS = 8
"""Keys 1..KEYS: few enough that updates, ties and keys below the cursor's are frequent."""


def property_settings(max_examples: int) -> Any:
    """Deterministic (derandomized, no example database) and without deadlines: emulators are slow."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- histories -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """An insert or update committed now.

    ``when``: ``now`` stamps it with the clock's second; ``boundary`` is a late commit stamped with the
    stored cursor's own timestamp, its key below the cursor's (``pick`` chooses which); ``window`` is a
    late commit stamped anywhere from the stored cursor's timestamp to now.
    """

    key: int
    when: str
    pick: int = 0


@dataclass(frozen=True)
class Tick:
    """The clock moves on (0 s keeps later commits in the same second)."""

    seconds: int


@dataclass(frozen=True)
class Run:
    """An incremental run reading chunks of ``chunk_size`` rows."""

    chunk_size: int


Step = Commit | Tick | Run


def histories(max_rounds: int = 5) -> st.SearchStrategy[list[Step]]:
    """Rounds of commits (and clock ticks), a run, then late commits the next round's run must read."""
    now = st.builds(Commit, key=st.integers(1, KEYS), when=st.just("now"))
    tick = st.builds(Tick, st.integers(0, 2))
    late = st.builds(
        Commit,
        key=st.integers(1, KEYS),
        when=st.sampled_from(["boundary", "boundary", "window"]),
        pick=st.integers(0, 1_000),
    )
    round_ = st.tuples(
        st.lists(st.one_of(now, now, tick), min_size=1, max_size=6),
        st.builds(Run, st.integers(1, 4)),
        st.lists(late, max_size=3),
    )
    return st.lists(round_, min_size=1, max_size=max_rounds).map(
        lambda rounds: [step for before, run, after in rounds for step in (*before, run, *after)]
    )


# -- the backend a test module supplies ----------------------------------------------------------------


class Backend(Protocol):
    """A table (or collection) of ``key``, ``email``, ``updated_at`` rows, and a source reading it."""

    key_field: str

    def reset(self) -> None:
        """Empty the table, ready for a new history."""

    def commit(self, rows: dict[int, tuple[str, dt.datetime]]) -> None:
        """Insert or replace these rows (key -> (email, updated_at)), committed together."""

    def source(self) -> Source:
        """An incremental source on the table: ``updated_field: updated_at``, ``key: <key_field>``."""


# -- the model and the checks ----------------------------------------------------------------------


@dataclass
class Stats:
    runs: int = 0
    rows_read: int = 0
    read_again: int = 0
    late_at_boundary: int = 0


@dataclass
class _Model:
    updated: dict[int, dt.datetime] = field(default_factory=dict)
    version: dict[int, int] = field(default_factory=dict)
    read_version: dict[int, int] = field(default_factory=dict)

    def email(self, key: int) -> str:
        return f"k{key}.v{self.version[key]}@example.com"


def check_history(backend: Backend, history: Iterable[Step], stats: Stats | None = None) -> Stats:
    """Replay ``history`` (then one last run once the clock has moved on) and check every run."""
    history = list(history)
    try:
        return _replay(backend, history, stats or Stats())
    except AssertionError as exc:
        exc.add_note(f"history: {history}")  # the steps, whatever hypothesis prints of its arguments
        raise


def _replay(backend: Backend, history: list[Step], stats: Stats) -> Stats:
    backend.reset()
    source = backend.source()
    model = _Model()
    pending: dict[int, tuple[str, dt.datetime]] = {}
    stored: Cursor | None = None
    boundary: list[Boundary | None] = [None]  # the rows at the stored cursor's value, as the load keeps them
    clock = 0  # seconds after T0
    for step in [*history, Tick(1), Run(3)]:
        if isinstance(step, Tick):
            clock += step.seconds
        elif isinstance(step, Commit):
            key, at = _place(step, stored, clock)
            if step.when == "boundary" and stored is not None and key < stored.key:
                stats.late_at_boundary += 1
            model.updated[key] = at
            model.version[key] = model.version.get(key, 0) + 1
            pending[key] = (model.email(key), at)
        else:
            if pending:
                backend.commit(pending)
                pending = {}
            stored = _run(backend, source, model, stored, clock, step.chunk_size, stats, boundary)
    # Shown by --hypothesis-show-statistics: how often the cases this test is about came up.
    event(f"late commits at the boundary below the cursor's key: {'some' if stats.late_at_boundary else 'none'}")
    event(f"rows read again at the boundary: {'some' if stats.read_again else 'none'}")
    return stats


def _place(step: Commit, stored: Cursor | None, clock: int) -> tuple[int, dt.datetime]:
    """The key and timestamp of a commit: late ones are placed relative to the stored cursor."""
    now = T0 + dt.timedelta(seconds=clock)
    if stored is None or step.when == "now":
        return step.key, now
    assert isinstance(stored.value, dt.datetime) and isinstance(stored.key, int)
    if step.when == "boundary" and stored.key > 1:
        return step.pick % (stored.key - 1) + 1, stored.value  # a key below the cursor's, at its timestamp
    seconds = int((now - stored.value).total_seconds())
    return step.key, stored.value + dt.timedelta(seconds=step.pick % (seconds + 1))


def _run(
    backend: Backend,
    source: Source,
    model: _Model,
    stored: Cursor | None,
    clock: int,
    chunk_size: int,
    stats: Stats,
    boundary: list[Boundary | None],
) -> Cursor | None:
    now = T0 + dt.timedelta(seconds=clock, milliseconds=500)  # the run starts within the second
    window = read_window(source.spec, stored, now, full_refresh=False)
    assert window.until is not None
    key_field = backend.key_field
    rows: list[dict[str, Any]] = []
    passed: list[dict[str, Any]] = []  # what the extract stages: unchanged rows at the cursor's value left out
    latest: Cursor | None = None
    previous = boundary[0] if stored is not None and boundary[0] and boundary[0].value == stored.value else None
    filtered = BoundaryFilter("updated_at", key_field, previous)
    for chunk in source.read(window, chunk_size=chunk_size):
        assert 1 <= len(chunk) <= chunk_size
        assert not any(isinstance(row, RowError) for row in chunk), chunk
        rows += chunk  # type: ignore[arg-type]
        passed += filtered.feed(chunk)
        latest = latest_cursor(_last_row(chunk), "updated_at", key_field, latest)  # as the extract does
    described = f"run at +{clock}s from {stored} to {window.until:%H:%M:%S}"

    # Order: strictly increasing (updated, key) pairs, across chunks.
    pairs = [Cursor(normalize_value(row["updated_at"]), row[key_field]) for row in rows]
    for before, after in zip(pairs, pairs[1:], strict=False):
        assert before.is_before(after.value, after.key), f"{described}: {before} then {after}"

    read = [row[key_field] for row in rows]
    for row in rows:
        key = row[key_field]
        assert (row["email"], row["updated_at"]) == (model.email(key), model.updated[key]), described
    again = [k for k in read if model.read_version.get(k) == model.version[k]]  # read before, unchanged since
    staged_again = [
        row[key_field] for row in passed if model.read_version.get(row[key_field]) == model.version[row[key_field]]
    ]
    assert not staged_again, f"{described}: rows {staged_again} staged again without a change"
    assert len(passed) + filtered.unchanged == len(rows), described  # every row read: staged or counted
    for row in passed:  # only what reaches the transform counts as processed
        model.read_version[row[key_field]] = model.version[row[key_field]]

    # Nothing missed: every row up to the bound has had its current version read.
    missed = sorted(
        k for k, at in model.updated.items() if at <= window.until and model.read_version.get(k) != model.version[k]
    )
    assert not missed, f"{described}: rows {missed} were never read at their current version"

    # The window, exactly: from the cursor's value (inclusive) to the bound.
    expected = sorted(
        (k for k, at in model.updated.items() if at <= window.until and (stored is None or stored.reaches(at))),
        key=lambda k: (model.updated[k], k),
    )
    assert read == expected, f"{described}: read {read}, the window holds {expected}"

    # Overhead: a row read again without a change shares the stored cursor's value.
    for key in again:
        assert stored is not None and model.updated[key] == stored.value, f"{described}: {key} read again"
    stats.runs += 1
    stats.rows_read += len(read)
    stats.read_again += len(again)
    new_stored = latest.max(stored) if latest is not None else stored  # as the load stores it
    run_boundary = filtered.boundary()  # promoted as the load does (state.promote_boundary)
    if run_boundary is not None and new_stored is not None and run_boundary.value == new_stored.value:
        if boundary[0] is not None and boundary[0].value == run_boundary.value:
            run_boundary.digests = {**boundary[0].digests, **run_boundary.digests}
        boundary[0] = run_boundary
    return new_stored

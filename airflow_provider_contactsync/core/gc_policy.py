"""Python's cyclic garbage collector, tuned for the stages' bulk work.

A stage allocates millions of short-lived dicts, tuples and strings while hundreds of thousands of
live ones (a chunk of rows, the load's contacts in flight) sit in memory. With CPython's default
thresholds (700, 10, 10) the collector runs every 700 allocations and keeps rescanning those live
objects: on the 1M-row benchmark it was a third of the load's CPU (24.2 s -> 15.6 s with the
thresholds below) and a quarter of the extract's (3.9 s -> 2.9 s). The rows are acyclic (freed by
reference counting the moment they are dropped), so collecting a hundred times less often only
delays freeing the rare cycle; ``gc.freeze()`` moves what was alive before the stage (Airflow,
imported modules) out of every later scan. The previous thresholds come back when the stage ends.
Why this is safe: docs/adr/0016-garbage-collection-in-stages.md.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLDS = (100_000, 50, 100)


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Collect garbage less often while the block runs (see the module's docstring)."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def for_worker_processes() -> None:
    """In a transform/map worker process: bulk thresholds for its whole life (it only runs chunks)."""
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)

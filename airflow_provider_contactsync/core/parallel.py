"""Formulas on several cores: chunks are transformed by a pool of worker processes.

Formulas are CPU-bound Python (phone numbers alone cost ~20 µs a row) and the GIL keeps one
process on one core, so the transform task hands chunks to worker processes. Workers compile the
formulas once each (compiled formulas are code, not data: they are not shipped), receive rows and
return the transformed rows and rejects. Results come back in chunk order; at most
``workers + 1`` chunks are in flight, so memory stays bounded. Workers are spawned, not forked:
the task process may hold threads and locks that a fork would copy half-way.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from airflow_provider_contactsync.core.pipeline import transform_rows

_transform: Any = None
_key_field: str | None = None


def _init_worker(formulas: dict[str, str], fields: Sequence[str], key_field: str | None) -> None:
    global _transform, _key_field
    from airflow_provider_contactsync.core.formulas import compile_transform

    _transform = compile_transform(formulas, fields)
    _key_field = key_field


def _transform_chunk(rows: list[Any], start: int) -> tuple[Any, ...]:
    return transform_rows(_transform, rows, key_field=_key_field, start=start)


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def transform_chunks(
    chunks: Iterable[list[Any]],
    *,
    formulas: dict[str, str],
    fields: Sequence[str],
    key_field: str | None,
    workers: int,
) -> Iterator[tuple[Any, ...]]:
    """Yield ``(passed, rejects, rejected)`` for each chunk, in chunk order.

    With ``workers <= 1`` everything runs in this process (no start-up cost for small runs).
    """
    if workers <= 1:
        _init_worker(formulas, fields, key_field)
        start = 1
        for chunk in chunks:
            yield _transform_chunk(chunk, start)
            start += len(chunk)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(formulas, list(fields), key_field)
    ) as pool:
        pending: list[Future[tuple[Any, ...]]] = []
        start = 1
        for chunk in chunks:
            pending.append(pool.submit(_transform_chunk, chunk, start))
            start += len(chunk)
            if len(pending) > workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

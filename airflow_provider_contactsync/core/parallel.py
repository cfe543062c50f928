"""Chunks on several cores: the transform and map stages hand chunks to worker processes.

Formulas and value checks are CPU-bound Python (phone numbers alone cost ~20 µs a row) and the
GIL keeps one process on one core. Workers are set up once (formulas compiled, mapping planned:
compiled code is rebuilt in each worker, never shipped), receive rows, and return results in chunk
order; at most ``workers + 1`` chunks are in flight, so memory stays bounded. Workers are spawned,
not forked: the task process may hold threads and locks that a fork would copy half-way.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from airflow_provider_contactsync.core.pipeline import map_rows, transform_rows

_state: dict[str, Any] = {}


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _run_chunks(
    chunks: Iterable[Any],
    *,
    setup: Callable[..., None],
    setup_args: tuple[Any, ...],
    work: Callable[..., Any],
    workers: int,
) -> Iterator[Any]:
    """``work(chunk, start)`` for each chunk, in order; ``start`` is the chunk's first 1-based row index."""
    if workers <= 1:
        setup(*setup_args)
        start = 1
        for chunk in chunks:
            yield work(chunk, start)
            start += len(chunk)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=setup, initargs=setup_args) as pool:
        pending: list[Future[Any]] = []
        start = 1
        for chunk in chunks:
            pending.append(pool.submit(work, chunk, start))
            start += len(chunk)
            if len(pending) > workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


# -- transform -------------------------------------------------------------------------------


def _setup_transform(formulas: dict[str, str], fields: Sequence[str], key_field: str | None) -> None:
    from airflow_provider_contactsync.core.formulas import compile_transform

    _state["transform"] = compile_transform(formulas, fields)
    _state["key_field"] = key_field


def _transform_chunk(rows: list[Any], start: int) -> tuple[Any, ...]:
    return transform_rows(_state["transform"], rows, key_field=_state["key_field"], start=start)


def transform_chunks(
    chunks: Iterable[list[Any]],
    *,
    formulas: dict[str, str],
    fields: Sequence[str],
    key_field: str | None,
    workers: int,
) -> Iterator[tuple[Any, ...]]:
    """Yield ``(passed, rejects, rejected)`` per chunk of source rows, in chunk order.

    With ``workers <= 1`` everything runs in this process (no start-up cost for small runs).
    """
    return _run_chunks(
        chunks,
        setup=_setup_transform,
        setup_args=(dict(formulas), list(fields), key_field),
        work=_transform_chunk,
        workers=workers,
    )


# -- map -------------------------------------------------------------------------------------


def _setup_map(
    definition: dict[str, Any], attributes: list[dict[str, Any]] | None, result_types: dict[str, str]
) -> None:
    if attributes is None:  # no row to map: only the transform rejects pass through
        _state["mapper"] = None
        return
    from airflow_provider_contactsync.core.attributes import AttributeCatalog
    from airflow_provider_contactsync.core.mapping import ContactMapper
    from airflow_provider_contactsync.core.spec import SourceDefinition

    spec = SourceDefinition.model_validate(definition)
    _state["mapper"] = ContactMapper(spec, AttributeCatalog.from_api(attributes), result_types)


def _map_chunk(chunk: dict[str, Any], start: int) -> tuple[Any, ...]:
    from airflow_provider_contactsync.core.mapping import to_import_item

    if not chunk["rows"]:
        return [], chunk["rejects"], [], 0
    contacts, rejects, rejected = map_rows(_state["mapper"], chunk["rows"])
    return [(key, to_import_item(c)) for key, c in contacts], chunk["rejects"], rejects, rejected


def map_chunks(
    chunks: Iterable[dict[str, Any]],
    *,
    definition: dict[str, Any],
    attributes: list[dict[str, Any]] | None,
    result_types: dict[str, str],
    workers: int,
) -> Iterator[tuple[Any, ...]]:
    """Yield ``(import items, transform rejects, mapping rejects, rejected rows)`` per transformed chunk.

    :param definition: the source definition as JSON (``model_dump(mode="json")``).
    :param attributes: the account's attributes, as ``GET /contacts/attributes`` lists them; None when
        no chunk has a row to map.
    """
    return _run_chunks(
        chunks,
        setup=_setup_map,
        setup_args=(definition, attributes, dict(result_types)),
        work=_map_chunk,
        workers=workers,
    )

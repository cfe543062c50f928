"""Chunks on several cores: the transform and map stages hand chunk files to worker processes.

Formulas and value checks are CPU-bound Python (phone numbers alone cost ~20 µs a row) and the
GIL keeps one process on one core. Workers are set up once (formulas compiled, mapping planned:
compiled code is rebuilt in each worker, never shipped). Each job names an input chunk file and an
output chunk file: the worker reads, computes and writes them itself, and sends back only counts
and rejects, so rows never cross a pipe (pickling them would cost as much as the work on a
2-core machine). Results come back in job order. Workers are spawned, not forked: the task process
may hold threads and locks that a fork would copy half-way.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_provider_contactsync.core import gc_policy
from airflow_provider_contactsync.core.pipeline import field_use, map_rows, transform_rows

if TYPE_CHECKING:
    from airflow_provider_contactsync.core.spec import SourceDefinition

_state: dict[str, Any] = {}


def default_workers(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """One worker per core this process may use: its CPU affinity, capped by a cgroup CPU quota.

    In a container (a KubernetesExecutor pod with ``limits.cpu: 2`` on a 64-core node) the affinity
    still lists every core of the node; the quota is what the pod may use, and 64 workers on 2 CPUs
    of quota would only be throttled.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs this process's cgroup may use (cgroup v2 ``cpu.max``, else v1 CFS quota), None if unlimited."""
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            with open(os.path.join(root, quota_file)) as handle:
                fields = handle.read().split()
            if period_file is not None:
                with open(os.path.join(root, period_file)) as handle:
                    fields.append(handle.read().strip())
            quota, period = fields[0], float(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if quota in ("max", "-1") or period <= 0:
            return None
        try:
            return float(quota) / period
        except ValueError:
            return None
    return None


def _run_jobs(
    jobs: Sequence[tuple[Any, ...]],
    *,
    setup: Callable[..., None],
    setup_args: tuple[Any, ...],
    work: Callable[..., Any],
    workers: int,
) -> Iterator[Any]:
    """``work(*job)`` for each job, in order, on ``workers`` processes (in this process when 1)."""
    if workers <= 1 or len(jobs) <= 1:
        setup(*setup_args)
        for job in jobs:
            yield work(*job)
        return
    context = multiprocessing.get_context("spawn")
    initargs = (os.getpid(), setup, *setup_args)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_die_with_parent, initargs=initargs
    ) as pool:
        futures: list[Future[Any]] = [pool.submit(work, *job) for job in jobs]
        for future in futures:
            yield future.result()


PARENT_CHECK_SECONDS = 0.5


def _die_with_parent(parent: int, setup: Callable[..., None], *setup_args: Any) -> None:
    """Worker initializer: exit when the task process is gone, then ``setup(*setup_args)``.

    A task process killed outright (SIGKILL, the OOM killer) cannot stop its pool, and a worker
    waiting for its next job would wait forever: it holds both ends of the job queue's pipe. Found
    by the fault suite (``scripts/fault_suite.py``); Airflow's retry then starts a new pool beside
    the orphans. A daemon thread checks the parent every half second (a kernel parent-death signal
    would follow the thread that spawned the worker, not the process).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="contactsync-parent-watch", daemon=True).start()
    gc_policy.for_worker_processes()
    setup(*setup_args)


def _read(path: str) -> Any:
    from airflow_provider_contactsync.staging import decode

    with open(path, "rb") as stream:
        return decode(stream.read())


def _write(path: str, payload: Any) -> None:
    from airflow_provider_contactsync.staging import write_chunk_file

    write_chunk_file(path, payload)  # owner-only, like every staged file: rows are personal data


def _write_items(path: str, items: list[tuple[Any, Any]]) -> None:
    """A mapped chunk: import items hold only what the attribute converters and sync rules make
    (text, numbers, booleans, lists of them), so only the row keys, which come from the source,
    are type-checked before staging (one scan of the keys, not of every value)."""
    from airflow_provider_contactsync.staging import stage_as_is, write_chunk_file

    write_chunk_file(path, items, native=stage_as_is([key for key, _ in items]))


# -- transform -------------------------------------------------------------------------------


class TransformCounts(tuple):
    """``(passed, rejected rows)`` of one transformed chunk: it unpacks as that pair.

    :ivar tolerated: per output field, rows where its formula failed but nothing reads the field
        (the field was left null and the row passed).
    """

    tolerated: dict[str, int]

    def __new__(cls, passed: int, rejected: int, tolerated: dict[str, int]) -> TransformCounts:
        counts = super().__new__(cls, (passed, rejected))
        counts.tolerated = tolerated
        return counts

    def __reduce__(self) -> tuple[Any, ...]:
        return (TransformCounts, (self[0], self[1], self.tolerated))


def _setup_transform(
    formulas: dict[str, str],
    fields: Sequence[str],
    key_field: str | None,
    needed: frozenset[str] | None,
    strict_concat: frozenset[str],
) -> None:
    from airflow_provider_contactsync.core.formulas import compile_transform

    _state["transform"] = compile_transform(formulas, fields, needed=needed, strict_concat=strict_concat)
    _state["key_field"] = key_field


def _transform_file(source: str, target: str, start: int) -> TransformCounts:
    from airflow_provider_contactsync.core.errors import RowError

    rows = _read(source)
    chunk = transform_rows(_state["transform"], rows, key_field=_state["key_field"], start=start)
    payload: dict[str, Any] = {"rows": chunk.passed, "rejects": chunk.rejects}
    if _state["key_field"] is not None:  # rows rejected before their key was known: mirror mode must know
        payload["unkeyed"] = sum(1 for row in rows if isinstance(row, RowError) and row.row is None)
    _write(target, payload)
    return TransformCounts(len(chunk.passed), chunk.rejected, chunk.tolerated)


def transform_files(
    jobs: Sequence[tuple[str, str, int]],
    *,
    formulas: dict[str, str],
    fields: Sequence[str],
    key_field: str | None,
    workers: int,
    definition: SourceDefinition | None = None,
) -> Iterator[TransformCounts]:
    """Transform staged chunk files; yield ``(passed, rejected rows)`` per job, in order.

    :param jobs: ``(input chunk path, output chunk path, 1-based index of the chunk's first row)``.
    :param definition: the source definition the formulas come from. When given, only formulas whose
        field the mapping or payload reads can reject a row, and identifier formulas keep CEL's ``+``
        (:func:`~airflow_provider_contactsync.core.pipeline.field_use`); without it every formula
        rejects the row it fails on.
    """
    use = field_use(definition) if definition is not None else None
    return _run_jobs(
        jobs,
        setup=_setup_transform,
        setup_args=(
            dict(formulas),
            list(fields),
            key_field,
            use.needed if use else None,
            use.identifiers if use else frozenset(),
        ),
        work=_transform_file,
        workers=workers,
    )


# -- map -------------------------------------------------------------------------------------


def _setup_map(
    definition: dict[str, Any], attributes: list[dict[str, Any]] | None, result_types: dict[str, str]
) -> None:
    _state["keyed"] = (definition.get("source") or {}).get("key") is not None
    _state["mirror"] = (definition.get("destination") or {}).get("mode") == "mirror"
    _state["sync_sidecar"] = _state["mirror"] or (definition.get("source") or {}).get("deleted_when") is not None
    if attributes is None:  # no row to map: only the transform rejects pass through
        _state["mapper"] = None
        _state["rules"] = None
        return
    from airflow_provider_contactsync.core.attributes import AttributeCatalog
    from airflow_provider_contactsync.core.mapping import ContactMapper
    from airflow_provider_contactsync.core.spec import SourceDefinition
    from airflow_provider_contactsync.core.sync_rules import SyncRules

    spec = SourceDefinition.model_validate(definition)
    _state["mapper"] = ContactMapper(spec, AttributeCatalog.from_api(attributes), result_types)
    rules = SyncRules.compile(spec)
    _state["rules"] = None if rules.empty else rules


def _map_file(source: str, target: str) -> tuple[int, int, list[Any]]:
    """Map one chunk; also write its contacts' identity hashes next to it (``<target>.ids``), for the
    load's run-wide identity check, so that the load need not read every chunk twice."""
    from airflow_provider_contactsync.core.identifiers import SIDECAR_SUFFIX, IdentityColumns
    from airflow_provider_contactsync.core.mapping import to_import_item

    chunk = _read(source)
    items: list[tuple[Any, Any]] = []
    rejects: list[Any] = []
    rejected = 0
    if chunk["rows"]:
        contacts, rejects, rejected = map_rows(_state["mapper"], chunk["rows"], _state.get("rules"))
        items = [(key, to_import_item(contact)) for key, contact in contacts]
    _write_items(target, items)
    identities = IdentityColumns()
    identities.add_chunk(items, keyed=_state["keyed"])
    from airflow_provider_contactsync.staging import write_private

    write_private(target + SIDECAR_SUFFIX, identities.to_bytes())
    if _state.get("sync_sidecar"):
        sidecar = sync_sidecar(items, chunk["rejects"] + rejects, chunk.get("unkeyed", 0), mirror=_state["mirror"])
        write_private(target + SYNC_SUFFIX, sidecar)
    return len(items), rejected, chunk["rejects"] + rejects


SYNC_SUFFIX = ".sync"
"""What the load needs of a mapped chunk to plan deletes, next to it (``chunk-00001.msgpack.sync``):
the rows marked deleted (``source.deleted_when``: position in the chunk, key, item) and, in mirror
mode, every row key the chunk holds (contacts and rejected rows) with how many rows were rejected
before their key was known."""


def sync_sidecar(items: Sequence[tuple[Any, Any]], rejects: Sequence[Any], unkeyed: int, *, mirror: bool) -> bytes:
    """The ``.sync`` sidecar of a chunk."""
    from airflow_provider_contactsync.core.sync_rules import SYNC_KEY
    from airflow_provider_contactsync.staging import encode

    deleted = [[pos, key, item] for pos, (key, item) in enumerate(items) if (item.get(SYNC_KEY) or {}).get("delete")]
    payload: dict[str, Any] = {"deleted": deleted}
    if mirror:
        keys = [str(key) for key, _ in items]
        keys += dict.fromkeys(str(reject.row) for reject in rejects)
        payload |= {"keys": keys, "unkeyed": int(unkeyed)}
    return encode(payload)


def map_files(
    jobs: Sequence[tuple[str, str]],
    *,
    definition: dict[str, Any],
    attributes: list[dict[str, Any]] | None,
    result_types: dict[str, str],
    workers: int,
) -> Iterator[tuple[int, int, list[Any]]]:
    """Map transformed chunk files to import items; yield ``(contacts, rejected rows, rejects)`` per job.

    The rejects are the chunk's transform rejects followed by its mapping rejects.

    :param definition: the source definition as JSON (``model_dump(mode="json")``).
    :param attributes: the account's attributes, as ``GET /contacts/attributes`` lists them; None when
        no chunk has a row to map.
    """
    return _run_jobs(
        jobs,
        setup=_setup_map,
        setup_args=(definition, attributes, dict(result_types)),
        work=_map_file,
        workers=workers,
    )

"""Chunk files between tasks, under an ObjectStoragePath base (a local folder, ``s3://``, ``gs://``).

Tasks may run on different workers, so rows never travel through XCom: each task writes its
output as chunk files under ``<base>/<dag_id>/<run_id>/<stage>/`` and passes only their paths.
Chunks are msgpack (compact, fast, and typed: dates, timestamps, decimals and integers of any size
survive the trip). A row a source produced whose values cannot be staged (a lone surrogate, an
unsupported type, nesting too deep) becomes a :class:`RowError` naming the field, not a failed task.
On local storage, chunk files are written 0600 in folders created 0700 (they hold personal data),
like the error reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec

from airflow_provider_contactsync.core.errors import Reject, RowError
from airflow_provider_contactsync.core.identifiers import SIDECAR_SUFFIX, IdentityColumns

_EXT_DATE, _EXT_DECIMAL, _EXT_NAIVE, _EXT_ROW_ERROR, _EXT_REJECT, _EXT_BIG_INT = 1, 2, 3, 4, 5, 6
_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1
_UNSTAGEABLE = (OverflowError, UnicodeEncodeError, RecursionError, TypeError, ValueError)


_SIDECARS = (SIDECAR_SUFFIX, ".sync")
"""Files a map job writes next to its chunk: identity hashes and ``core.parallel.SYNC_SUFFIX`` (spelt
here: core.parallel imports staging; a test checks they agree)."""


def default_staging_base() -> str:
    """``[contactsync] staging`` from Airflow config, else a folder under AIRFLOW_HOME."""
    from airflow.configuration import conf

    configured = conf.get("contactsync", "staging", fallback=None)
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return "file://" + os.path.join(os.path.abspath(home), "contactsync", "staging")


_PLAIN = frozenset({str, int, float, bool, type(None), bytes})
_PLAIN_OR_DATETIME = _PLAIN | {dt.datetime}
_NATIVE = _PLAIN_OR_DATETIME | {dict, list, tuple}
_CONTAINERS = frozenset({dict, list, tuple})
_tzinfo = attrgetter("tzinfo")
_is_dict = partial(type.__instancecheck__, dict)  # C-level predicates for filter()
_is_datetime = partial(type.__instancecheck__, dt.datetime)


def _is_sequence(value: Any) -> bool:
    return type(value) is list or type(value) is tuple


def _passes_through(values: Any) -> bool:
    """True when msgpack keeps every value's type: plain scalars and tz-aware datetimes."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN:
        return True
    if kinds <= _PLAIN_OR_DATETIME:  # aware datetimes are native msgpack timestamps; naive ones are not
        return all(v.tzinfo is not None for v in values if type(v) is dt.datetime)
    return False


def _keeps_types(value: Any) -> bool:
    """True when msgpack round-trips everything inside ``value`` as it is.

    Checked one nesting level at a time, each level's types gathered at C speed: a chunk of 50,000
    rows is scanned in milliseconds, where walking it value by value costs a tenth of a second.
    """
    level: list[Any] = [value]
    while level:
        kinds = set(map(type, level))
        if not kinds <= _NATIVE:
            return False
        if dt.datetime in kinds and None in set(map(_tzinfo, filter(_is_datetime, level))):
            return False
        if not kinds & _CONTAINERS:
            return True
        dicts = level if kinds == {dict} else filter(_is_dict, level)
        sequences = level if kinds <= {list, tuple} else filter(_is_sequence, level)
        level = [*chain.from_iterable(map(dict.values, dicts))] if dict in kinds else []
        if kinds & {list, tuple}:
            level.extend(chain.from_iterable(sequences))
    return True


def _prepare(value: Any) -> Any:
    """Wrap the values msgpack would flatten to strings (naive datetimes, dates, decimals).

    Containers whose items are all plain (the common case) are passed through untouched: the
    type check runs at C speed (``set(map(type, ...))``), only mixed containers are walked.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        values = value.values()
        return value if _passes_through(values) else {k: _prepare(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        if _passes_through(value) or (len(value) >= 32 and _keeps_types(value)):
            return value
        return [_prepare(v) for v in value]
    if isinstance(value, dt.datetime):  # aware datetimes are native msgpack timestamps
        return value if value.tzinfo else msgspec.msgpack.Ext(_EXT_NAIVE, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgspec.msgpack.Ext(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, Decimal):
        return msgspec.msgpack.Ext(_EXT_DECIMAL, str(value).encode())
    if isinstance(value, RowError):
        fields = [_plain(value.reason), _plain(value.field), _plain(value.value)]
        return msgspec.msgpack.Ext(
            _EXT_ROW_ERROR, encode(fields if value.row is None else [*fields, _plain(value.row)])
        )
    if isinstance(value, Reject):
        return msgspec.msgpack.Ext(
            _EXT_REJECT, encode([_plain(value.row), _plain(value.field), _plain(value.value), _plain(value.reason)])
        )
    return value


def _plain(value: Any) -> Any:
    """A value of a reject as msgpack always takes it: text with lone surrogates escaped, huge integers as text."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _UINT_MAX else _safe_text(_int_text(value))
    return _safe_text(value if isinstance(value, str) else str(value))


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python converts
        return f"an integer of {value.bit_length():,} bits"


def _safe_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _prepare_all(value: Any) -> Any:
    """:func:`_prepare` for payloads msgpack refused: also wraps integers outside 64 bits (lossless)."""
    return _prepare(wrap_big_ints(value))


def wrap_big_ints(value: Any) -> Any:
    """``value`` with its integers outside 64 bits wrapped so msgpack takes them; :func:`decode` unwraps them."""
    kind = type(value)
    if kind is int:
        return value if _INT_MIN <= value <= _UINT_MAX else msgspec.msgpack.Ext(_EXT_BIG_INT, f"{value:x}".encode())
    if kind is dict:
        return {k: wrap_big_ints(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [wrap_big_ints(v) for v in value]
    return value


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_NAIVE:
        return dt.datetime.fromisoformat(bytes(data).decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(bytes(data).decode())
    if code == _EXT_DECIMAL:
        return Decimal(bytes(data).decode())
    if code == _EXT_ROW_ERROR:
        reason, field, value, *row = _DECODER.decode(data)
        return RowError(reason, field=field, value=value, row=row[0] if row else None)
    if code == _EXT_REJECT:
        return Reject(*_DECODER.decode(data))
    if code == _EXT_BIG_INT:
        return int(bytes(data).decode(), 16)
    raise ValueError(f"unknown staged value code {code}")


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def encode(payload: Any) -> bytes:
    """Staged bytes of any payload of rows, row errors and rejects."""
    try:
        return _ENCODER.encode(_prepare(payload))
    except OverflowError:  # an integer outside 64 bits: the careful path wraps it
        return _ENCODER.encode(_prepare_all(payload))


def encode_rows(rows: list[Any], *, native: bool = False) -> bytes:
    """Staged bytes of a chunk of source rows; a row that cannot be staged becomes its RowError.

    The common chunk costs what :func:`encode` costs; only a chunk that fails is looked at row by row.

    :param native: the caller knows every value is one msgpack keeps as it is (its types come from
        a typed source: str, int, float, bool, None, aware datetimes, JSON documents), so the
        per-value type scan is skipped. A value that does not encode (a 65-bit integer, a lone
        surrogate) still takes the careful path; the flag must never be set for types msgpack would
        change silently (dates, decimals, naive datetimes).
    """
    if native:
        try:
            return _ENCODER.encode(rows)
        except _UNSTAGEABLE:
            pass
    try:
        return encode(rows)
    except _UNSTAGEABLE:
        pass
    return _ENCODER.encode([_stageable(row) for row in rows])


def _stageable(row: Any) -> Any:
    """``row`` ready for msgpack, or the RowError that rejects it, naming the field that cannot be staged."""
    try:
        prepared = _prepare_all(row)
        _ENCODER.encode(prepared)
        return prepared
    except _UNSTAGEABLE as exc:
        problem = exc
    field: str | None = None
    if isinstance(row, dict):
        for key, value in row.items():
            try:
                _ENCODER.encode(_prepare_all(value))
            except _UNSTAGEABLE as exc:
                field, problem = _safe_text(str(key)), exc
                break
    return _prepare(RowError(_unstageable_reason(problem, field), field=field))


def _unstageable_reason(problem: BaseException, field: str | None) -> str:
    where = f"field {field}" if field is not None else "the row"
    if isinstance(problem, UnicodeEncodeError):
        bad = problem.object[problem.start : problem.end]
        return f"{where}: a lone surrogate {ascii(bad)} (half of a UTF-16 pair, not a character) cannot be staged"
    if isinstance(problem, RecursionError):
        return f"{where}: the value is nested too deeply to be staged"
    return f"{where}: the value cannot be staged ({type(problem).__name__}: {_safe_text(str(problem))[:200]})"


def decode(data: bytes) -> Any:
    return _DECODER.decode(data)


class ChunkStore:
    """The staged files of one DAG run.

    :param base: staging base URL (``file:///...``, ``s3://conn@bucket/prefix``, ...).
    :param dag_id: the DAG the run belongs to.
    :param run_id: the run; made path-safe.
    """

    def __init__(self, base: str, dag_id: str, run_id: str) -> None:
        from airflow.sdk import ObjectStoragePath

        self.base = ObjectStoragePath(base)
        self.dag_root = self.base / dag_id
        self.root = self.dag_root / "runs" / _safe(run_id)

    def path(self, stage: str, name: str) -> Any:
        return self.root / stage / name

    def chunk_url(self, stage: str, index: int) -> str:
        return str(self.path(stage, f"chunk-{index:05d}.msgpack"))

    def run_jobs(self, jobs: list[tuple[Any, ...]], run: Any) -> list[Any]:
        """Run ``run(local_jobs)`` over jobs ``(input url, output url, *args)`` with local file paths.

        Local staging is used in place (worker processes read and write the files themselves).
        Remote staging (s3://, gs://) is copied through a temporary folder one job at a time.
        """
        from airflow.sdk import ObjectStoragePath

        if self.base.protocol == "file":
            local = [(ObjectStoragePath(src).path, ObjectStoragePath(dst).path, *rest) for src, dst, *rest in jobs]
            for _, dst, *_rest in local:
                make_private_dirs(os.path.dirname(dst))
            return list(run(local))
        import tempfile

        results: list[Any] = []
        with tempfile.TemporaryDirectory(prefix="contactsync-chunks-") as tmp:
            for src, dst, *rest in jobs:
                local_src, local_dst = os.path.join(tmp, "in.msgpack"), os.path.join(tmp, "out.msgpack")
                with open(local_src, "wb") as stream:
                    stream.write(ObjectStoragePath(src).read_bytes())
                results.extend(run([(local_src, local_dst, *rest)]))
                target = ObjectStoragePath(dst)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(local_dst, "rb") as stream:
                    target.write_bytes(stream.read())
                for suffix in _SIDECARS:  # what the map writes next to a chunk (identities, deletes)
                    if os.path.exists(local_dst + suffix):
                        with open(local_dst + suffix, "rb") as stream:
                            ObjectStoragePath(dst + suffix).write_bytes(stream.read())
                        os.unlink(local_dst + suffix)
        return results

    def read_identities(self, url: str) -> IdentityColumns | None:
        """The identity hashes the map task wrote next to a contacts chunk, or None without them."""
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(url + SIDECAR_SUFFIX)
        try:
            return IdentityColumns.from_bytes(path.read_bytes())
        except FileNotFoundError:
            return None

    def read_sync(self, url: str) -> dict[str, Any] | None:
        """What the map task wrote for planning deletes next to a contacts chunk (``.sync``), or None."""
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_contactsync.core.parallel import SYNC_SUFFIX

        path = ObjectStoragePath(url + SYNC_SUFFIX)
        try:
            return decode(path.read_bytes())
        except FileNotFoundError:
            return None

    def write(self, stage: str, index: int, payload: Any, *, native: bool = False) -> str:
        """Write one chunk atomically enough for a retry: a re-run overwrites the same name.

        A list of rows is staged by :func:`encode_rows`: a row that cannot be staged is replaced by
        its RowError (the chunk keeps its length). Local files are 0600 in 0700 folders.

        :param native: the rows' values are known to stage as they are (see :func:`encode_rows`).
        """
        path = self.path(stage, f"chunk-{index:05d}.msgpack")
        data = encode_rows(payload, native=native) if type(payload) is list else encode(payload)
        if path.protocol == "file":
            write_private(path.path, data)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return str(path)

    def read(self, url: str) -> Any:
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(url)
        try:
            return decode(path.read_bytes())
        except FileNotFoundError:
            hint = (
                " The staging base is a local folder: when tasks run on several machines, set "
                "[contactsync] staging to shared storage (s3://, gs://)."
                if path.protocol == "file"
                else ""
            )
            raise FileNotFoundError(f"staged chunk {url} is missing (cleared upstream data?).{hint}") from None

    def iter_chunks(self, urls: list[str]) -> Iterator[Any]:
        for url in urls:
            yield self.read(url)

    def clear_stage(self, stage: str) -> None:
        """Remove a stage's chunks before (re)writing them, so a retry never mixes two attempts."""
        folder = self.root / stage
        if folder.exists():
            folder.rmdir(recursive=True)

    def cleanup(self) -> None:
        """Remove this run's staged data."""
        if self.root.exists():
            self.root.rmdir(recursive=True)

    def cleanup_older_than(self, cutoff: dt.datetime, keep: str | None = None) -> list[str]:
        """Remove other runs' staged data last modified before ``cutoff`` (the retention window)."""
        runs = self.dag_root / "runs"
        removed: list[str] = []
        if not runs.exists():
            return removed
        for run in runs.iterdir():
            if keep is not None and run.name == keep:
                continue
            try:
                modified = max((p.stat().get("mtime") or 0 for p in run.rglob("*")), default=0)
            except (OSError, FileNotFoundError):
                continue
            stamp = modified.timestamp() if isinstance(modified, dt.datetime) else float(modified)
            if stamp and stamp < cutoff.timestamp():
                run.rmdir(recursive=True)
                removed.append(run.name)
        return removed


class PrivateFile:
    """A text file written under the staging base, readable by its owner only where permissions exist.

    Local targets are written in place with mode 0600; remote ones through a local temporary file
    that is uploaded on :meth:`close` (object stores apply the bucket's access rules).
    """

    def __init__(self, target: Any) -> None:
        import tempfile

        self.target = target
        if target.protocol == "file":
            self._local = target.path
            make_private_dirs(os.path.dirname(self._local))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, self._local = tempfile.mkstemp(prefix="contactsync-", suffix=".csv")
            os.close(handle)
        descriptor = os.open(self._local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        # backslashreplace: a value no encoding can write (a lone surrogate) is shown escaped, never a crash
        self.stream = os.fdopen(descriptor, "w", encoding="utf-8", errors="backslashreplace", newline="")

    def close(self) -> str:
        """Finish the file; return its URL."""
        self.stream.close()
        if self.target.protocol != "file":
            import shutil

            with open(self._local, "rb") as src, self.target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            os.unlink(self._local)
        return str(self.target)


def append_private(url: str, text: str) -> None:
    """Append text to a file written by :class:`PrivateFile` (a remote file is rewritten whole)."""
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(url)
    if target.protocol == "file":
        with open(target.path, "a", encoding="utf-8", errors="backslashreplace", newline="") as stream:
            stream.write(text)
        return
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    with target.open("w", encoding="utf-8", errors="backslashreplace", newline="") as stream:
        stream.write(existing + text)


def make_private_dirs(folder: str) -> None:
    """Create ``folder`` and its missing parents with mode 0700 (existing folders are left as they are)."""
    missing = []
    path = os.path.abspath(folder)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # whatever the umask


def write_private(path: str, data: bytes) -> None:
    """Write a local file readable by its owner only (0600), its missing folders created 0700.

    Atomically: the bytes go to a hidden temporary file beside it, renamed over ``path`` once
    complete, so a task killed mid-write leaves the previous file (or none), never a truncated one.
    The fault suite found the DAG's cursor boundary left empty by a load killed while writing it,
    and every later run failing to read it.
    """
    import tempfile

    folder = os.path.dirname(path)
    make_private_dirs(folder)
    descriptor, temporary = tempfile.mkstemp(dir=folder or None, prefix=".", suffix=".partial")  # 0600
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def local_copy(target: Any) -> Iterator[str]:
    """A local path for a small database file under the staging base (the ledger, the events state).

    On local storage it is the file itself (its folder made owner-only). On object storage it is a
    temporary copy, uploaded back when the block ends, even after a failure: what was recorded there
    happened. One writer at a time (the DAG's ``max_active_runs=1``) keeps the round trip safe.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.protocol == "file":
        os.chmod(target.parent.path, 0o700)
        yield target.path
        return
    import shutil
    import tempfile

    workdir = tempfile.mkdtemp(prefix="contactsync-state-")
    local = os.path.join(workdir, target.name)
    try:
        if target.exists():
            with target.open("rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            yield local
        finally:
            with open(local, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_chunk_file(path: str, payload: Any, *, native: bool = False) -> None:
    """A chunk written by a worker process to local staging: :func:`encode`, then :func:`write_private`.

    :param native: as for :func:`encode_rows`: every value is known to stage as it is (no type scan).
    """
    write_private(path, encode_native(payload) if native else encode(payload))


def encode_native(payload: Any) -> bytes:
    """:func:`encode` of a payload whose values the caller knows msgpack keeps (see :func:`encode_rows`)."""
    try:
        return _ENCODER.encode(payload)
    except _UNSTAGEABLE:
        return encode(payload)


def stage_as_is(values: list[Any]) -> bool:
    """True when msgpack keeps every one of these (flat) values as it is: plain scalars, aware datetimes."""
    return _passes_through(values)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)

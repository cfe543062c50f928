"""FilesSource on local folders; read_window and open_source (no server needed)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import pytest

from airflow_provider_contactsync.core.cursor import Cursor
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import FileSource, MongoSource, SqlSource
from airflow_provider_contactsync.sources import ReadWindow, open_source, read_window
from airflow_provider_contactsync.sources.files import FileInfo, FilesSource

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FIELDS = ["id", "email", "updated_at"]


def write(folder: Path, name: str, text: str, *, age: int) -> Path:
    """A file whose mtime is ``age`` seconds before a fixed instant (older files are read first)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    stamp = T0.timestamp() - age
    os.utime(path, (stamp, stamp))
    return path


def csv_text(*rows: tuple[Any, ...], header: str = "id,email,updated_at") -> str:
    return "\n".join([header, *(",".join("" if v is None else str(v) for v in row) for row in rows)]) + "\n"


def source(folder: Path, **overrides: Any) -> FilesSource:
    spec: dict[str, Any] = {"type": "file", "name": "drop", "path": str(folder), "fields": FIELDS}
    spec.update(overrides)
    return FilesSource(FileSource.model_validate(spec))


def incremental(folder: Path, **overrides: Any) -> FilesSource:
    return source(folder, updated_field="updated_at", key="id", **overrides)


def read_all(src: FilesSource, window: ReadWindow | None = None, chunk_size: int = 100) -> list[Any]:
    return [row for chunk in src.read(window or ReadWindow(), chunk_size=chunk_size) for row in chunk]


def ids(rows: list[Any]) -> list[Any]:
    return [row["id"] for row in rows if not isinstance(row, RowError)]


# -- reading -----------------------------------------------------------------------------------


def test_csv_files_are_read_oldest_first_in_chunks(tmp_path: Path) -> None:
    write(tmp_path, "b_newer.csv", csv_text((3, "c@x.io", ""), (4, "d@x.io", "")), age=10)
    write(tmp_path, "a_older.csv", csv_text((1, "a@x.io", ""), (2, "b@x.io", "")), age=20)
    write(tmp_path, "c_newest.csv", csv_text((5, "e@x.io", "")), age=0)
    write(tmp_path, "notes.txt", "not a csv", age=30)

    chunks = list(source(tmp_path).read(ReadWindow(), chunk_size=2))

    assert [len(c) for c in chunks] == [2, 2, 1]
    assert ids([r for c in chunks for r in c]) == ["1", "2", "3", "4", "5"]
    assert chunks[0][0] == {"id": "1", "email": "a@x.io", "updated_at": None}


def test_chunks_span_file_boundaries(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", csv_text((1, "a@x.io", ""), (2, "b@x.io", ""), (3, "c@x.io", "")), age=2)
    write(tmp_path, "b.csv", csv_text((4, "d@x.io", ""), (5, "e@x.io", "")), age=1)

    chunks = list(source(tmp_path).read(ReadWindow(), chunk_size=4))

    assert [ids(c) for c in chunks] == [["1", "2", "3", "4"], ["5"]]


def test_csv_options_apply(tmp_path: Path) -> None:
    write(tmp_path, "x.csv", "7;'a;b@x.io';2024-03-01\n", age=0)
    csv_options = {"delimiter": ";", "quotechar": "'", "header": False, "columns": FIELDS}

    assert read_all(source(tmp_path, csv=csv_options)) == [{"id": "7", "email": "a;b@x.io", "updated_at": "2024-03-01"}]


def test_csv_encoding_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("id,email,updated_at\n1,zoé@x.io,\n".encode("latin-1"))

    assert read_all(source(tmp_path, csv={"encoding": "latin-1"}))[0]["email"] == "zoé@x.io"


def test_jsonl_files(tmp_path: Path) -> None:
    lines = [{"id": 1, "email": "a@x.io", "updated_at": "2024-03-01T12:00:00Z", "extra": True}, {"id": 2}]
    write(tmp_path, "a.jsonl", "\n".join(json.dumps(line) for line in lines) + "\nnot json\n", age=0)

    rows = read_all(source(tmp_path, pattern="*.jsonl", format="jsonl"))

    assert rows[:2] == [
        {"id": 1, "email": "a@x.io", "updated_at": "2024-03-01T12:00:00Z"},
        {"id": 2, "email": None, "updated_at": None},
    ]
    assert isinstance(rows[2], RowError) and "line 3" in rows[2].reason


def test_pattern_may_reach_into_subfolders(tmp_path: Path) -> None:
    write(tmp_path, "2024/03/a.csv", csv_text((1, "a@x.io", "")), age=0)
    write(tmp_path, "top.csv", csv_text((2, "b@x.io", "")), age=0)

    assert ids(read_all(source(tmp_path, pattern="2024/*/*.csv"))) == ["1"]


def test_unreadable_csv_rows_are_row_errors_and_reading_goes_on(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", "id,email,updated_at\n1,a@x.io,\n2,too,many,cells\n3,c@x.io,\n", age=0)

    rows = read_all(source(tmp_path))

    assert ids(rows) == ["1", "3"]
    assert isinstance(rows[1], RowError)


def test_a_file_lacking_a_field_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", "id,email\n1,a@x.io\n", age=0)

    with pytest.raises(ConfigurationError, match=r"a\.csv.*updated_at"):
        read_all(source(tmp_path))


def test_no_matching_file_reads_nothing_and_says_why(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "x", age=0)
    src = source(tmp_path)

    assert list(src.read(ReadWindow(), chunk_size=10)) == []
    assert src.skipped == {"no matching file": 0}


def test_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'drop'.*cannot list"):
        read_all(source(tmp_path / "nope"))


# -- incremental -------------------------------------------------------------------------------


def test_rows_after_the_cursor_up_to_the_bound(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.csv",
        csv_text(
            (1, "a@x.io", "2024-03-01T10:00:00Z"),
            (2, "b@x.io", "2024-03-01T12:00:00Z"),
            (3, "c@x.io", "2024-03-01T12:00:00+00:00"),
            (4, "d@x.io", "2024-03-01 13:00:00"),  # naive: UTC
            (5, "e@x.io", "2024-03-01T15:00:00+02:00"),  # 13:00 UTC
            (6, "f@x.io", "2024-03-01T14:00:01Z"),
        ),
        age=0,
    )
    src = incremental(tmp_path)

    rows = read_all(src, ReadWindow(Cursor(T0, "2"), T0 + dt.timedelta(hours=2)))

    assert ids(rows) == ["3", "4", "5"]  # ties at T0 after key "2" are new; key "2" itself is not
    assert src.skipped == {"updated after the safety lag bound": 1}


def test_bad_cursor_values_are_row_errors_naming_field_and_value(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", csv_text((1, "a@x.io", "yesterday"), (2, "b@x.io", "2024-03-01T12:00:00Z")), age=0)

    rows = read_all(incremental(tmp_path))

    assert isinstance(rows[0], RowError)
    assert rows[0].field == "updated_at" and rows[0].value == "yesterday"
    assert "a.csv" in rows[0].reason and "'yesterday'" in rows[0].reason
    assert ids(rows) == ["2"]


def test_null_cursor_values_are_counted_as_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", csv_text((1, "a@x.io", ""), (2, "b@x.io", "2024-03-01T12:00:00Z")), age=0)
    src = incremental(tmp_path)

    assert ids(read_all(src)) == ["2"]
    assert src.skipped == {"updated_at is null": 1}


def test_jsonl_numeric_cursor_has_no_time_bound(tmp_path: Path) -> None:
    lines = [{"id": i, "email": f"{i}@x.io", "updated_at": 100 + i} for i in range(1, 5)]
    write(tmp_path, "a.jsonl", "\n".join(json.dumps(line) for line in lines), age=0)
    src = incremental(tmp_path, pattern="*.jsonl", format="jsonl")

    assert ids(read_all(src, ReadWindow(Cursor(102, 2), T0))) == [3, 4]
    assert src.skipped == {}


def test_a_value_incomparable_with_the_cursor_is_a_row_error(tmp_path: Path) -> None:
    lines = [{"id": 1, "email": "a@x.io", "updated_at": 5}, {"id": 2, "email": "b@x.io", "updated_at": "2024-03-02"}]
    write(tmp_path, "a.jsonl", "\n".join(json.dumps(line) for line in lines), age=0)

    rows = read_all(incremental(tmp_path, pattern="*.jsonl", format="jsonl"), ReadWindow(Cursor(T0, 1)))

    assert isinstance(rows[0], RowError) and "cannot be compared" in rows[0].reason
    assert ids(rows) == [2]


# -- discovery and connection test -------------------------------------------------------------


def test_discover_csv_header_of_the_oldest_file(tmp_path: Path) -> None:
    write(tmp_path, "new.csv", "x,y\n", age=0)
    write(tmp_path, "old.csv", "\ufeffid,email,phone\n1,a@x.io,\n", age=5)

    assert source(tmp_path).discover() == ["id", "email", "phone"]


def test_discover_jsonl_keys_of_the_first_object(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", '\n{"id": 1, "email": "a@x.io", "address": {"city": "Lyon"}}\n{"other": 1}\n', age=0)

    assert source(tmp_path, pattern="*.jsonl", format="jsonl").discover() == ["id", "email", "address"]


def test_discover_without_files_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no file matches '\*\.csv'"):
        source(tmp_path).discover()


def test_test_connection(tmp_path: Path) -> None:
    assert source(tmp_path).test_connection() == (True, f"{tmp_path} is readable; no file matches '*.csv' yet")
    write(tmp_path, "a.csv", csv_text(), age=0)
    assert source(tmp_path).test_connection() == (True, f"{tmp_path}: 1 file(s) match '*.csv'")
    ok, message = source(tmp_path / "nope").test_connection()
    assert not ok and "nope" in message


class MemoryFileSystem:
    """What an SFTP/FTP file system provides: a listing with mtimes, and binary streams."""

    def __init__(self, files: dict[str, tuple[bytes, float]]) -> None:
        self.files = files

    def list_files(self, folder: str, pattern: str, **_: Any) -> list[FileInfo]:
        from fnmatch import fnmatch

        return [
            FileInfo(f"{folder}/{name}", len(data), mtime)
            for name, (data, mtime) in self.files.items()
            if fnmatch(name, pattern)
        ]

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return io.BytesIO(self.files[path.rsplit("/", 1)[1]][0])


def test_another_file_system_plugs_in() -> None:
    spec = FileSource(type="sftp", conn_id="sftp_default", name="drop", path="/in", fields=FIELDS)
    fs = MemoryFileSystem(
        {"b.csv": (csv_text((2, "b@x.io", "")).encode(), 2.0), "a.csv": (b"id,email,updated_at\n1,,\n", 1.0)}
    )

    assert ids(read_all(FilesSource(spec, filesystem=fs))) == ["1", "2"]


# -- read_window and open_source ---------------------------------------------------------------


def spec_with(**overrides: Any) -> SqlSource:
    spec: dict[str, Any] = {"type": "postgres", "name": "crm", "conn_id": "pg", "table": "customers"}
    spec.update({"fields": ["id", "updated_at"], **overrides})
    return SqlSource.model_validate(spec)


def test_read_window_applies_the_safety_lag() -> None:
    spec = spec_with(updated_field="updated_at", key="id", safety_lag_seconds=300)
    cursor = Cursor(T0, 5)

    assert read_window(spec, cursor, T0, full_refresh=False) == ReadWindow(cursor, T0 - dt.timedelta(minutes=5))
    assert read_window(spec, cursor, T0, full_refresh=True) == ReadWindow(None, T0 - dt.timedelta(minutes=5))


def test_read_window_bounds_even_without_lag_and_takes_naive_now_as_utc() -> None:
    spec = spec_with(updated_field="updated_at", key="id")

    assert read_window(spec, None, T0.replace(tzinfo=None), full_refresh=False) == ReadWindow(None, T0)


def test_read_window_of_a_non_incremental_source_is_unbounded() -> None:
    assert read_window(spec_with(), Cursor(T0, 1), T0, full_refresh=False) == ReadWindow(None, None)


def test_open_source_by_type(tmp_path: Path) -> None:
    assert isinstance(open_source(FileSource(type="file", name="drop", path=str(tmp_path), fields=["id"])), FilesSource)


def test_every_source_type_the_model_accepts_opens_its_module() -> None:
    from airflow_provider_contactsync.core.spec.models import SqlSource

    mongo = MongoSource(type="mongo", name="users", conn_id="mongo", collection="users", fields=["id"])
    sql = {kind: SqlSource(type=kind, name="t", conn_id="c", table="a.b", fields=["id"]) for kind in SQL_TYPES}
    opened = {kind: type(open_source(spec)).__name__ for kind, spec in {"mongo": mongo, **sql}.items()}
    assert opened == {
        "mongo": "MongoSource",
        "postgres": "PostgresSource",
        "bigquery": "BigQuerySource",
        "snowflake": "SnowflakeSource",
    }


SQL_TYPES = ("postgres", "bigquery", "snowflake")


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        next(source(tmp_path).read(ReadWindow(), chunk_size=0))


# -- hostile files: what preview shows is what a run reads (issue 11) ---------------------------------


def write_bytes(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def staged(src: FilesSource, tmp_path: Path) -> list[Any]:
    """Every row of every file, through the chunk file the extract task writes."""
    from airflow_provider_contactsync.staging import ChunkStore

    store = ChunkStore(f"file://{tmp_path / 'staging'}", "contactsync__x__drop", "manual__1")
    out: list[Any] = []
    for info in src.files():
        for index, chunk in enumerate(src.read_file(info, ReadWindow(), chunk_size=1000)):
            out += store.read(store.write("extract", index, chunk))
    return out


def preview_rows(path: Path, src: FilesSource) -> list[Any]:
    from airflow_provider_contactsync.core.rows import read_rows

    spec = src.spec
    return list(read_rows(path, format=spec.format, fields=spec.fields, csv_options=spec.csv))


HOSTILE_CSV = (
    b"id,email,updated_at\n1,a@x.io,\n"
    + "2,Caf\xe9@x.io,\n".encode("latin-1")
    + b'3,"c@x.io\n4,d@x.io,\n5,e@x.io,\n'  # an unterminated quote: rows 4 and 5 are read again
    + b'6,"'
    + b"x" * 2_000_000
    + b'\n",\n'  # a field over the row size limit
    + b"7,g@x.io,\n"
)
HOSTILE_JSONL = (
    b'{"id": 1, "email": "a@x.io"}\n'
    + b'{"id": 2, "x": '
    + b"[" * 10_000
    + b"]" * 10_000
    + b"}\n"
    + b'{"id": '
    + b"9" * 5000
    + b"}\n"
    + b'{"id": 1180591620717411303424, "email": "big@x.io"}\n'
    + b'{"id": 5, "email": "\\ud800"}\n'
    + b'{"id": 6, "email": "\xff"}\n'
    + b'{"id": 7, "email": "g@x.io"}\n'
)


@pytest.mark.parametrize(
    ("name", "data", "fmt", "good", "bad"),
    [
        ("h.csv", HOSTILE_CSV, "csv", ["1", "4", "5", "7"], 3),
        ("h.csv.gz", gzip.compress(HOSTILE_CSV), "csv", ["1", "4", "5", "7"], 3),
        ("h.jsonl", HOSTILE_JSONL, "jsonl", [1, 1180591620717411303424, 7], 4),
    ],
)
def test_hostile_rows_are_rejects_naming_file_and_line_and_the_rest_is_read(
    tmp_path: Path, name: str, data: bytes, fmt: str, good: list[Any], bad: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path = write_bytes(folder, name, data)
    src = source(folder, pattern="h.*", format=fmt)
    rows = staged(src, tmp_path)
    assert ids(rows) == good
    errors = [r for r in rows if isinstance(r, RowError)]
    assert len(errors) == bad and all(e.reason.startswith(f"{name} line ") for e in errors)
    if not name.endswith(".gz"):  # preview reads the same rows and rejects, naming the path it was given
        again = preview_rows(path, src)
        assert ids(again) == good
        assert [r.reason.removeprefix(f"{folder}/") for r in again if isinstance(r, RowError)] == [
            e.reason for e in errors
        ]


def test_a_value_a_source_produced_that_cannot_be_staged_rejects_its_row(tmp_path: Path) -> None:
    from airflow_provider_contactsync.staging import ChunkStore

    store = ChunkStore(f"file://{tmp_path}", "contactsync__x__db", "manual__1")
    rows = [{"id": 1, "n": 2**70}, {"id": 2, "name": "\ud800"}, {"id": 3, "blob": object()}, {"id": 4}]
    back = store.read(store.write("extract", 0, rows))
    assert back[0] == {"id": 1, "n": 2**70} and back[3] == {"id": 4}
    assert isinstance(back[1], RowError) and back[1].field == "name" and "lone surrogate" in back[1].reason
    assert isinstance(back[2], RowError) and back[2].field == "blob" and "cannot be staged" in back[2].reason


def test_discovery_of_hostile_files_names_the_problem(tmp_path: Path) -> None:
    write_bytes(tmp_path, "wide.csv", b"id,email,updated_at" + b"," * 20_000 + b"\n")
    write_bytes(tmp_path, "deep.jsonl", b"[" * 5000 + b"]" * 5000 + b"\n")
    [(_, wide)] = source(tmp_path, pattern="wide.csv").describe_files()
    assert wide == "the header has 20,003 columns, over the limit of 10,000 (CONTACTSYNC_MAX_COLUMNS raises it)"
    with pytest.raises(ConfigurationError, match="deep.jsonl: the first line cannot be read: line 1: JSON nested"):
        source(tmp_path, pattern="deep.jsonl", format="jsonl").discover()

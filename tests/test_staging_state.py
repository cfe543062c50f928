"""Staged chunks keep their types; private files stay private; old runs are cleaned up."""

from __future__ import annotations

import datetime as dt
import os
import stat
from decimal import Decimal
from pathlib import Path

from airflow_provider_contactsync.core.errors import Reject, RowError
from airflow_provider_contactsync.staging import ChunkStore, PrivateFile, decode, encode


def test_chunks_round_trip_with_types(tmp_path: Path) -> None:
    rows = [
        {
            "aware": dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc),
            "naive": dt.datetime(2026, 1, 1, 12),
            "day": dt.date(1990, 9, 25),
            "amount": Decimal("12.30"),
            "nested": {"when": dt.date(2020, 1, 1), "tags": ["a", None]},
            "none": None,
        },
        RowError("line 3: 2 columns, the header has 3", field=None, value=None),
        Reject("k1", "email", "x", "not a valid email address"),
    ]
    back = decode(encode(rows))
    assert back[0] == rows[0]
    assert isinstance(back[1], RowError) and back[1].reason == rows[1].reason
    assert back[2] == rows[2]
    store = ChunkStore(f"file://{tmp_path}", "contactsync__crm__customers", "manual__2026-11-23T18:00:00+00:00")
    url = store.write("extract", 0, rows)
    assert "/contactsync__crm__customers/runs/manual__2026-11-23T18_00_00_00_00/extract/chunk-00000" in url
    assert store.read(url)[0] == rows[0]
    store.clear_stage("extract")
    assert not Path(url.removeprefix("file://")).exists()


def test_cleanup_keeps_recent_runs_and_removes_old_ones(tmp_path: Path) -> None:
    base = f"file://{tmp_path}"
    old = ChunkStore(base, "d", "old")
    old.write("extract", 0, [1])
    recent = ChunkStore(base, "d", "recent")
    recent.write("extract", 0, [2])
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert recent.cleanup_older_than(future, keep="recent") == ["old"]
    assert recent.root.exists() and not old.root.exists()


def test_private_file_is_owner_only(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(f"file://{tmp_path}/reports/r.csv")
    private = PrivateFile(target)
    private.stream.write("row,field\n")
    url = private.close()
    path = Path(url.removeprefix("file://"))
    assert path.read_text() == "row,field\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_local_chunk_explains_shared_staging(tmp_path: Path) -> None:
    import pytest

    store = ChunkStore(f"file://{tmp_path}", "d", "r")
    with pytest.raises(FileNotFoundError, match=r"set \[contactsync\] staging to shared storage"):
        store.read(store.chunk_url("extract", 0))


def test_large_chunks_keep_types_found_deep_inside_one_row() -> None:
    """Big chunks are type-checked level by level: one odd value deep in one row must still survive."""
    aware = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [(i, {"id": i, "at": aware, "tags": ["a", i], "nested": {"n": i}}) for i in range(100)]
    assert decode(encode(rows)) == [list(pair) for pair in rows]  # msgpack has one array type
    for odd in (dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3), Decimal("1.50")):
        chunk = [(i, {"id": i, "at": aware, "nested": {"n": i}}) for i in range(100)]
        chunk[57][1]["nested"]["deep"] = [odd]
        back = decode(encode({"rows": chunk, "rejects": [Reject(57, "x", None, "odd")]}))
        assert back["rows"][57][1]["nested"]["deep"] == [odd]
        assert type(back["rows"][57][1]["nested"]["deep"][0]) is type(odd)
        assert back["rows"][56][1] == chunk[56][1]
        assert back["rejects"] == [Reject(57, "x", None, "odd")]


def test_a_read_time_reject_keeps_the_row_key_it_was_given() -> None:
    with_key = decode(encode([RowError("Decimal128 NaN cannot be a number", field="score", value="NaN", row=42)]))[0]
    without = decode(encode([RowError("line 3: not valid JSON")]))[0]
    assert (with_key.row, with_key.field, with_key.value) == (42, "score", "NaN")
    assert without.row is None


# -- hostile values and private files (issue 11) -----------------------------------------------------


def test_integers_of_any_size_are_staged_losslessly() -> None:
    rows = [{"id": 1180591620717411303424, "neg": -(2**63) - 1, "edge": 2**64 - 1, "deep": [{"n": 10**300}]}]
    assert decode(encode(rows)) == rows
    assert decode(encode({"rows": rows, "rejects": []}))["rows"] == rows


def test_rows_that_cannot_be_staged_become_row_errors_in_place() -> None:
    from airflow_provider_contactsync.staging import encode_rows

    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    rows = [{"id": 1}, {"id": 2, "name": "\ud800x"}, {"id": 3, "deep": deep}, {"id": 4, "f": 1j}, {"id": 5}]
    back = decode(encode_rows(rows))
    assert len(back) == len(rows) and back[0] == {"id": 1} and back[4] == {"id": 5}
    assert [(e.field, e.reason) for e in back[1:4]] == [
        ("name", "field name: a lone surrogate '\\ud800' (half of a UTF-16 pair, not a character) cannot be staged"),
        ("deep", "field deep: the value is nested too deeply to be staged"),
        ("f", "field f: the value cannot be staged (TypeError: Encoding objects of type complex is unsupported)"),
    ]


def test_rejects_holding_text_no_encoding_can_write_are_staged_escaped() -> None:
    back = decode(
        encode([RowError("bad \ud800", field="f\udcff", value="\ud800", row=2**70), Reject(1, None, "\udc80", "r")])
    )
    assert (back[0].reason, back[0].field, back[0].value, back[0].row) == (
        "bad \\ud800",
        "f\\udcff",
        "\\ud800",
        "1180591620717411303424",
    )
    assert back[1] == Reject(1, None, "\\udc80", "r")


def test_chunk_files_are_owner_only_in_owner_only_folders(tmp_path: Path) -> None:
    from airflow_provider_contactsync.staging import write_chunk_file

    old = os.umask(0o022)
    try:
        store = ChunkStore(f"file://{tmp_path}/staging", "contactsync__crm__customers", "manual__1")
        url = Path(store.write("extract", 0, [{"email": "a@x.io"}]).removeprefix("file://"))
        jobs = [(str(url), str(url.parent.parent / "transform" / "chunk-00000.msgpack"))]
        store.run_jobs(jobs, lambda local: [write_chunk_file(dst, {"rows": []}) for _src, dst in local])
    finally:
        os.umask(old)
    out = url.parent.parent / "transform" / "chunk-00000.msgpack"
    assert stat.S_IMODE(url.stat().st_mode) == 0o600 and stat.S_IMODE(out.stat().st_mode) == 0o600
    folder = url.parent
    while folder != tmp_path:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        folder = folder.parent
    url.chmod(0o644)  # a file left by an earlier attempt is narrowed when written again
    store.write("extract", 0, [])
    assert stat.S_IMODE(url.stat().st_mode) == 0o600


def test_native_chunks_skip_the_type_scan_and_still_stage_what_msgpack_refuses() -> None:
    """``native=True`` trusts a typed source's values; anything msgpack cannot take still takes the careful path."""
    from airflow_provider_contactsync.staging import encode_rows

    plain = [
        {"id": i, "email": f"c{i}@example.com", "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
        for i in range(64)
    ]
    assert decode(encode_rows(plain, native=True)) == plain
    refused = [{"id": 2**70}, {"id": 2, "name": "\ud800x"}, {"id": 3}]
    back = decode(encode_rows(refused, native=True))
    assert back[0] == {"id": 2**70} and back[2] == {"id": 3}
    assert isinstance(back[1], RowError) and back[1].field == "name"


def test_the_native_flag_is_why_a_date_would_change_type(tmp_path: Path) -> None:
    """The flag is a promise: the same chunk staged without it keeps a date a date (with it, msgpack
    would turn it into text), which is why only typed sources whose columns cannot hold one set it."""
    from airflow_provider_contactsync.staging import encode_rows, stage_as_is

    rows = [{"day": dt.date(2024, 3, 1)}]
    assert decode(encode_rows(rows)) == rows
    assert decode(encode_rows(rows, native=True)) == [{"day": "2024-03-01"}]
    assert not stage_as_is([dt.date(2024, 3, 1), 1])
    assert not stage_as_is([dt.datetime(2024, 3, 1)])  # naive
    assert stage_as_is([1, "k", None, dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)])


def test_a_mapped_chunk_with_source_keys_of_any_type_round_trips(tmp_path: Path) -> None:
    """Map output skips the per-value scan only when its row keys are plain: a date or decimal key stays one."""
    from airflow_provider_contactsync.core.parallel import _write_items

    items = [
        (dt.date(2024, 3, 1), {"email": "a@x.com", "attributes": {"AGE": 3.0}}),
        (Decimal("1.5"), {"email": "b@x.com", "attributes": {}}),
    ]
    target = tmp_path / "keys.msgpack"
    _write_items(str(target), items)
    assert [tuple(pair) for pair in decode(target.read_bytes())] == items
    plain = [(7, {"email": "a@x.com", "attributes": {"TAGS": ["x"], "OK": True}})]
    _write_items(str(target), plain)
    assert [tuple(pair) for pair in decode(target.read_bytes())] == plain


def test_remote_staging_keeps_every_file_a_map_job_writes_next_to_its_chunk() -> None:
    """On object storage, jobs run on local copies: the identity hashes and the ``.sync`` record (what
    mirror mode and deletes read) must go up with the chunk, or mirror removals and deletes are held."""
    import uuid

    from airflow_provider_contactsync.core.identifiers import SIDECAR_SUFFIX, IdentityColumns
    from airflow_provider_contactsync.core.parallel import SYNC_SUFFIX
    from airflow_provider_contactsync.staging import _SIDECARS, write_private

    assert set(_SIDECARS) == {SIDECAR_SUFFIX, SYNC_SUFFIX}
    store = ChunkStore(f"memory://staging-{uuid.uuid4().hex}", "contactsync__crm__customers", "manual__1")
    source = store.path("transformed", "chunk-00000.msgpack")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(encode({"rows": [], "rejects": []}))
    items = [(1, {"email": "a@x.io", "attributes": {}})]

    def job(local: list[tuple[str, str]]) -> list[int]:
        for _src, dst in local:
            write_private(dst, encode(items))
            identities = IdentityColumns()
            identities.add_chunk(items, keyed=True)
            write_private(dst + SIDECAR_SUFFIX, identities.to_bytes())
            write_private(dst + SYNC_SUFFIX, encode({"deleted": [], "keys": ["1"], "unkeyed": 0}))
        return [len(local)]

    target = store.chunk_url("mapped", 0)
    assert store.run_jobs([(str(source), target)], job) == [1]
    assert store.read_identities(target) is not None
    assert store.read_sync(target) == {"deleted": [], "keys": ["1"], "unkeyed": 0}

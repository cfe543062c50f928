"""The cursor's boundary: rows read again at the cursor's value pass on only when they changed."""

from __future__ import annotations

import datetime as dt

from airflow_provider_contactsync.core.boundary import Boundary, BoundaryFilter, row_digest
from airflow_provider_contactsync.core.errors import RowError

T = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


def r(key: int, minute: int, name: str = "x") -> dict:
    return {"id": key, "at": T + dt.timedelta(minutes=minute), "name": name}


def test_the_tail_of_a_read_is_its_boundary_even_across_chunks() -> None:
    read = BoundaryFilter("at", "id", None)
    assert read.feed([r(1, 0), r(2, 1), r(3, 2)]) == [r(1, 0), r(2, 1), r(3, 2)]
    read.feed([r(4, 2), r(5, 2)])  # still minute 2: the boundary grows
    boundary = read.boundary()
    assert boundary is not None and boundary.value == T + dt.timedelta(minutes=2)
    assert set(boundary.digests) == {"3", "4", "5"}
    read.feed([r(6, 3)])
    assert set(read.boundary().digests) == {"6"}  # type: ignore[union-attr]


def test_unchanged_boundary_rows_are_left_out_and_changed_ones_kept() -> None:
    previous = Boundary(T, {"1": row_digest(r(1, 0)), "2": row_digest(r(2, 0))})
    read = BoundaryFilter("at", "id", previous)
    kept = read.feed([r(1, 0), r(2, 0, "late commit"), r(0, 0), r(3, 1)])
    assert kept == [r(2, 0, "late commit"), r(0, 0), r(3, 1)]  # row 0: a late commit with a lower key
    assert read.unchanged == 1
    assert read.feed([r(1, 0)]) == [r(1, 0)]  # past the head: nothing else is dropped


def test_a_read_of_only_boundary_rows_keeps_them_in_its_boundary() -> None:
    previous = Boundary(T, {"1": row_digest(r(1, 0))})
    read = BoundaryFilter("at", "id", previous)
    assert read.feed([r(1, 0)]) == [] and read.unchanged == 1
    assert read.boundary() == Boundary(T, {"1": row_digest(r(1, 0))})


def test_rows_that_cannot_be_read_are_kept_for_the_error_report() -> None:
    error = RowError("bad", field="at", row=7)
    read = BoundaryFilter("at", "id", Boundary(T, {}))
    assert read.feed([error, {"id": 8, "at": None, "name": "n"}]) == [error, {"id": 8, "at": None, "name": "n"}]
    assert BoundaryFilter("at", "id", None).boundary() is None


def test_a_stored_boundary_is_readable_by_its_owner_only(tmp_path) -> None:
    import stat

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_contactsync.state import read_boundary, write_boundary

    target = ObjectStoragePath(f"file://{tmp_path}/state/cursor-boundary.json")
    write_boundary(target, Boundary(T, {"1": "abc"}))
    assert stat.S_IMODE((tmp_path / "state" / "cursor-boundary.json").stat().st_mode) == 0o600
    assert read_boundary(target) == Boundary(T, {"1": "abc"})

"""The (updated, key) cursor: tie-breaking, time zones, monotonic max, JSON round trip, the inclusive boundary."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import RowError

UTC = dt.timezone.utc
PARIS = dt.timezone(dt.timedelta(hours=1))
T = dt.datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_equal_timestamps_are_ordered_by_key() -> None:
    cursor = Cursor(T, 5)
    assert cursor.is_before(T, 6)
    assert not cursor.is_before(T, 5)
    assert not cursor.is_before(T, 4)
    assert cursor.is_before(T + dt.timedelta(microseconds=1), 1)
    assert not cursor.is_before(T - dt.timedelta(microseconds=1), 99)


def test_time_zones_compare_as_instants() -> None:
    same_instant = normalize_value(dt.datetime(2026, 11, 20, 9, 0, tzinfo=PARIS))
    assert same_instant == T
    assert normalize_value("2026-11-20T09:00:00+01:00") == T
    assert normalize_value("2026-11-20T08:00:00Z") == T
    assert normalize_value(dt.datetime(2026, 11, 20, 8, 0)) == T  # naive is UTC


@pytest.mark.parametrize("bad", [None, True, "yesterday", [1]])
def test_values_that_cannot_order_rows(bad: object) -> None:
    with pytest.raises(RowError):
        normalize_value(bad)


def test_max_never_moves_backwards() -> None:
    old, new = Cursor(T, 1), Cursor(T, 2)
    assert new.max(old) == new
    assert old.max(new) == new
    assert old.max(None) == old


def test_mixed_key_types_order_deterministically() -> None:
    assert Cursor(T, 10).is_before(T, "a")
    assert not Cursor(T, "a").is_before(T, 10)


@pytest.mark.parametrize("value", [T, dt.date(2026, 1, 2), 42, 4.5, Decimal("10.25"), "v-10"])
def test_json_round_trip(value: object) -> None:
    cursor = Cursor(value, "k-1")  # type: ignore[arg-type]
    assert Cursor.from_json(cursor.to_json()) == cursor
    assert Cursor.from_json(None) is None


def test_database_windows_reach_the_cursor_s_own_value_whatever_the_key() -> None:
    cursor = Cursor(T, 5)
    assert cursor.reaches(T)  # the boundary is read again: a late commit at T with key 4 is not lost
    assert cursor.reaches(T + dt.timedelta(microseconds=1))
    assert not cursor.reaches(T - dt.timedelta(microseconds=1))
    assert Cursor(dt.date(2026, 11, 20), 1).reaches(dt.date(2026, 11, 20))  # a DATE cursor: its last day again
    assert not cursor.is_before(T, 4)  # file sources: strictly after the (value, key) pair

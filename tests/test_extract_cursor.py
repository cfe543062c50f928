"""The cursor an extract stores: the last readable row of an ordered read, never a rejected one."""

from __future__ import annotations

import datetime as dt

from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.operators.contactsync import _last_row, latest_cursor

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


def test_a_row_rejected_at_read_time_at_the_end_of_a_chunk_does_not_hide_the_chunk_s_cursor() -> None:
    chunk = [
        {"id": 1, "updated_at": T0},
        {"id": 2, "updated_at": T0 + dt.timedelta(minutes=1)},
        RowError("birthday: date outside years 1-9999", field="birthday", row=3),
    ]
    cursor = latest_cursor(_last_row(chunk), "updated_at", "id", None)
    assert cursor is not None and (cursor.value, cursor.key) == (T0 + dt.timedelta(minutes=1), 2)


def test_a_chunk_of_rejects_keeps_the_previous_cursor() -> None:
    previous = latest_cursor([{"id": 9, "updated_at": T0}], "updated_at", "id", None)
    assert _last_row([RowError("unreadable")]) == []
    assert latest_cursor(_last_row([RowError("unreadable")]), "updated_at", "id", previous) == previous

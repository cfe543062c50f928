"""Row readers: CSV and JSON lines, bad lines become row errors, never a silent drop."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import read_rows, rows_from_text
from airflow_provider_contactsync.core.spec import CsvOptions


def test_csv_rows_keep_only_fields_and_empty_cells_are_null() -> None:
    rows = rows_from_text("id,email,extra\n1,a@x.io,zz\n2,,\n", format="csv", fields=["id", "email"])
    assert rows == [{"id": "1", "email": "a@x.io"}, {"id": "2", "email": None}]


def test_csv_wrong_column_count_is_a_row_error_and_reading_goes_on() -> None:
    rows = rows_from_text("id,email\n1,a@x.io\n2,b@x.io,oops\n3,c@x.io\n", format="csv", fields=["id", "email"])
    assert rows[0] == {"id": "1", "email": "a@x.io"}
    assert isinstance(rows[1], RowError) and "line 3: 3 columns, the header has 2" in rows[1].reason
    assert rows[2] == {"id": "3", "email": "c@x.io"}


def test_csv_quoted_newlines_and_delimiters(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id;note\n1;"two\nlines; and a semicolon"\n', encoding="latin-1")
    rows = list(
        read_rows(
            path,
            format="csv",
            fields=["id", "note"],
            csv_options=CsvOptions(delimiter=";", encoding="latin-1"),
        )
    )
    assert rows == [{"id": "1", "note": "two\nlines; and a semicolon"}]


def test_csv_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,email\n1,a@x.io\n".encode())
    assert list(read_rows(path, format="csv", fields=["id"])) == [{"id": "1"}]


def test_csv_header_missing_a_field_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,mail\n1,a\n")
    with pytest.raises(ConfigurationError, match=r"c.csv: the header lacks the fields \['email'\]"):
        list(read_rows(path, format="csv", fields=["id", "email"]))


def test_csv_duplicate_header_and_empty_file(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("id,id\n1,2\n")
    with pytest.raises(ConfigurationError, match="duplicate column names"):
        list(read_rows(dup, format="csv", fields=["id"]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ConfigurationError, match="empty.csv: the file is empty"):
        list(read_rows(empty, format="csv", fields=["id"]))


def test_jsonl_nested_fields_bad_lines_and_missing_keys() -> None:
    text = '{"id": 1, "address": {"city": "Lyon"}}\nnot json\n[1]\n{"id": 2}\n'
    rows = rows_from_text(text, format="jsonl", fields=["id", "address.city"])
    assert rows[0] == {"id": 1, "address.city": "Lyon"}
    assert isinstance(rows[1], RowError) and "line 2: not valid JSON" in rows[1].reason
    assert isinstance(rows[2], RowError) and "a JSON object was expected" in rows[2].reason
    assert rows[3] == {"id": 2, "address.city": None}

"""Hostile input to the row readers (issue 11): every bad row is a reject naming its line, every good
row is still read, a bad file is one clear error, and the limits make the worst inputs fail fast."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import (
    ReadLimits,
    csv_header,
    first_json_keys,
    parse_json,
    read_csv,
    read_rows,
    rows_from_text,
)
from airflow_provider_contactsync.core.spec import CsvOptions

HEADER = "id,email,name\n"
FIELDS = ["id", "email", "name"]


def good(*ids: int) -> str:
    return "".join(f"{i},u{i}@example.com,N{i}\n" for i in ids)


def read(text: str, *, limits: ReadLimits | None = None, fmt: str = "csv") -> list[Any]:
    return rows_from_text(text, format=fmt, fields=FIELDS, limits=limits)


def ok_ids(rows: list[Any]) -> list[str]:
    return [str(r["id"]) for r in rows if not isinstance(r, RowError)]


def rejects(rows: list[Any]) -> list[str]:
    return [r.reason for r in rows if isinstance(r, RowError)]


def read_file(path: Path, *, fmt: str = "csv", encoding: str = "utf-8") -> list[Any]:
    return list(read_rows(path, format=fmt, fields=FIELDS, csv_options=CsvOptions(encoding=encoding)))


# -- quoting: a broken or oversized row costs itself, never the rows after it -----------------------


def test_an_unterminated_quote_is_one_reject_and_the_rows_after_it_are_read_again() -> None:
    rows = read(HEADER + good(1) + '2,u2@example.com,"Ann\n' + good(3, 4, 5, 6, 7))
    assert ok_ids(rows) == ["1", "3", "4", "5", "6", "7"]
    assert rejects(rows) == ["line 3: unreadable CSV: unexpected end of data; lines 4-8 are read again"]


def test_a_quote_closed_by_a_later_field_rejects_only_the_row_where_it_opened() -> None:
    rows = read(HEADER + good(1) + '2,u2@example.com,"Ann\n' + good(3) + '4,u4@example.com,"N4"\n' + good(5))
    assert ok_ids(rows) == ["1", "3", "4", "5"]
    assert rejects(rows) == ["line 3: unreadable CSV: ',' expected after '\"'; lines 4-5 are read again"]


def test_a_10_mb_quoted_field_with_line_breaks_is_one_reject_and_the_next_row_is_read() -> None:
    big = ("x" * 99 + "\n") * 100_000  # 10 MB over 100,000 lines
    rows = read(HEADER + '1,u1@example.com,"' + big + '"\n' + good(2))
    assert ok_ids(rows) == ["2"]
    assert rejects(rows) == [
        "line 2: a row of more than 1,048,576 characters (lines 2-100002), over the row size limit "
        "(CONTACTSYNC_MAX_ROW_SIZE raises it)"
    ]


def test_an_oversized_row_with_broken_quoting_is_read_again_after_its_first_line() -> None:
    limits = ReadLimits(max_row_size=50)
    rows = read(HEADER + '1,u1@example.com,"' + "xxxxxxxxx\n" * 10 + good(2, 3), limits=limits)
    assert ok_ids(rows) == ["2", "3"]
    assert rejects(rows)[0].startswith("line 2: a row of more than 50 characters (lines 2-13)")
    assert "its quoting is broken, so lines 3-13 are read again" in rejects(rows)[0]
    assert rejects(rows)[1:] == [f"line {n}: 1 columns, the header has 3" for n in range(3, 12)]


def test_a_50_mb_line_is_one_reject_read_a_block_at_a_time() -> None:
    rows = read(HEADER + good(1) + "2,u2@example.com," + "y" * 50_000_000 + "\n" + good(3))
    assert ok_ids(rows) == ["1", "3"]
    assert rejects(rows) == [
        "line 3: a row of more than 1,048,576 characters (line 3), over the row size limit "
        "(CONTACTSYNC_MAX_ROW_SIZE raises it)"
    ]


def test_the_row_size_limit_is_raised_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEADER + '1,u1@example.com,"' + "x" * 2_000_000 + '"\n' + good(2)
    assert ok_ids(read(text)) == ["2"]
    monkeypatch.setenv("CONTACTSYNC_MAX_ROW_SIZE", "4_000_000")
    assert ok_ids(read(text)) == ["1", "2"]
    monkeypatch.setenv("CONTACTSYNC_MAX_ROW_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="CONTACTSYNC_MAX_ROW_SIZE='lots': a positive whole number"):
        read(text)


def _record(fields: list[str], terminator: str, rng: random.Random) -> str:
    """One CSV record: fields quoted when they must be (csv.writer leaves a lone CR unquoted), or at random."""
    quoted = [
        '"' + f.replace('"', '""') + '"' if any(c in f for c in ',"\r\n') or rng.random() < 0.3 else f for f in fields
    ]
    return ",".join(quoted) + terminator


@pytest.mark.parametrize("seed", range(40))
def test_rows_within_the_limit_read_as_csv_reads_them_and_longer_ones_are_single_rejects(seed: int) -> None:
    """Well-formed CSV with quotes, doubled quotes, delimiters and line breaks in fields, under a tiny limit."""
    rng = random.Random(seed)
    alphabet = ["a", "b", ",", '"', "\n", "\r\n", "\r", " ", "é"]
    limit = rng.choice([8, 16, 40, 120])
    text, expected = "a,b,c\n", []
    for _ in range(rng.randint(1, 30)):
        fields = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3)]
        record = _record(fields, rng.choice(["\n", "\r\n"]), rng)
        text += record
        expected.append(None if len(record) > limit else {k: v or None for k, v in zip("abc", fields, strict=True)})
    rows = rows_from_text(text, format="csv", fields=["a", "b", "c"], limits=ReadLimits(max_row_size=limit))
    got = [None if isinstance(r, RowError) else r for r in rows]
    assert got == expected
    assert all("over the row size limit" in r.reason for r in rows if isinstance(r, RowError))


@pytest.mark.parametrize("seed", range(40))
def test_random_damage_never_raises_and_rows_after_it_are_read(seed: int) -> None:
    rng = random.Random(seed)
    lines = [f"{i},u{i}@example.com,N{i}\n" for i in range(1, 30)]
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines))
        cut = rng.randrange(len(lines[at]))
        lines[at] = lines[at][:cut] + rng.choice(['"', '""', '"x', ',"', "\x00", "\r"]) + lines[at][cut:]
    damaged = max(i for i, line in enumerate(lines) if not line.startswith(f"{i + 1},u{i + 1}@example.com,N{i + 1}\n"))
    tail = [str(i + 1) for i in range(damaged + 1, len(lines)) if '"' not in "".join(lines[damaged + 1 :])]
    rows = read(HEADER + "".join(lines) + good(100), limits=ReadLimits(max_row_size=rng.choice([30, 200, 1 << 20])))
    assert all(isinstance(r, (dict, RowError)) for r in rows)
    assert ok_ids(rows)[-1] == "100"  # the row after every damage is read
    assert set(tail) <= set(ok_ids(rows))


# -- headers ----------------------------------------------------------------------------------------


def test_a_million_column_header_is_one_clear_error_naming_the_limit() -> None:
    header = "id,email,name" + "," * 1_000_000 + "\n"  # within the row size limit: a million empty names
    with pytest.raises(ConfigurationError, match=r"the header has 1,000,003 columns, over the limit of 10,000 "):
        read(header + good(1))
    wide = "id,email,name," + ",".join(f"c{i}" for i in range(1_000_000)) + "\n"  # 6.9 MB
    with pytest.raises(ConfigurationError, match="the header is over the row size limit of 1,048,576 characters"):
        read(wide + good(1))


def test_wide_headers_are_checked_in_linear_time_and_named_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTSYNC_MAX_COLUMNS", "100000")
    names = [f"c{i}" for i in range(40_000)]
    header = "id,email,name," + ",".join(names) + "\n"
    rows = read(header + "1,u1@example.com,N1" + "," * 40_000 + "\n")
    assert ok_ids(rows) == ["1"]
    with pytest.raises(ConfigurationError) as info:
        read(",".join(names + names) + "\n")
    assert "duplicate column names in the header: ['c0', 'c1', " in str(info.value)
    assert "and 39,980 more" in str(info.value) and len(str(info.value)) < 600


def test_a_quoted_header_after_a_bom_is_read() -> None:
    rows = read('\ufeff"id","email","name"\n' + good(1, 2))
    assert ok_ids(rows) == ["1", "2"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings(ending: str) -> None:
    text = (HEADER + good(1) + '2,u2@example.com,"two\nlines"\n' + good(3)).replace("\n", ending)
    rows = read(text)
    assert ok_ids(rows) == ["1", "2", "3"]
    assert rows[1]["name"] == f"two{ending}lines"


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="empty.csv: the file is empty"):
        read_file(empty)
    jsonl = tmp_path / "empty.jsonl"
    jsonl.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="empty.jsonl: the file is empty"):
        read_file(jsonl, fmt="jsonl")
    only = tmp_path / "only.csv"
    only.write_text(HEADER)
    assert read_file(only) == []


# -- encodings: each line that does not decode is that line's reject ----------------------------------


def test_a_latin_1_line_in_a_utf_8_file_rejects_that_line_naming_file_line_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes((HEADER + good(1)).encode() + "2,u2@example.com,Caf\xe9\n".encode("latin-1") + good(3).encode())
    rows = read_file(path)
    assert ok_ids(rows) == ["1", "3"]
    [reject] = [r for r in rows if isinstance(r, RowError)]
    assert reject.reason.startswith(f"{path} line 3: bytes that are not valid utf-8: Caf\\xe9")
    assert "source.csv.encoding" in reject.reason and reject.field == "name" and reject.value is None


def test_a_whole_cp1252_file_read_as_utf_8_loads_its_plain_rows(tmp_path: Path) -> None:
    path = tmp_path / "cp1252.csv"
    path.write_bytes((HEADER + good(1) + "2,u2@example.com,Ren\xe9e \u2019\n" + good(3)).encode("cp1252"))
    rows = read_file(path)
    assert ok_ids(rows) == ["1", "3"] and len(rejects(rows)) == 1
    assert ok_ids(read_file(path, encoding="cp1252")) == ["1", "2", "3"]


def test_a_utf_16_file_read_as_utf_8_is_one_clear_error_suggesting_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes((HEADER + good(1)).encode("utf-16"))
    with pytest.raises(ConfigurationError, match=r"utf16.csv: the header has bytes that are not valid utf-8: "):
        read_file(path)
    path.write_bytes((HEADER + good(1)).encode("utf-16-le"))  # no BOM: ASCII interleaved with NULs
    with pytest.raises(ConfigurationError, match=r"the header has NUL characters.*UTF-16"):
        read_file(path)
    assert ok_ids(read_file(path, encoding="utf-16-le")) == ["1"]


def test_utf_16_errors_below_0x80_are_rejects_too(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes((HEADER + good(1)).encode("utf-16-le") + b"2\x00,\x00\x00\xdc,\x00x\x00\n\x00" + b"3")
    rows = read_file(path, encoding="utf-16-le")
    assert ok_ids(rows) == ["1"] and len(rejects(rows)) == 2  # a lone low surrogate, a trailing odd byte


def test_invalid_utf_8_and_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes((HEADER + good(1)).encode() + b"2,u2@example.com,\xff\xfe\xc3\x28\n3,u3@example.com,A\x00B\n")
    rows = read_file(path)
    assert ok_ids(rows) == ["1", "3"]
    assert "bytes that are not valid utf-8: \\xff\\xfe\\xc3(" in rejects(rows)[0]
    assert rows[-1]["name"] == "A\x00B"  # NUL decodes; the value checks refuse it as text


def test_binary_garbage(tmp_path: Path) -> None:
    rng = random.Random(11)
    garbage = bytes(rng.getrandbits(8) for _ in range(300_000))
    path = tmp_path / "garbage.csv"
    path.write_bytes(garbage)
    with pytest.raises(ConfigurationError, match="garbage.csv: the header"):
        read_file(path)
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(garbage)
    rows = read_file(path, fmt="jsonl")
    assert rows and all(isinstance(r, RowError) and r.reason.startswith(f"{path} line ") for r in rows)


# -- JSON lines -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": 2, "x": ' + "[" * 10_000 + "]" * 10_000 + "}", "JSON nested deeper than 64 levels"),
        ('{"id": 2, "x": ' + '{"a": ' * 65 + "1" + "}" * 65 + "}", "JSON nested deeper than 64 levels"),
        ('{"id": ' + "9" * 5000 + "}", "not valid JSON: a number of more than 4,300 digits"),
        ('{"id": 2, "name": "\\ud800"}', "a lone surrogate escape in name"),
        ('{"id": 2, "tags": ["a", "\\udfff"]}', "a lone surrogate escape in tags[1]"),
        ('{"id": 2, "\\ud800": 1}', "a lone surrogate escape in a key of the value"),
        ('{"id": 2, "name": "\x00"}', "not valid JSON: Invalid control character"),
        ("[1, 2]", "a JSON object was expected"),
    ],
)
def test_a_bad_json_line_is_that_line_s_reject(line: str, reason: str) -> None:
    rows = read('{"id": 1}\n' + line + '\n{"id": 3}\n', fmt="jsonl")
    assert ok_ids(rows) == ["1", "3"]
    assert rejects(rows)[0].startswith("line 2: " + reason)


def test_json_that_holds_what_it_may() -> None:
    deep = '{"x": ' + "[" * 63 + "]" * 63 + ', "s": "' + "[[[[{{{{" * 30 + '"}'
    rows = read(deep + '\n{"id": 1180591620717411303424, "name": "\\ud83d\\ude00"}\n', fmt="jsonl")
    assert not rejects(rows)
    assert rows[1] == {"id": 1180591620717411303424, "email": None, "name": "\U0001f600"}


def test_a_json_line_over_the_size_limit_is_skipped_to_its_end() -> None:
    rows = read('{"id": 1}\n{"id": 2, "name": "' + "y" * 3_000_000 + '"}\r\n{"id": 3}\r{"id": 4}', fmt="jsonl")
    assert ok_ids(rows) == ["1", "3", "4"]
    assert rejects(rows) == [
        "line 2: a line of more than 1,048,576 characters, over the row size limit (CONTACTSYNC_MAX_ROW_SIZE raises it)"
    ]


def test_parse_json_takes_bytes_and_names_its_problems() -> None:
    assert parse_json(b'{"a": 1}', max_depth=2) == ({"a": 1}, None)
    assert parse_json('{"a": {"b": []}}', max_depth=2)[1] == (
        "JSON nested deeper than 2 levels (CONTACTSYNC_MAX_JSON_DEPTH raises it)"
    )
    assert parse_json(b'{"a": "\xff"}', max_depth=2)[1].startswith("not valid JSON: bytes that do not decode")
    assert parse_json('{"a": "]]]]"}', max_depth=1) == ({"a": "]]]]"}, None)


# -- discovery reads headers within the same limits ------------------------------------------------


def test_discovery_reads_headers_and_first_objects_within_the_limits() -> None:
    options = CsvOptions()
    assert csv_header(io.StringIO('\ufeff"id",email\n1,a\n', newline=""), options) == ["id", "email"]
    with pytest.raises(ConfigurationError, match="over the limit of 10,000"):
        csv_header(io.StringIO("," * 20_000 + "\n"), options)
    assert first_json_keys(io.StringIO('\n{"id": 1, "b": 2}\n')) == ["id", "b"]
    with pytest.raises(ConfigurationError, match="the first line cannot be read: line 1: JSON nested deeper"):
        first_json_keys(io.StringIO("[" * 100 + "]" * 100 + "\n"))


def test_read_csv_of_a_stream_without_an_encoding() -> None:
    rows = list(read_csv(io.StringIO(HEADER + good(1)), CsvOptions(), FIELDS))
    assert rows == [{"id": "1", "email": "u1@example.com", "name": "N1"}]


def test_preview_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="missing.csv: cannot open the file"):
        read_file(tmp_path / "missing.csv")
    path = tmp_path / "x.csv"
    path.write_text("a\n")
    with pytest.raises(ConfigurationError, match="unknown format 'xml'"):
        list(read_rows(path, format="xml", fields=["a"]))

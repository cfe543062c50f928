"""Reading source rows from CSV and JSON lines streams, one row at a time (constant memory).

A row that cannot be read (wrong number of columns, bad JSON) is not an exception that ends the
file: it is yielded as a :class:`RowError` so the caller rejects that row and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import CsvOptions

Row = dict[str, Any]


def open_text(path: str | Path, encoding: str = "utf-8") -> IO[str]:
    # newline="" lets the csv module handle quoted newlines itself.
    return open(path, encoding=encoding, newline="")  # noqa: SIM115


def read_csv(
    stream: IO[str], options: CsvOptions, fields: Sequence[str], *, name: str = "<csv>"
) -> Iterator[Row | RowError]:
    """Yield rows with exactly ``fields`` (empty cells are null); extra columns are ignored."""
    reader = csv.reader(stream, delimiter=options.delimiter, quotechar=options.quotechar, strict=True)
    try:
        header = next(reader) if options.header else list(options.columns or ())
    except StopIteration:
        raise ConfigurationError("the file is empty (no header line)", file=name) from None
    except csv.Error as exc:
        raise ConfigurationError(f"cannot read the header: {exc}", file=name) from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise ConfigurationError(f"duplicate column names in the header: {duplicates}", file=name)
    missing = [f for f in fields if f not in header]
    if missing:
        raise ConfigurationError(f"the header lacks the fields {missing}; it has {header}", file=name)
    positions = [(f, header.index(f)) for f in fields]
    width = len(header)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(f"line {reader.line_num}: unreadable CSV: {exc}")
            continue
        if not cells:
            continue
        if len(cells) != width:
            yield RowError(f"line {reader.line_num}: {len(cells)} columns, the header has {width}")
            continue
        row = {f: (cells[i] if cells[i] != "" else None) for f, i in positions}
        if _UNDECODED.search("\x00".join(cells)):
            yield _undecoded(f"line {reader.line_num}", row, getattr(stream, "encoding", None))
            continue
        yield row


def read_jsonl(stream: IO[str], fields: Sequence[str], *, name: str = "<jsonl>") -> Iterator[Row | RowError]:
    """Yield one row per JSON object line; a missing field is null."""
    for number, line in enumerate(stream, start=1):
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte order mark is not part of the JSON
        if not line.strip():
            continue
        if _UNDECODED.search(line):
            yield RowError(f"line {number}: bytes that are not valid {getattr(stream, 'encoding', None) or 'text'}")
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowError(f"line {number}: not valid JSON: {exc.msg}")
            continue
        if not isinstance(document, dict):
            yield RowError(f"line {number}: a JSON object was expected")
            continue
        yield {f: dig(document, f) for f in fields}


_UNDECODED = re.compile("[\udc80-\udcff]")
"""Lone surrogates: what ``errors="surrogateescape"`` makes of bytes the encoding cannot decode."""


def _undecoded(where: str, row: Row, encoding: str | None) -> RowError:
    """The reject of a row with undecodable bytes, naming the field and showing the bytes."""
    for field, value in row.items():
        if isinstance(value, str) and _UNDECODED.search(value):
            raw = value.encode("utf-8", "surrogateescape")
            return RowError(f"{where}: bytes that are not valid {encoding or 'text'}: {raw!r}", field=field, value=None)
    return RowError(f"{where}: bytes that are not valid {encoding or 'text'} (in a column not imported)")


def read_rows(
    path: str | Path, *, format: str, fields: Sequence[str], csv_options: CsvOptions | None = None
) -> Iterator[Row | RowError]:
    """Rows of a local CSV or JSON lines file, by format."""
    options = csv_options or CsvOptions()
    name = str(path)
    with open_text(path, options.encoding if format == "csv" else "utf-8") as stream:
        if format == "csv":
            yield from read_csv(stream, options, fields, name=name)
        elif format == "jsonl":
            yield from read_jsonl(stream, fields, name=name)
        else:
            raise ConfigurationError(f"unknown format {format!r}: csv or jsonl", file=name)


def dig(document: dict[str, Any], field: str) -> Any:
    """``address.city`` reaches into nested objects (documents, structs, JSON); a missing part is null.

    A key that itself contains the dot wins (``{"address.city": ...}``), as in flat exports.
    """
    if field in document or "." not in field:
        return document.get(field)
    value: Any = document
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def top_level_columns(fields: Sequence[str]) -> list[str]:
    """The columns to read for ``fields``: ``address.city`` needs ``address``; order kept, no repeats."""
    return list(dict.fromkeys(f.split(".", 1)[0] for f in fields))


def rows_from_text(text: str, *, format: str, fields: Sequence[str]) -> list[Row | RowError]:
    """Convenience for tests and small inputs."""
    stream = io.StringIO(text, newline="")
    reader = read_csv(stream, CsvOptions(), fields) if format == "csv" else read_jsonl(stream, fields)
    return list(reader)

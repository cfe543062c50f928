"""Reading source rows from CSV and JSON lines streams, one row at a time (constant memory).

A row that cannot be read (wrong number of columns, broken quoting, bad JSON, bytes that do not
decode, over a limit) is not an exception that ends the file: it is yielded as a :class:`RowError`
naming its line, so the caller rejects that row and reads on. A problem of the whole file (no
header, a header without a needed field) raises :class:`ConfigurationError` naming the file.

Work is bounded whatever the input (:class:`ReadLimits`): a row or line is at most
``CONTACTSYNC_MAX_ROW_SIZE`` characters, a header at most ``CONTACTSYNC_MAX_COLUMNS`` columns, JSON
at most ``CONTACTSYNC_MAX_JSON_DEPTH`` levels deep. A CSV row whose quoting breaks is rejected at
the line where it starts and the lines it swallowed are read again; a row over the size limit is
rejected and reading resumes after its end (docs/sources.md, "Hostile input").
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import IO, Any

from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import CsvOptions

Row = dict[str, Any]

MAX_ROW_SIZE = 1 << 20
MAX_COLUMNS = 10_000
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of reading one file, each raised by an environment variable of the same name.

    :param max_row_size: characters of one CSV row (its quoted line breaks included) or JSON line
        (``CONTACTSYNC_MAX_ROW_SIZE``, default 1,048,576).
    :param max_columns: columns of a CSV header (``CONTACTSYNC_MAX_COLUMNS``, default 10,000).
    :param max_json_depth: nesting of a JSON line or JSON payload (``CONTACTSYNC_MAX_JSON_DEPTH``, default 64).
    """

    max_row_size: int = MAX_ROW_SIZE
    max_columns: int = MAX_COLUMNS
    max_json_depth: int = MAX_JSON_DEPTH

    @classmethod
    def from_env(cls) -> ReadLimits:
        return cls(
            _env_limit("CONTACTSYNC_MAX_ROW_SIZE", MAX_ROW_SIZE),
            _env_limit("CONTACTSYNC_MAX_COLUMNS", MAX_COLUMNS),
            _env_limit("CONTACTSYNC_MAX_JSON_DEPTH", MAX_JSON_DEPTH),
        )


def _env_limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"environment variable {name}={text!r}: a positive whole number is expected")
    return value


# -- text that does not decode ------------------------------------------------------------------

UNDECODABLE = "contactsync-undecodable"
"""Decoding error handler: each byte that does not decode becomes the lone surrogate U+DC00 + byte.

Like ``surrogateescape``, but for every byte (``surrogateescape`` refuses bytes below 0x80, which
UTF-16 and UTF-32 errors contain), so no file can make a reader raise UnicodeDecodeError.
"""


def _escape_undecodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "".join(chr(0xDC00 + byte) for byte in error.object[error.start : error.end]), error.end


codecs.register_error(UNDECODABLE, _escape_undecodable)

_UNDECODED = re.compile("[\udc00-\udcff]")
"""What :data:`UNDECODABLE` makes of bytes the encoding cannot decode."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def undecoded_text(text: str, limit: int = 60) -> str:
    """``text`` shown with its undecodable bytes as ``\\xNN`` (ASCII, safe in any report)."""
    shown = "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc00" <= c <= "\udcff" else c for c in text[:limit])
    return ascii(shown + ("..." if len(text) > limit else ""))[1:-1].replace("\\\\x", "\\x")


def open_text(path: str | Path, encoding: str = "utf-8") -> IO[str]:
    # newline="" lets the csv module handle quoted newlines itself; bytes that do not decode
    # become lone surrogates that the readers turn into a reject of their row, not a crash.
    return open(path, encoding=encoding, errors=UNDECODABLE, newline="")  # noqa: SIM115


# -- CSV ---------------------------------------------------------------------------------------


class _Oversized(Exception):  # noqa: N818 - a signal between the line feeder and the row loop, never raised out
    """The row being read passed ``max_row_size``; ``line`` is the text that did not fit."""

    def __init__(self, line: str) -> None:
        self.line = line


class _Lines:
    """The physical lines of a text stream, fed to ``csv.reader``: numbered, bounded, and replayable.

    The row loop sets :attr:`start` (the first line of the next row) before each row. Lines after a
    row's first are kept (at most ``limit`` characters in all, or :class:`_Oversized` is raised), so
    that when the row's quoting breaks, the lines it swallowed can be read again as rows.
    """

    def __init__(self, stream: IO[str], limit: int) -> None:
        self.limit = limit
        self.number = 0
        self.start = 1
        self.size = 0
        self.kept: list[str] = []
        self._readline: Callable[[], str] = partial(stream.readline, limit + 1)
        self._pending: deque[Iterator[str]] = deque()

    def _next(self) -> str:
        """The next line, from lines to read again first."""
        while self._pending:
            line = next(self._pending[0], "")
            if line:
                return line
            self._pending.popleft()
        return self._readline()

    def iterate(self) -> Iterator[str]:
        readline, limit, kept = self._readline, self.limit, self.kept
        first = self.number == 0
        while True:
            line = self._next() if self._pending else readline()
            if not line:
                return
            if first:
                first = False
                line = line.removeprefix("\ufeff")  # a byte order mark is not part of the header
            self.number += 1
            if self.number == self.start:
                if kept:
                    kept.clear()
                self.size = len(line)
                if self.size > limit:
                    raise _Oversized(line)
            else:
                self.size += len(line)
                if self.size > limit:
                    raise _Oversized(line)
                kept.append(line)
            yield line

    def read_again(self) -> int:
        """Read the current row's lines after its first again; return the last line the row reached."""
        last = self.number
        if self.kept:
            self._pending.appendleft(iter(list(self.kept)))
            self.kept.clear()
        self.number = self.start
        return last

    def skip_oversized(self, over: _Oversized, delimiter: str, quotechar: str) -> tuple[int, bool]:
        """Read on to the end of a row that passed the size limit, keeping nothing of it in memory.

        Returns ``(last line, clean)``: ``clean`` when the row ends where CSV says it ends, so reading
        resumes on the next line; otherwise (a quote closed by something else than a delimiter or
        a line break, or the end of the file inside quotes) its quoting is broken, and the lines
        after its first are queued to be read again, as after any broken row.
        """
        scanner = _RowEnd(delimiter, quotechar, quoted=self.number != self.start)
        past_first = self.number != self.start  # lines after the row's first are kept to read again
        spool = _spool(self.limit)
        spool.writelines(self.kept)
        self.kept.clear()
        line = over.line
        while True:
            if past_first:
                spool.write(line)
            ended = scanner.feed(line)
            line_done = line.endswith(("\n", "\r"))
            if ended:
                break
            past_first = past_first or line_done
            following = self._next()
            if not following:
                scanner.finish()
                break
            if line_done:
                self.number += 1
            line = following
        last = self.number
        if not scanner.broken:
            spool.close()
            return last, True
        if not past_first and not line_done:  # broken on its first line: drop the rest of that line
            while (rest := self._next()) and not rest.endswith(("\n", "\r")):
                pass
        spool.seek(0)
        self._pending.appendleft(iter(partial(spool.readline, self.limit + 1), ""))
        self.number = self.start
        return last, False


def _spool(limit: int) -> Any:
    """Lines to read again: in memory up to ``limit`` characters, then in a temporary file."""
    return tempfile.SpooledTemporaryFile(  # noqa: SIM115 - read to its end, then dropped (and so closed)
        max_size=limit, mode="w+", encoding="utf-8", errors="surrogatepass", newline=""
    )


class _RowEnd:
    """Finds where a CSV row ends without keeping its text (strict quoting, doubled quotes).

    Fed the row's text chunk by chunk; :attr:`broken` tells a row CSV refuses (a closing quote
    followed by something else than a delimiter or a line break, or the text ending inside quotes).
    """

    START, UNQUOTED, QUOTED, CLOSED = range(4)

    def __init__(self, delimiter: str, quotechar: str, *, quoted: bool) -> None:
        self.delimiter, self.quotechar = delimiter, quotechar
        self.state = self.QUOTED if quoted else self.START
        self.broken = False
        self._carry = ""
        self._quotes = re.compile(re.escape(quotechar) + "+")
        self._opening = re.compile(f"(?<={re.escape(delimiter)}){re.escape(quotechar)}")

    def feed(self, chunk: str) -> bool:
        """Take the next chunk (a line, or part of a long one); True once the row has ended."""
        text = self._carry + chunk
        self._carry = ""
        if not text.endswith(("\n", "\r")):
            # A run of quotes cut by the chunk's end is decided with the next chunk; only its
            # parity matters (a doubled quote is one character of content), so at most 2 are carried.
            body = text.rstrip(self.quotechar)
            run = len(text) - len(body)
            if run:
                self._carry, text = self.quotechar * (2 - run % 2), body
        return self._scan(text)

    def finish(self) -> None:
        """The text ended, and the row with it: broken if that is inside quotes."""
        if self._carry:
            carry, self._carry = self._carry, ""
            self._scan(carry)
        if self.state == self.QUOTED:
            self.broken = True

    def _scan(self, text: str) -> bool:
        d, q, n, pos = self.delimiter, self.quotechar, len(text), 0
        while pos < n:
            state = self.state
            if state == self.QUOTED:
                match = self._quotes.search(text, pos)
                if match is None:
                    return False
                pos = match.end()
                if (pos - match.start()) % 2:
                    self.state = self.CLOSED
            elif state == self.CLOSED:
                c = text[pos]
                if c == d:
                    self.state, pos = self.START, pos + 1
                elif c in "\r\n":
                    return True
                else:
                    self.broken = True
                    return True
            else:
                if state == self.START and text[pos] == q:
                    self.state, pos = self.QUOTED, pos + 1
                    continue
                match = self._opening.search(text, pos)
                if match is None:
                    if text.endswith(("\n", "\r")):
                        return True
                    self.state = self.START if text.endswith(d) else self.UNQUOTED
                    return False
                self.state, pos = self.QUOTED, match.end()
        return False


def _csv_field_limit(limit: int) -> None:
    """csv's own per-field limit must not fire before ours (it leaves the reader mid-field)."""
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def read_csv(
    stream: IO[str],
    options: CsvOptions,
    fields: Sequence[str],
    *,
    name: str = "<csv>",
    limits: ReadLimits | None = None,
) -> Iterator[Row | RowError]:
    """Yield rows with exactly ``fields`` (empty cells are null); extra columns are ignored."""
    limits = limits or ReadLimits.from_env()
    _csv_field_limit(limits.max_row_size)
    dialect = {"delimiter": options.delimiter, "quotechar": options.quotechar, "strict": True}
    lines = _Lines(stream, limits.max_row_size)
    encoding = getattr(stream, "encoding", None) or "text"
    if options.header:
        header = _read_header(lines, dialect, limits, name=name, encoding=encoding)
    else:
        header = list(options.columns or ())
    positions = [(f, header.index(f)) for f in _check_header(header, fields, limits, name=name)]
    width = len(header)
    reader = csv.reader(lines.iterate(), **dialect)  # type: ignore[arg-type]
    while True:
        lines.start = lines.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = lines.start
            last = lines.read_again()
            again = f"; lines {start + 1}-{last} are read again" if last > start else ""
            yield RowError(f"line {start}: unreadable CSV: {exc}{again}")
            reader = csv.reader(lines.iterate(), **dialect)  # type: ignore[arg-type]
            continue
        except _Oversized as over:
            start = lines.start
            last, clean = lines.skip_oversized(over, options.delimiter, options.quotechar)
            span = f"line {start}" if last == start else f"lines {start}-{last}"
            after = "" if clean else f"; its quoting is broken, so lines {start + 1}-{last} are read again"
            yield RowError(
                f"line {start}: a row of more than {limits.max_row_size:,} characters ({span}), over the row size "
                f"limit (CONTACTSYNC_MAX_ROW_SIZE raises it){after}"
            )
            reader = csv.reader(lines.iterate(), **dialect)  # type: ignore[arg-type]
            continue
        if not cells:
            continue
        if len(cells) != width:
            yield RowError(f"line {lines.start}: {len(cells)} columns, the header has {width}")
            continue
        row = {f: (cells[i] if cells[i] != "" else None) for f, i in positions}
        if _UNDECODED.search("\x00".join(cells)):
            yield _undecoded(f"line {lines.start}", row, encoding)
            continue
        yield row


def csv_header(stream: IO[str], options: CsvOptions, *, name: str = "<csv>") -> list[str]:
    """The column names of a CSV stream (its header, or ``options.columns``), read within the limits."""
    if not options.header:
        return list(options.columns or ())
    limits = ReadLimits.from_env()
    _csv_field_limit(limits.max_row_size)
    dialect = {"delimiter": options.delimiter, "quotechar": options.quotechar, "strict": True}
    encoding = getattr(stream, "encoding", None) or "text"
    header = _read_header(_Lines(stream, limits.max_row_size), dialect, limits, name=name, encoding=encoding)
    if len(header) > limits.max_columns:
        _check_header(header, (), limits, name=name)
    return header


def first_json_keys(stream: IO[str], *, name: str = "<jsonl>") -> list[str]:
    """The keys of the first JSON object of a JSON lines stream ([] without one), read within the limits."""
    for row in read_jsonl(stream, (), name=name, documents=True):
        if isinstance(row, RowError):
            raise ConfigurationError(f"the first line cannot be read: {row.reason}", file=name)
        return list(row)
    return []


def _read_header(lines: _Lines, dialect: dict[str, Any], limits: ReadLimits, *, name: str, encoding: str) -> list[str]:
    """The header row; any problem with it is a problem of the whole file."""
    reader = csv.reader(lines.iterate(), **dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigurationError("the file is empty (no header line)", file=name) from None
    except csv.Error as exc:
        raise ConfigurationError(f"cannot read the header: {exc}", file=name) from None
    except _Oversized:
        raise ConfigurationError(
            f"the header is over the row size limit of {limits.max_row_size:,} characters "
            "(CONTACTSYNC_MAX_ROW_SIZE raises it)",
            file=name,
        ) from None
    joined = "\x00".join(header)
    if _UNDECODED.search(joined):
        raise ConfigurationError(
            f"the header has bytes that are not valid {encoding}: {undecoded_text(','.join(header))}; "
            "is the file in another encoding? (source.csv.encoding)",
            file=name,
        )
    if "\x00" in "".join(header):
        raise ConfigurationError(
            f"the header has NUL characters: {_shown(header)}; is the file UTF-16 or UTF-32? (source.csv.encoding)",
            file=name,
        )
    return header


def _check_header(header: list[str], fields: Sequence[str], limits: ReadLimits, *, name: str) -> Sequence[str]:
    if len(header) > limits.max_columns:
        raise ConfigurationError(
            f"the header has {len(header):,} columns, over the limit of {limits.max_columns:,} "
            "(CONTACTSYNC_MAX_COLUMNS raises it)",
            file=name,
        )
    duplicates = sorted(h for h, count in Counter(header).items() if count > 1)
    if duplicates:
        raise ConfigurationError(f"duplicate column names in the header: {_shown(duplicates)}", file=name)
    names = set(header)
    missing = [f for f in fields if f not in names]
    if missing:
        raise ConfigurationError(f"the header lacks the fields {missing}; it has {_shown(header)}", file=name)
    return fields


def _shown(names: Sequence[str], limit: int = 20) -> str:
    """A list of column names for a message: the first ``limit`` (names cut at 40 characters)."""
    shown = [n if len(n) <= 40 else n[:40] + "..." for n in names[:limit]]
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return ascii(shown) + more if any(_SURROGATE.search(n) for n in shown) else f"{shown}{more}"


def _undecoded(where: str, row: Row, encoding: str) -> RowError:
    """The reject of a row with undecodable bytes, naming the field and showing the bytes."""
    hint = f"; set source.csv.encoding if the file is not {encoding}"
    for field, value in row.items():
        if isinstance(value, str) and _UNDECODED.search(value):
            return RowError(
                f"{where}: bytes that are not valid {encoding}: {undecoded_text(value)}{hint}", field=field, value=None
            )
    return RowError(f"{where}: bytes that are not valid {encoding} (in a column not imported){hint}")


# -- JSON --------------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(text: str | bytes, *, max_depth: int) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why)`` for text that is not JSON contactsync can hold.

    Refused: malformed JSON, nesting deeper than ``max_depth``, integers of more digits than Python
    converts, and strings holding a lone surrogate (a ``\\ud800`` escape: not a character, no
    encoding can write it).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode(json.detect_encoding(text))
        except UnicodeDecodeError as exc:
            return None, f"not valid JSON: bytes that do not decode ({exc.reason} at byte {exc.start})"
    if text.count("[") + text.count("{") > max_depth and _depth(text) > max_depth:
        return None, f"JSON nested deeper than {max_depth} levels (CONTACTSYNC_MAX_JSON_DEPTH raises it)"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, f"JSON nested deeper than {max_depth} levels (CONTACTSYNC_MAX_JSON_DEPTH raises it)"
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits()
        return None, f"not valid JSON: a number of more than {_max_int_digits():,} digits"
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(value)
        if where is not None:
            return None, f"a lone surrogate escape in {where} (half of a UTF-16 pair, not a character)"
    return value, None


def _max_int_digits() -> int:
    return getattr(sys, "get_int_max_str_digits", lambda: 4300)()  # Python >= 3.10.7


def _depth(text: str) -> int:
    """How deep the JSON text nests (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _lone_surrogate(value: Any) -> str | None:
    """Where a string (or key) holding a lone surrogate is, as a path (``name``, ``tags[2]``), or None."""
    stack: list[tuple[str, Any]] = [("the value", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"a key of {path}"
                stack.append((key if path == "the value" else f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def read_jsonl(
    stream: IO[str],
    fields: Sequence[str],
    *,
    name: str = "<jsonl>",
    limits: ReadLimits | None = None,
    documents: bool = False,
) -> Iterator[Row | RowError]:
    """Yield one row per JSON object line; a missing field is null (``documents``: the whole objects)."""
    limits = limits or ReadLimits.from_env()
    limit, depth = limits.max_row_size, limits.max_json_depth
    readline = partial(stream.readline, limit + 1)
    encoding = getattr(stream, "encoding", None) or "text"
    number = 0
    while line := readline():
        number += 1
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte order mark is not part of the JSON
        if len(line) > limit:
            while not line.endswith(("\n", "\r")) and (line := readline()):
                pass  # the rest of the line, read and dropped a block at a time
            yield RowError(
                f"line {number}: a line of more than {limit:,} characters, over the row size limit "
                "(CONTACTSYNC_MAX_ROW_SIZE raises it)"
            )
            continue
        if not line.strip():
            continue
        if _UNDECODED.search(line):
            yield RowError(f"line {number}: bytes that are not valid {encoding}: {undecoded_text(line.strip())}")
            continue
        document, problem = parse_json(line, max_depth=depth)
        if problem is not None:
            yield RowError(f"line {number}: {problem}")
            continue
        if not isinstance(document, dict):
            yield RowError(f"line {number}: a JSON object was expected")
            continue
        yield document if documents else {f: dig(document, f) for f in fields}


def read_rows(
    path: str | Path, *, format: str, fields: Sequence[str], csv_options: CsvOptions | None = None
) -> Iterator[Row | RowError]:
    """Rows of a local CSV or JSON lines file, by format; rejects name the file and the line.

    Read as file sources read (same encoding, limits and rejects), so a preview shows what a run would.
    """
    options = csv_options or CsvOptions()
    name = str(path)
    if format not in ("csv", "jsonl"):
        raise ConfigurationError(f"unknown format {format!r}: csv or jsonl", file=name)
    try:
        stream = open_text(path, options.encoding if format == "csv" else "utf-8")
    except (OSError, LookupError) as exc:
        raise ConfigurationError(f"cannot open the file: {exc}", file=name) from None
    with stream:
        if os.fstat(stream.fileno()).st_size == 0:
            raise ConfigurationError("the file is empty", file=name)
        if format == "csv":
            rows = read_csv(stream, options, fields, name=name)
        else:
            rows = read_jsonl(stream, fields, name=name)
        for row in rows:
            if isinstance(row, RowError):
                row = RowError(f"{name} {row.reason}", field=row.field, value=row.value)
            yield row


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


def rows_from_text(
    text: str, *, format: str, fields: Sequence[str], limits: ReadLimits | None = None
) -> list[Row | RowError]:
    """Convenience for tests and small inputs."""
    stream = io.StringIO(text, newline="")
    if format == "csv":
        return list(read_csv(stream, CsvOptions(), fields, limits=limits))
    return list(read_jsonl(stream, fields, limits=limits))

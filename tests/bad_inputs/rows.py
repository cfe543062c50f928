"""Bad rows and bad files: CSV and JSON lines that break encodings, quoting, sizes and JSON, plus
formulas that run away on a row, and values Brevo refuses.

Each generator returns a :class:`~bad_inputs.cases.RowsFile`: valid rows around the bad ones, and
for each row what must become of it. They go through ``contactsync preview`` and, a subset, through
real DAG runs of a file source (:data:`DAG_RUN_FILES`).
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Callable

from .cases import ACCEPTED, CLEAR_ERROR, PER_ROW_REJECT, Case, Expect, Inputs, RowsFile

HEADER = "id,email,first_name,age"


class CsvFile:
    """A CSV file written row by row, remembering where each row starts and what it must become."""

    def __init__(self, name: str = "rows.csv", header: str = HEADER, *, encoding: str = "utf-8") -> None:
        self.name = name
        self.encoding = encoding
        self.columns = header.split(",")
        self.parts: list[bytes] = []
        self.rows: list[Expect] = []
        self.lines = 0  # newlines written so far: the next row starts on line lines + 1
        self.count = 0
        self.index = 0  # rows written so far (each bad row counted as one)
        self._write(header.encode(encoding) + b"\n")

    def _write(self, data: bytes) -> None:
        self.parts.append(data)
        self.lines += data.count(b"\n")

    def valid(self, count: int = 2, **values: str) -> CsvFile:
        """``count`` good rows (``values`` fill extra columns)."""
        for _ in range(count):
            self.count += 1
            ext_id, email = f"v{self.count}", f"valid{self.count}@example.com"
            cells = {"id": ext_id, "email": email, "first_name": f"Valid {self.count}", "age": str(20 + self.count)}
            cells.update(values)
            self.index += 1
            self.rows.append(Expect(ext_id, email, self.lines + 1, self.index, ok=True))
            self._write((",".join(cells.get(c, "") for c in self.columns) + "\n").encode(self.encoding))
        return self

    def bad(
        self, data: bytes, *, ext_id: str | None = None, value: str | None = None, may_pass: bool = False
    ) -> CsvFile:
        """One bad row, written as these bytes (ending with a line break unless it ends the file)."""
        self.index += 1
        self.rows.append(Expect(ext_id, None, self.lines + 1, self.index, value=value, may_pass=may_pass))
        self._write(data)
        return self

    def bad_cells(self, *, value: str | None = None, may_pass: bool = False, **cells: str) -> CsvFile:
        """One bad row from cell values (the others filled in valid)."""
        self.count += 1
        full = {"id": f"b{self.count}", "email": f"bad{self.count}@example.com", "first_name": "Bad", "age": "30"}
        full.update(cells)
        line = ",".join(full.get(c, "") for c in self.columns) + "\n"
        return self.bad(line.encode(self.encoding), ext_id=full["id"], value=value, may_pass=may_pass)

    def file(self, *, whole: bool = False) -> RowsFile:
        return RowsFile(self.name, b"".join(self.parts), [] if whole else self.rows, whole=whole)


class JsonlFile:
    """The same for JSON lines: each line one object."""

    def __init__(self, name: str = "rows.jsonl") -> None:
        self.name = name
        self.parts: list[bytes] = []
        self.rows: list[Expect] = []
        self.count = 0

    def valid(self, count: int = 2) -> JsonlFile:
        for _ in range(count):
            self.count += 1
            ext_id, email = f"v{self.count}", f"valid{self.count}@example.com"
            self.rows.append(Expect(ext_id, email, len(self.parts) + 1, len(self.parts) + 1, ok=True))
            document = {"id": ext_id, "email": email, "first_name": f"Valid {self.count}", "age": 20 + self.count}
            self.parts.append(json.dumps(document).encode() + b"\n")
        return self

    def bad(
        self, data: bytes, *, ext_id: str | None = None, value: str | None = None, may_pass: bool = False
    ) -> JsonlFile:
        line = len(self.parts) + 1
        self.rows.append(Expect(ext_id, None, line, line, value=value, may_pass=may_pass))
        self.parts.append(data if data.endswith(b"\n") else data + b"\n")
        return self

    def bad_fields(self, raw: str, *, may_pass: bool = False, **fields: str) -> JsonlFile:
        """A line ``{"id": ..., "email": ..., <raw JSON members>}``: ``raw`` is written as is."""
        self.count += 1
        ext_id = fields.get("id", f"b{self.count}")
        head = json.dumps({"id": ext_id, "email": fields.get("email", f"bad{self.count}@example.com")})[:-1]
        return self.bad(f"{head}, {raw}}}".encode("utf-8", "surrogatepass"), ext_id=ext_id, may_pass=may_pass)

    def file(self) -> RowsFile:
        return RowsFile(self.name, b"".join(self.parts), self.rows)


def _garbage(size: int, *, seed: int, quotes: bool) -> bytes:
    data = random.Random(seed).randbytes(size)
    if not quotes:
        data = data.replace(b'"', b"")
    return data + b"\n"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _big_quoted(size: int = 10_000_000) -> bytes:
    line = b"x" * 999 + b"\n"
    return b'"' + line * (size // len(line)) + b'"'


# -- CSV: encodings --------------------------------------------------------------------------------


def latin1_line() -> RowsFile:
    return CsvFile().valid(3).bad(b"b1,latin1@example.com,Zo\xeb,30\n", ext_id="b1").valid(3).file()


def latin1_in_email() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,zo\xeb@example.com,Zoe,30\n", ext_id="b1").valid(2).file()


def latin1_in_id() -> RowsFile:
    return CsvFile().valid(2).bad(b"b\xe91,b1@example.com,Zoe,30\n").valid(2).file()


def latin1_in_unmapped_column() -> RowsFile:
    # age is read but nothing maps it: rejecting the row or loading it as is are both honest
    return CsvFile().valid(2).bad(b"b1,b1@example.com,Bob,3\xb00\n", ext_id="b1", may_pass=True).valid(2).file()


def cp1252_file() -> RowsFile:
    """A whole file written in cp1252 (accents, curly quotes, euro sign) read as UTF-8."""
    csv = CsvFile(encoding="cp1252").valid(2)
    csv.bad("b1,b1@example.com,Ren\u00e9e,30\n".encode("cp1252"), ext_id="b1").valid(1)
    csv.bad("b2,b2@example.com,\u201cAl\u201d,30\n".encode("cp1252"), ext_id="b2").valid(1)
    csv.bad("b3,b3@example.com,5 \u20ac,30\n".encode("cp1252"), ext_id="b3").valid(2)
    return csv.file()


def utf16_file(bom: bool = True, codec: str = "utf-16") -> RowsFile:
    text = HEADER + "\n" + "".join(f"v{i},valid{i}@example.com,Valid {i},{20 + i}\n" for i in range(1, 5))
    data = text.encode(codec)
    if not bom and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data[2:]
    return RowsFile("rows.csv", data, whole=True)


def invalid_utf8(raw: bytes) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        return CsvFile().valid(2).bad(b"b1,b1@example.com,A" + raw + b"a,30\n", ext_id="b1").valid(2).file()

    return make


def binary_garbage(quotes: bool) -> RowsFile:
    """4 kB of random bytes (a fixed seed) between good rows: each line of it rejected, the rows after loaded."""
    csv = CsvFile().valid(3)
    csv.bad(_garbage(4096, seed=11, quotes=quotes))
    return csv.valid(3).file()


def binary_garbage_file() -> RowsFile:
    return RowsFile("rows.csv", _garbage(65_536, seed=12, quotes=True), whole=True)


# -- CSV: NUL bytes ------------------------------------------------------------------------------


def nul_in_name() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,b1@example.com,Ada\x00,30\n", ext_id="b1").valid(2).file()


def nul_in_email() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,b1\x00@example.com,Ada,30\n", ext_id="b1").valid(2).file()


def nul_in_id() -> RowsFile:
    return CsvFile().valid(2).bad(b"b\x001,b1@example.com,Ada,30\n").valid(2).file()


def nul_line() -> RowsFile:
    return CsvFile().valid(2).bad(b"\x00\x00\x00\n").valid(2).file()


def nul_in_header() -> RowsFile:
    data = b"id,em\x00ail,first_name,age\nv1,valid1@example.com,A,1\n"
    return RowsFile("rows.csv", data, whole=True)


# -- CSV: sizes and quoting ------------------------------------------------------------------------


def field_10mb_quoted_newlines() -> RowsFile:
    """A 10 MB quoted field of 10,000 lines: the row over the size limit, the rows after it read."""
    row = b"b1,b1@example.com," + _big_quoted() + b",30\n"
    return CsvFile().valid(2).bad(row, ext_id="b1").valid(3).file()


def field_10mb_unquoted() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,b1@example.com," + b"y" * 10_000_000 + b",30\n", ext_id="b1").valid(2).file()


def field_10mb_email() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1," + b"e" * 10_000_000 + b"@example.com,Al,30\n", ext_id="b1").valid(2).file()


def unterminated_quote_middle() -> RowsFile:
    """A quote opened in the middle of the file and never closed: every row after it must still load."""
    return CsvFile().valid(3).bad(b'b1,b1@example.com,"Ada,30\n', ext_id="b1").valid(4).file()


def unterminated_quote_at_end() -> RowsFile:
    return CsvFile().valid(3).bad(b'b1,b1@example.com,"Ada,30\n', ext_id="b1").file()


def quote_closed_then_text() -> RowsFile:
    return CsvFile().valid(2).bad(b'b1,b1@example.com,"Ada"x,30\n', ext_id="b1").valid(2).file()


def quote_inside_big_row() -> RowsFile:
    """A quote never closed, then 1.6 MB of good rows (more than a row may hold): all read again and loaded."""
    return CsvFile().valid(2).bad(b'b1,b1@example.com,"Ada,30\n', ext_id="b1").valid(40_000).file()


def million_column_header() -> RowsFile:
    header = HEADER + "," + ",".join(f"c{i}" for i in range(999_996))
    return RowsFile("rows.csv", (header + "\nv1,valid1@example.com,A,1" + "," * 999_996 + "\n").encode(), whole=True)


def header_40k_duplicates() -> RowsFile:
    header = HEADER + "," + ",".join(["dup"] * 40_000)
    return RowsFile("rows.csv", (header + "\nv1,valid1@example.com,A,1" + ",x" * 40_000 + "\n").encode(), whole=True)


def row_5m_columns() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,b1@example.com,A,1" + b"," * 5_000_000 + b"\n").valid(2).file()


def row_200k_columns() -> RowsFile:
    return CsvFile().valid(2).bad(b"b1,b1@example.com,A,1" + b"," * 200_000 + b"\n").valid(2).file()


def wrong_column_counts() -> RowsFile:
    csv = CsvFile().valid(2).bad(b"b1,b1@example.com,Ada\n").valid(1)
    return csv.bad(b"b2,b2@example.com,Ada,30,extra\n").valid(2).file()


def empty_file() -> RowsFile:
    return RowsFile("rows.csv", b"", whole=True)


def bom_only() -> RowsFile:
    return RowsFile("rows.csv", b"\xef\xbb\xbf", whole=True)


# -- numbers Brevo cannot store (a float attribute) --------------------------------------------------


def huge_numbers_csv() -> RowsFile:
    csv = CsvFile().valid(2)
    csv.bad_cells(age="9" * 5000).valid(1).bad_cells(age="1e999").valid(1).bad_cells(age="-1e309")
    return csv.valid(2).file()


def huge_numbers_jsonl() -> RowsFile:
    jsonl = JsonlFile().valid(2)
    for raw in ('"age": NaN', '"age": Infinity', '"age": -Infinity', '"age": 1e999', '"age": ' + "9" * 400):
        jsonl.bad_fields(raw).valid(1)
    return jsonl.file()


# -- JSON lines ------------------------------------------------------------------------------------


def jsonl_deep(depth: int, field: str = "first_name", may_pass: bool = False) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        return JsonlFile().valid(2).bad_fields(f'"{field}": {_deep(depth)}', may_pass=may_pass).valid(2).file()

    return make


def jsonl_int_5000_digits_id() -> RowsFile:
    return JsonlFile().valid(2).bad(('{"id": ' + "9" * 5000 + ', "email": "b1@example.com"}').encode()).valid(2).file()


def jsonl_int_5000_digits_unmapped() -> RowsFile:
    return JsonlFile().valid(2).bad_fields('"age": ' + "9" * 5000, may_pass=True).valid(2).file()


def jsonl_int_above_2_64() -> RowsFile:
    """``{"id": 2**70}``: a key and EXT_ID beyond 64 bits; a 22-digit EXT_ID is legitimate text."""
    line = b'{"id": 1180591620717411303424, "email": "big@example.com"}'
    jsonl = JsonlFile().valid(2).bad(line, ext_id="1180591620717411303424", may_pass=True)
    return jsonl.valid(2).file()


def jsonl_surrogate(raw: str, may_pass: bool = False) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        return JsonlFile().valid(2).bad_fields(raw, may_pass=may_pass).valid(2).file()

    return make


def jsonl_surrogate_in_email() -> RowsFile:
    return JsonlFile().valid(2).bad(b'{"id": "b1", "email": "b\\ud8001@example.com"}', ext_id="b1").valid(2).file()


def jsonl_broken_lines() -> RowsFile:
    jsonl = JsonlFile().valid(1)
    for line in (b'{"id": "b1", "email"', b'{"id": "b2", "email": "b2@example.com"} x', b"[1, 2]", b"null", b'"text"'):
        jsonl.bad(line).valid(1)
    return jsonl.file()


def jsonl_invalid_utf8() -> RowsFile:
    return JsonlFile().valid(2).bad(b'{"id": "b1", "email": "b1@example.com", "first_name": "Zo\xeb"}').valid(2).file()


def jsonl_nul_raw() -> RowsFile:
    return JsonlFile().valid(2).bad(b'{"id": "b1",\x00 "email": "b1@example.com"}').valid(2).file()


def jsonl_10mb_string() -> RowsFile:
    return JsonlFile().valid(2).bad_fields('"first_name": "' + "z" * 10_000_000 + '"').valid(2).file()


def jsonl_million_keys() -> RowsFile:
    members = ", ".join(f'"k{i}": 1' for i in range(1_000_000))
    return JsonlFile().valid(2).bad_fields(members).valid(2).file()


# -- emails Brevo refuses ---------------------------------------------------------------------------


def email(address: str) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        return CsvFile().valid(2).bad_cells(email=address, value=address).valid(2).file()

    return make


# -- formulas that run away on a row ----------------------------------------------------------------

PREVIEW_DEFINITION = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: file
      path: .
      pattern: "*.{ext}"
      format: {format}
      fields: [{fields}]
      key: id
    transform:
      email: {email}
    mapping:
      email: EMAIL
      id: EXT_ID
      first_name: FIRSTNAME
    {extra}destination:
      list_ids: [5]
    """
)
FIELDS = "id, email, first_name, age"


def definition(
    *,
    format: str = "csv",
    fields: str = FIELDS,
    email_formula: str = "email.normalizeEmail()",
    extra: str = "",
    mapping: str = "",
) -> str:
    """The preview definition: a file source of ``format`` whose ``transform.email`` is ``email_formula``."""
    quoted = "'" + email_formula.replace("'", "''") + "'"
    text = PREVIEW_DEFINITION.format(ext=format, format=format, fields=fields, email=quoted, extra=extra)
    if mapping:
        text = text.replace("  first_name: FIRSTNAME\n", f"  first_name: FIRSTNAME\n{mapping}")
    return text


def guarded(regex: str) -> str:
    """An email formula that runs ``regex`` on every row (and only makes rows it matches invalid)."""
    return f'email.matches("{regex}") ? "not-an-email" : email.normalizeEmail()'


EVIL_REGEXES = {
    "nested_plus": (r"^(a+)+$", "a" * 40 + "!"),
    "alternation": (r"^(a|aa)+$", "a" * 60 + "!"),
    "overlap": (r"(x+x+)+y", "x" * 40),
    "classic": (r"^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 40 + "!"),
}


def evil_regex_rows(subject: str) -> RowsFile:
    # the subject is the bad row's email: not a valid address, so the row must end rejected
    return CsvFile().valid(2).bad_cells(email=subject, value=subject).valid(2).file()


REGEXES_FROM_DATA = {
    "catastrophic": r"^(a+)+$",
    "invalid": "(",
    "backreference": r"(a)\1",
    "lookahead": "(?=a)a",
    "repeat_1001": "a{1001}",
    "pattern_20kb": "a" * 20_000,
    "nested_repeats": "((a{100}){100}){100}",
}


def regex_from_data(pattern: str) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        csv = CsvFile(header=HEADER + ",pattern").valid(2, pattern="^zzz$")
        quoted = '"' + pattern.replace('"', '""') + '"'
        subject = "a" * 40 + "!"  # not an address: the row is rejected whatever the pattern does
        return csv.bad_cells(email=subject, value=subject, pattern=quoted).valid(2, pattern="^zzz$").file()

    return make


def nested_exists(depth: int) -> str:
    text = "false"
    for level in reversed(range(depth)):
        text = f"[1, 2].exists(a{level}, {text})"
    return f'{text} ? "not-an-email" : email.normalizeEmail()'


EXISTS_OVER_DATA = (
    'first_name.split(",").exists(a, first_name.split(",").exists(b, first_name.split(",").exists(c, '
    'a + b + c == "zzz"))) ? "not-an-email" : email.normalizeEmail()'
)


def exists_over_data_rows() -> RowsFile:
    csv = CsvFile().valid(2)
    # 2,000 parts: 8 billion steps for this row alone; rejecting it, or running it fast, are both fine
    csv.bad_cells(first_name='"' + "y," * 2000 + '"', may_pass=True)
    return csv.valid(2).file()


def plain_rows() -> RowsFile:
    """Valid rows around one row with an invalid email: for definitions whose formula is the bad input."""
    return CsvFile().valid(2).bad_cells(email="not-an-email", value="not-an-email").valid(2).file()


# -- payloads -------------------------------------------------------------------------------------------

PAYLOAD_ATTRIBUTES = [
    {"name": "EXT_ID", "category": "normal", "type": "text"},
    {"name": "FIRSTNAME", "category": "normal", "type": "text"},
    {"name": "SCORE", "category": "normal", "type": "float"},
    {"name": "AGE", "category": "normal", "type": "float"},
]


def payload_rows(raw: str, may_pass: bool = False) -> Callable[[], RowsFile]:
    def make() -> RowsFile:
        csv = CsvFile(header=HEADER + ",traits").valid(2, traits='"{""SCORE"": 1}"')
        csv.bad_cells(traits='"' + raw.replace('"', '""') + '"', may_pass=may_pass)
        return csv.valid(2, traits='"{""SCORE"": 2}"').file()

    return make


# -- the cases ----------------------------------------------------------------------------------------

# ACCEPTED is only ever the ending of a file whose every bad row is declared ``may_pass``.
ROW_GOOD = frozenset({PER_ROW_REJECT, ACCEPTED})
WHOLE_GOOD = frozenset({CLEAR_ERROR})
FORMULA_GOOD = frozenset({CLEAR_ERROR, PER_ROW_REJECT, ACCEPTED})


def _preview(
    kind: str,
    what: str,
    rows: Callable[[], RowsFile],
    *,
    text: str | None = None,
    good: frozenset[str] = ROW_GOOD,
    limit: bool = False,
    keys: tuple[str, ...] = (),
    attributes: list[dict[str, str]] | None = None,
) -> Case:
    def make() -> Inputs:
        made = rows()
        body = text if text is not None else definition(format=made.format)
        return Inputs(definition=body.encode(), rows=made, attributes=attributes)

    return Case(f"preview/{kind}/{what}", "preview", kind, make, good, limit=limit, keys=keys)


AGE_ATTRIBUTES = [
    {"name": "EXT_ID", "category": "normal", "type": "text"},
    {"name": "FIRSTNAME", "category": "normal", "type": "text"},
    {"name": "AGE", "category": "normal", "type": "float"},
]


def row_cases() -> list[Case]:
    """CSV and JSON lines files through preview."""
    csv: list[tuple[str, Callable[[], RowsFile]]] = [
        ("latin1_line_in_utf8", latin1_line),
        ("latin1_in_email", latin1_in_email),
        ("latin1_in_id", latin1_in_id),
        ("latin1_in_unmapped_column", latin1_in_unmapped_column),
        ("cp1252_file", cp1252_file),
        ("invalid_utf8_continuation", invalid_utf8(b"\xc3\x28")),
        ("invalid_utf8_overlong", invalid_utf8(b"\xc0\xaf")),
        ("invalid_utf8_surrogate_cesu", invalid_utf8(b"\xed\xa0\x80")),
        ("invalid_utf8_above_max", invalid_utf8(b"\xf4\x90\x80\x80")),
        ("invalid_utf8_ff", invalid_utf8(b"\xff\xfe")),
        ("invalid_utf8_truncated", invalid_utf8(b"\xe2\x82")),
        ("binary_garbage_middle", lambda: binary_garbage(quotes=False)),
        ("binary_garbage_with_quotes", lambda: binary_garbage(quotes=True)),
        ("nul_in_name", nul_in_name),
        ("nul_in_email", nul_in_email),
        ("nul_in_id", nul_in_id),
        ("nul_line", nul_line),
        ("field_10mb_quoted_newlines", field_10mb_quoted_newlines),
        ("field_10mb_unquoted", field_10mb_unquoted),
        ("field_10mb_email", field_10mb_email),
        ("unterminated_quote_middle", unterminated_quote_middle),
        ("unterminated_quote_at_end", unterminated_quote_at_end),
        ("quote_closed_then_text", quote_closed_then_text),
        ("unterminated_quote_before_40k_rows", quote_inside_big_row),
        ("row_5m_columns", row_5m_columns),
        ("row_200k_columns", row_200k_columns),
        ("wrong_column_counts", wrong_column_counts),
    ]
    whole: list[tuple[str, Callable[[], RowsFile], bool]] = [
        ("utf16_file", utf16_file, False),
        ("utf16le_no_bom", lambda: utf16_file(bom=False, codec="utf-16-le"), False),
        ("utf32_file", lambda: utf16_file(codec="utf-32"), False),
        ("binary_garbage_file", binary_garbage_file, False),
        ("nul_in_header", nul_in_header, False),
        ("million_column_header", million_column_header, True),
        ("header_40k_columns_duplicates", header_40k_duplicates, False),
        ("empty_file", empty_file, False),
        ("bom_only", bom_only, False),
    ]
    jsonl: list[tuple[str, Callable[[], RowsFile]]] = [
        ("nesting_10000", jsonl_deep(10_000)),
        ("nesting_100000", jsonl_deep(100_000)),
        ("nesting_10000_unmapped", jsonl_deep(10_000, field="extra", may_pass=True)),
        ("int_5000_digits_id", jsonl_int_5000_digits_id),
        ("int_5000_digits_unmapped", jsonl_int_5000_digits_unmapped),
        ("int_above_2_64_id", jsonl_int_above_2_64),
        ("lone_surrogate_high", jsonl_surrogate('"first_name": "\\ud800"')),
        ("lone_surrogate_low", jsonl_surrogate('"first_name": "\\udc80"')),
        ("lone_surrogate_reversed_pair", jsonl_surrogate('"first_name": "\\udc00\\ud800"')),
        ("lone_surrogate_in_key", jsonl_surrogate('"\\ud800": 1', may_pass=True)),
        ("lone_surrogate_in_email", jsonl_surrogate_in_email),
        ("nul_escape_in_name", jsonl_surrogate('"first_name": "A\\u0000"')),
        ("broken_lines", jsonl_broken_lines),
        ("invalid_utf8", jsonl_invalid_utf8),
        ("nul_raw", jsonl_nul_raw),
        ("string_10mb", jsonl_10mb_string),
        ("million_keys", jsonl_million_keys),
    ]
    cases = [_preview("csv", what, make) for what, make in csv]
    cases += [
        _preview("csv", what, make, good=WHOLE_GOOD, limit=limit, keys=("header", "empty"))
        for what, make, limit in whole
    ]
    cases += [_preview("jsonl", what, make) for what, make in jsonl]
    float_age = definition(mapping="  age: AGE\n")
    cases.append(_preview("csv", "huge_numbers_float", huge_numbers_csv, text=float_age, attributes=AGE_ATTRIBUTES))
    as_int = float_age.replace("transform:\n", "transform:\n  age: age.asInt()\n")
    cases.append(_preview("csv", "huge_numbers_as_int", huge_numbers_csv, text=as_int, attributes=AGE_ATTRIBUTES))
    float_age_jsonl = definition(format="jsonl", mapping="  age: AGE\n")
    cases.append(
        _preview("jsonl", "nan_infinity_huge", huge_numbers_jsonl, text=float_age_jsonl, attributes=AGE_ATTRIBUTES)
    )
    for address in ("a@b.c", "a@1.2"):
        cases.append(_preview("email", f"refused_{address}", email(address)))
    # formulas that run away on a row, or that the compiler must refuse
    for what, (regex, subject) in EVIL_REGEXES.items():
        cases.append(
            _preview(
                "formula",
                f"regex_literal_{what}",
                lambda subject=subject: evil_regex_rows(subject),
                text=definition(email_formula=guarded(regex.replace("\\", "\\\\"))),
                good=FORMULA_GOOD,
                keys=("transform.email",),
            )
        )
    from_data = definition(fields=FIELDS + ", pattern", email_formula=guarded_from_data())
    for what, pattern in REGEXES_FROM_DATA.items():
        cases.append(_preview("formula", f"regex_from_data_{what}", regex_from_data(pattern), text=from_data))
    formula_texts = {
        "nested_exists_30": (nested_exists(30), True),
        "deep_parens_1000": ("(" * 1000 + "email.normalizeEmail()" + ")" * 1000, False),
        "deep_parens_30000": ("(" * 30_000 + "email.normalizeEmail()" + ")" * 30_000, True),
        "formula_100kb": ("email.normalizeEmail()" + ' + ""' * 25_000, True),
        "method_chain_1000": ("email" + ".trim()" * 1000 + ".normalizeEmail()", False),
        "concat_700": ("email.normalizeEmail()" + ' + ""' * 700, False),
    }
    for what, (formula_text, limit) in formula_texts.items():
        cases.append(
            _preview(
                "formula",
                what,
                plain_rows,
                text=definition(email_formula=formula_text),
                good=FORMULA_GOOD,
                limit=limit,
                keys=("transform.email",),
            )
        )
    cases.append(
        _preview(
            "formula",
            "nested_exists_3_over_data",
            exists_over_data_rows,
            text=definition(email_formula=EXISTS_OVER_DATA),
            good=FORMULA_GOOD,
            keys=("transform.email",),
        )
    )
    surrogate = definition().replace("transform:\n", f"transform:\n  first_name: '{SURROGATE_FORMULA}'\n")
    cases.append(
        _preview(
            "formula",
            "lone_surrogate_from_formula",
            formula_rows,
            text=surrogate,
            good=FORMULA_GOOD,
            keys=("transform.first_name",),
        )
    )
    payload = definition(fields=FIELDS + ", traits", extra="payload:\n  field: traits\n")
    for what, raw, may_pass in (
        ("payload_nesting_10000", '{"SCORE": ' + _deep(10_000) + "}", False),
        ("payload_lone_surrogate", '{"SCORE": 1, "FIRSTNAME": "\\ud800"}', False),
        ("payload_100k_keys", "{" + ", ".join(f'"K{i}": 1' for i in range(100_000)) + "}", False),
        ("payload_int_5000_digits", '{"SCORE": ' + "9" * 5000 + "}", False),
        ("payload_nan", '{"SCORE": NaN}', False),
    ):
        cases.append(
            _preview("payload", what, payload_rows(raw, may_pass), text=payload, attributes=PAYLOAD_ATTRIBUTES)
        )
    return cases


def guarded_from_data() -> str:
    return 'email.matches(pattern) ? "not-an-email" : email.normalizeEmail()'


# -- DAG runs -------------------------------------------------------------------------------------------

SURROGATE_FORMULA = 'first_name == "Bad" ? first_name + "\\ud800" : first_name'
"""A formula that gives one row (first_name "Bad") a lone surrogate: text no encoding can write,
and Brevo refuses."""


def formula_rows() -> RowsFile:
    """Valid rows and one row (first_name "Bad", a valid email) that a formula makes bad."""
    return CsvFile().valid(2).bad_cells().valid(2).file()


def hostile_file_name(name: str) -> Callable[[], RowsFile]:
    """A bad row in a file with a hostile name."""

    def make() -> RowsFile:
        made = latin1_line()
        return RowsFile(name, made.data, made.rows)

    return make


def refused_emails() -> RowsFile:
    csv = CsvFile().valid(2).bad_cells(email="a@b.c", value="a@b.c").valid(1)
    return csv.bad_cells(email="a@1.2", value="a@1.2").valid(2).file()


DAG_RUN_FILES: dict[str, tuple[Callable[[], RowsFile], str | None]] = {
    "latin1_line_in_utf8": (latin1_line, None),
    "binary_garbage_middle": (lambda: binary_garbage(quotes=False), None),
    "nul_in_name": (nul_in_name, None),
    "field_10mb_quoted_newlines": (field_10mb_quoted_newlines, None),
    "unterminated_quote_middle": (unterminated_quote_middle, None),
    "file_name_quote_newline_bidi": (hostile_file_name('x"; DROP\n\u202e.csv'), None),
    "file_name_not_utf8": (hostile_file_name("caf\udce9.csv"), None),  # byte 0xE9: the surrogate escape
    "million_column_header": (million_column_header, None),
    "utf16_file": (utf16_file, None),
    "refused_emails": (refused_emails, None),
    "formula_lone_surrogate": (formula_rows, SURROGATE_FORMULA),
    "jsonl_nesting_10000": (jsonl_deep(10_000), None),
    "jsonl_int_5000_digits_id": (jsonl_int_5000_digits_id, None),
    "jsonl_int_above_2_64_id": (jsonl_int_above_2_64, None),
    "jsonl_lone_surrogate": (jsonl_surrogate('"first_name": "\\ud800"'), None),
}
"""The files run through real DAG runs (one of each family of the issue's list), each with the
``transform.first_name`` formula it needs, if any."""
DAG_RUN_WHOLE = frozenset({"million_column_header", "utf16_file"})
"""DAG-run files that cannot be read at all."""

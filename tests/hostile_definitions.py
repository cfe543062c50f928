"""Hostile definition files (issue 11): YAML bombs, deep nesting, mistyped values, SQL that leaves
its wrapper, identifiers with quotes, unicode and NUL bytes.

Each case is the text of one definition file and what its error must say (fragments of one
error line). Shared by the tests (tests/test_spec_limits.py) and by anyone who wants to run them
against another version of the loader.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

GOOD = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: postgres
      conn_id: crm_pg
      table: public.customers
      fields: [id, email, first_name, updated_at]
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

GOOD_FILE = textwrap.dedent(
    """\
    integration: shop
    source:
      name: drop
      type: file
      path: .
      pattern: "*.csv"
      format: csv
      csv: {encoding: utf-8}
      fields: [id, email]
      key: id
    mapping:
      email: EMAIL
      id: EXT_ID
    destination:
      list_ids: [5]
    """
)

GOOD_MONGO = textwrap.dedent(
    """\
    integration: app
    source:
      name: users
      type: mongo
      conn_id: app_mongo
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


@dataclass(frozen=True)
class Case:
    """One hostile file: its text and the fragments one line of its error must hold."""

    name: str
    text: str
    expected: tuple[str, ...]
    kind: str  # yaml | value | query | identifier


def _laughs_seq(width: int = 9, depth: int = 9) -> str:
    """The classic billion laughs: ``width ** depth`` strings from a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _laughs_map_under_unknown_key(width: int = 10, depth: int = 7) -> str:
    """Mappings this time, under a key the schema would refuse, in an otherwise good definition."""
    lines = ["extra:"]
    lines.append(f"  m0: &m0 {{{', '.join(f'k{i}: lol' for i in range(width))}}}")
    for level in range(1, depth):
        lines.append(f"  m{level}: &m{level} {{{', '.join(f'k{i}: *m{level - 1}' for i in range(width))}}}")
    return GOOD + "\n".join(lines) + "\n"


def _quadratic() -> str:
    """A few kB: one anchor of 500 values used 1,000 times (half a million values)."""
    items = ", ".join(["x"] * 500)
    uses = ", ".join(["*l"] * 1000)
    return GOOD + f"extra:\n  list: &l [{items}]\n  uses: [{uses}]\n"


def _deep_flow(depth: int) -> str:
    return GOOD + "extra: " + "[" * depth + "]" * depth + "\n"


def _deep_block(depth: int) -> str:
    """Block sequences nested on one line: ``- - - x`` is ``[[[x]]]``."""
    return GOOD + "extra:\n  " + "- " * depth + "x\n"


def _replace(old: str, new: str, base: str = GOOD) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def _query(source_type: str, query: str) -> str:
    conn = {"postgres": "crm_pg", "bigquery": "crm_bq", "snowflake": "crm_sf"}[source_type]
    text = _replace("type: postgres", f"type: {source_type}")
    text = _replace("conn_id: crm_pg", f"conn_id: {conn}", text)
    return _replace("table: public.customers", f"query: {query}", text)


ESCAPE_THE_WRAPPER = '"SELECT * FROM public.customers ) s; DELETE FROM public.customers; --"'

CASES: list[Case] = [
    # -- YAML: bombs and nesting --------------------------------------------------------------
    Case("laughs_seq", _laughs_seq(), ("crm.yaml:", "values after alias expansion"), "yaml"),
    Case("laughs_map_unknown_key", _laughs_map_under_unknown_key(), ("values after alias expansion",), "yaml"),
    Case("quadratic_aliases", _quadratic(), ("alias",), "yaml"),
    Case("recursive_alias_seq", GOOD + "extra: &s [*s]\n", ("crm.yaml:19", "recursive alias"), "yaml"),
    Case("recursive_alias_map", GOOD + "extra: &m {self: *m}\n", ("crm.yaml:19", "recursive alias"), "yaml"),
    Case("deep_flow_3000", _deep_flow(3000), ("crm.yaml:19", "nested deeper than"), "yaml"),
    Case("deep_flow_10000", _deep_flow(10000), ("crm.yaml:19", "nested deeper than"), "yaml"),
    Case("deep_block_3000", _deep_block(3000), ("crm.yaml:20", "nested deeper than"), "yaml"),
    Case("big_1mb", GOOD + "extra: [" + ", ".join(["value"] * 150_000) + "]\n", ("crm.yaml:", "kB"), "yaml"),
    Case(
        "long_int", _replace("key: id", "key: id\n  safety_lag_seconds: " + "9" * 5000), ("crm.yaml:", "digits"), "yaml"
    ),
    Case(
        "slow_credential_regex",
        _replace("integration: crm", "integration: crm\ndescription: " + "a." * 25_000),
        ("crm.yaml:2", "description"),
        "yaml",
    ),
    Case(
        "text_bomb_nested_aliases",
        GOOD
        + f"extra:\n  s: &s '{'a.' * 16_000}'\n  l1: &l1 [{', '.join(['*s'] * 138)}]\n"
        + f"  l2: [{', '.join(['*l1'] * 138)}]\n",
        ("crm.yaml:20", "extra.l1[7]", "kB of text after alias expansion"),
        "yaml",
    ),
    Case("raw_nul", GOOD.replace("name: customers", "name: cust\x00omers"), ("crm.yaml", "line 3", "U+0000"), "yaml"),
    Case(
        "raw_escape", GOOD.replace("name: customers", "name: cust\x1bomers"), ("crm.yaml", "line 3", "U+001B"), "yaml"
    ),
    Case(
        "many_unknown_keys",
        GOOD + "".join(f"unknown_{i}: 1\n" for i in range(3000)),
        ("unknown key",),
        "yaml",
    ),
    # -- values read strictly -----------------------------------------------------------------
    Case(
        "encoding_klingon",
        _replace("encoding: utf-8", "encoding: klingon", GOOD_FILE),
        ("crm.yaml:8", "source.csv.encoding", "klingon"),
        "value",
    ),
    Case(
        "encoding_rot13",
        _replace("encoding: utf-8", "encoding: rot13", GOOD_FILE),
        ("crm.yaml:8", "source.csv.encoding", "rot13"),
        "value",
    ),
    Case(
        "lag_true",
        _replace("key: id", "key: id\n  safety_lag_seconds: true"),
        ("crm.yaml:10", "source.safety_lag_seconds", "integer"),
        "value",
    ),
    Case(
        "lag_1e15_float",
        _replace("key: id", "key: id\n  safety_lag_seconds: 1.0e+15"),
        ("crm.yaml:10", "source.safety_lag_seconds", "integer"),
        "value",
    ),
    Case(
        "lag_huge_int",
        _replace("key: id", "key: id\n  safety_lag_seconds: 100000000000000000000"),
        ("crm.yaml:10", "source.safety_lag_seconds", "604800"),
        "value",
    ),
    Case(
        "update_existing_yes",
        _replace("list_ids: [5]", "list_ids: [5]\n  update_existing: 'yes'"),
        ("crm.yaml:19", "destination.update_existing", "boolean"),
        "value",
    ),
    Case(
        "list_ids_true", _replace("list_ids: [5]", "list_ids: [true]"), ("destination.list_ids[0]", "integer"), "value"
    ),
    Case(
        "list_ids_text", _replace("list_ids: [5]", "list_ids: ['5']"), ("destination.list_ids[0]", "integer"), "value"
    ),
    Case(
        "list_ids_huge",
        _replace("list_ids: [5]", "list_ids: [100000000000000000000]"),
        ("destination.list_ids[0]", "2147483647"),
        "value",
    ),
    Case(
        "max_error_rate_nan",
        GOOD + "alerts:\n  max_error_rate: .nan\n",
        ("crm.yaml:20", "alerts.max_error_rate"),
        "value",
    ),
    Case(
        "text_max_length_inf",
        _replace("list_ids: [5]", "list_ids: [5]\n  text_max_length: .inf"),
        ("destination.text_max_length", "integer"),
        "value",
    ),
    Case(
        "poke_interval_1e20",
        _replace("key: id", "key: id\n  wait_for_file: {poke_interval_seconds: 100000000000000000000}", GOOD_FILE),
        ("source.wait_for_file.poke_interval_seconds", "86400"),
        "value",
    ),
    Case("schedule_int", _replace("schedule: hourly", "schedule: 5"), ("crm.yaml:10", "schedule", "string"), "value"),
    # -- queries: one SELECT ------------------------------------------------------------------
    *(
        Case(
            f"query_escapes_wrapper_{kind}",
            _query(kind, ESCAPE_THE_WRAPPER),
            ("crm.yaml:6", "source.query"),
            "query",
        )
        for kind in ("postgres", "bigquery", "snowflake")
    ),
    Case(
        "query_two_statements",
        _query("postgres", '"SELECT * FROM t; DELETE FROM t"'),
        ("crm.yaml:6", "source.query", "2 statements"),
        "query",
    ),
    Case(
        "query_data_modifying_cte",
        _query("postgres", '"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"'),
        ("source.query", "DELETE"),
        "query",
    ),
    Case(
        "query_select_into",
        _query("postgres", '"SELECT * INTO stolen FROM public.customers"'),
        ("source.query", "INTO"),
        "query",
    ),
    Case(
        "query_nested_300",
        _query("postgres", '"SELECT * FROM t WHERE ' + "(" * 300 + "id = 1" + ")" * 300 + '"'),
        ("source.query", "nest"),
        "query",
    ),
    Case(
        "mongo_pipeline_out",
        _replace("collection: users", "collection: users\n  pipeline: [{$match: {}}, {$out: stolen}]", GOOD_MONGO),
        ("source.pipeline", "$out"),
        "query",
    ),
    # -- identifiers with quotes, semicolons, unicode, NUL --------------------------------------
    Case("name_quote", _replace("name: customers", "name: cust'omers"), ("crm.yaml:3", "source.name"), "identifier"),
    Case("name_semicolon", _replace("name: customers", "name: 'customers;drop'"), ("source.name",), "identifier"),
    Case("name_unicode", _replace("name: customers", "name: cüstomers"), ("source.name",), "identifier"),
    Case(
        "name_nul",
        _replace("name: customers", 'name: "cust\\0omers"'),
        ("crm.yaml:3", "source.name", "NUL"),
        "identifier",
    ),
    Case(
        "field_quote",
        _replace("first_name, updated_at]", "first_name, updated_at, 'a\"b']"),
        ("source.fields[4]",),
        "identifier",
    ),
    Case(
        "field_nul",
        _replace("first_name, updated_at]", 'first_name, updated_at, "a\\0b"]'),
        ("source.fields[4]", "NUL"),
        "identifier",
    ),
    Case(
        "table_injection",
        _replace("table: public.customers", "table: 'public.t\"; DROP TABLE x; --'"),
        ("crm.yaml:6", "source.table"),
        "identifier",
    ),
    Case(
        "conn_id_nul",
        _replace("conn_id: crm_pg", 'conn_id: "crm\\0pg"'),
        ("crm.yaml:5", "source.conn_id", "NUL"),
        "identifier",
    ),
    Case(
        "conn_id_quote",
        _replace("conn_id: crm_pg", 'conn_id: "crm_pg\'; DROP"'),
        ("crm.yaml:5", "source.conn_id"),
        "identifier",
    ),
    Case(
        "description_nul",
        _replace("integration: crm", 'integration: crm\ndescription: "a\\0b"'),
        ("crm.yaml:2", "description", "NUL"),
        "identifier",
    ),
    Case("path_nul", _replace("path: .", 'path: "in\\0box"', GOOD_FILE), ("source.path", "NUL"), "identifier"),
    Case(
        "field_long",
        _replace("first_name, updated_at]", f"first_name, updated_at, {'f' * 10_000}]"),
        ("source.fields[4]", "1024"),
        "identifier",
    ),
    Case(
        "table_long",
        _replace("table: public.customers", f"table: public.{'t' * 10_000}"),
        ("crm.yaml:6", "source.table", "3072"),
        "identifier",
    ),
    Case(
        "collection_dollar",
        _replace("collection: users", "collection: us$ers", GOOD_MONGO),
        ("crm.yaml:6", "source.collection", "'$'"),
        "identifier",
    ),
    Case(
        "collection_nul",
        _replace("collection: users", 'collection: "us\\0ers"', GOOD_MONGO),
        ("source.collection", "NUL"),
        "identifier",
    ),
    Case(
        "key_nul", _replace("transform:", 'transform:\n  "e\\0mail": email', GOOD), ("transform", "NUL"), "identifier"
    ),
]

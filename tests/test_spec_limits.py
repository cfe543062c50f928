"""Hostile definitions (issue 11): no hang, no traceback, no silent acceptance.

Every case of tests/hostile_definitions.py ends as one clear error naming the file, the line and
the key where they are known, and the limit it passed. YAML bombs run in a child process with a
time-out and a memory cap, so that a regression fails this file instead of hanging the suite (the
time-out is a guard, not a measurement: the limits stop each case in a fraction of a second).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hostile_definitions import CASES, GOOD, GOOD_FILE, GOOD_MONGO, Case

from airflow_provider_contactsync.core.errors import ConfigurationError, DefinitionError
from airflow_provider_contactsync.core.spec import load_definition, parse_definition
from airflow_provider_contactsync.core.spec.limits import DEFINITION_SIZE, ERRORS_SHOWN, LIMITS, YAML_VALUES
from airflow_provider_contactsync.core.spec.sql import _plainly_one_select, check_select, parse_select
from airflow_provider_contactsync.core.spec.yaml_source import parse_yaml
from airflow_provider_contactsync.dag_factory.index import dag_id_of

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags" / "definitions"
YAML_CASES = [case for case in CASES if case.kind == "yaml"]
OTHER_CASES = [case for case in CASES if case.kind != "yaml"]
CHILD_TIMEOUT = 240  # a guard against a hang, far above what the cases take
CHILD_MEMORY = 2 * 2**30


def error_lines(text: str) -> list[str]:
    with pytest.raises(ConfigurationError) as info:
        parse_definition(text, file="crm.yaml")
    return str(info.value).splitlines()


def assert_clear_error(case: Case, lines: list[str]) -> None:
    """One line holds every expected fragment, and nothing looks like a traceback."""
    assert any(all(fragment in line for fragment in case.expected) for line in lines), (case.expected, lines)
    assert not any("Traceback" in line or "RecursionError" in line or "MemoryError" in line for line in lines)


# -- YAML bombs, in a child process --------------------------------------------------------------

CHILD = r"""
import json, logging, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
logging.disable(logging.CRITICAL)
from pathlib import Path
from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec import load_definition
from airflow_provider_contactsync.dag_factory import ContactsyncDefinitionsError, check_definitions, load_dags

folder = Path(sys.argv[1])
results = {}
for path in sorted(folder.glob("*/crm.yaml")):
    case = path.parent.name
    try:
        load_definition(path)
        results[case] = {"outcome": "accepted"}
    except ConfigurationError as exc:
        results[case] = {"outcome": "error", "lines": str(exc).splitlines()}
    except BaseException as exc:
        results[case] = {"outcome": "crash", "lines": [f"{type(exc).__name__}: {exc}"]}
dags = sorted(load_dags(folder))
try:
    check_definitions(folder)
    problems = {}
except ContactsyncDefinitionsError as exc:
    problems = exc.problems
os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = sys.argv[2]
try:
    worker = {"dags": sorted(load_dags(folder))}
except ContactsyncDefinitionsError as exc:
    worker = {"error": str(exc)}
print(json.dumps({"files": results, "dags": dags, "problems": problems, "worker": worker}))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every YAML case in one folder, next to a good definition, read by a child process."""
    folder = tmp_path_factory.mktemp("bombs")
    for case in YAML_CASES:
        (folder / case.name).mkdir()
        (folder / case.name / "crm.yaml").write_text(case.text, encoding="utf-8")
    (folder / "zz_good.yaml").write_text(GOOD.replace("integration: crm", "integration: good"), encoding="utf-8")
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), "contactsync__crm__customers", str(CHILD_MEMORY)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the hostile definitions did not end within {CHILD_TIMEOUT} s: a limit is missing")
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", YAML_CASES, ids=lambda case: case.name)
def test_yaml_bomb_is_a_clear_error(bombs: dict[str, Any], case: Case) -> None:
    result = bombs["files"][case.name]
    assert result["outcome"] == "error", result
    assert_clear_error(case, result["lines"])


def test_yaml_bombs_leave_the_other_dags_and_are_each_reported(bombs: dict[str, Any]) -> None:
    assert bombs["dags"] == ["contactsync__good__customers"]
    reported = {Path(path).parent.name for path in bombs["problems"]}
    assert reported == {case.name for case in YAML_CASES}
    assert not any("Traceback" in problem or "RecursionError" in problem for problem in bombs["problems"].values())


def test_a_worker_looking_for_a_dag_among_bombs_ends(bombs: dict[str, Any]) -> None:
    """Most bombs are a good definition of contactsync__crm__customers plus a bomb. The worker's index reads
    each within the limits, so a bomb is not taken for that DAG's file; the files that do name it and are
    broken for other reasons fail the task, saying why."""
    error = bombs["worker"]["error"]
    assert "slow_credential_regex/crm.yaml:2: description: String should have at most 2000 characters" in error
    assert "Traceback" not in error and "alias" not in error and "nested" not in error


# -- values, queries, identifiers ----------------------------------------------------------------


@pytest.mark.parametrize("case", OTHER_CASES, ids=lambda case: case.name)
def test_hostile_value_is_a_clear_error(case: Case) -> None:
    assert_clear_error(case, error_lines(case.text))


def test_the_good_bases_of_the_cases_are_good() -> None:
    for text in (GOOD, GOOD_FILE, GOOD_MONGO):
        parse_definition(text)


# -- the YAML limits -----------------------------------------------------------------------------


def test_size_limit_names_the_limit_and_how_to_raise_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(GOOD + f"description: {'x' * 1500}\n")
    monkeypatch.setenv("CONTACTSYNC_MAX_DEFINITION_KB", "1")
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert str(info.value) == (
        f"{path}: the file is 2 kB, over the limit of 1 kB for a definition (CONTACTSYNC_MAX_DEFINITION_KB): "
        "move large data (long value lists, big pipelines or queries) into the source, e.g. a view; "
        "or raise the limit with the environment variable CONTACTSYNC_MAX_DEFINITION_KB"
    )
    monkeypatch.setenv("CONTACTSYNC_MAX_DEFINITION_KB", "4")
    assert load_definition(path).description == "x" * 1500


def test_values_limit_can_be_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 x 30 x 30 values from three lines: over 20,000, so refused unless the limit is raised."""
    text = (
        "a: &a [" + ", ".join(["v"] * 30) + "]\n"
        "b: &b [" + ", ".join(["*a"] * 30) + "]\n"
        "c: [" + ", ".join(["*b"] * 30) + "]\n"
    )
    with pytest.raises(DefinitionError) as info:
        parse_yaml(text, file="crm.yaml")
    assert str(info.value).startswith(
        "crm.yaml:3: c[20][13][8]: more than 20,000 values after alias expansion, the limit for a definition "
        "(CONTACTSYNC_MAX_YAML_VALUES): write fewer values, or use fewer aliases to big anchors; or raise the limit "
        "with the environment variable CONTACTSYNC_MAX_YAML_VALUES"
    )
    monkeypatch.setenv(YAML_VALUES.env or "", "100000")
    document = parse_yaml(text, file="crm.yaml")
    assert len(document.data["c"]) == 30 and document.data["c"][29][29] == ["v"] * 30


def test_aliases_within_the_limits_work_and_their_keys_have_lines() -> None:
    document = parse_yaml("base: &b {table: t, fields: [a, b]}\nuse:\n  copy: *b\n", file="crm.yaml")
    assert document.data["use"]["copy"] == {"table": "t", "fields": ["a", "b"]}
    assert document.lines[("use", "copy")] == 3  # where the alias is used
    assert document.lines[("use", "copy", "fields")] == 1  # where the aliased key is written


def test_depth_limit_within_libyaml_s_own_limit_names_the_key() -> None:
    (line,) = error_lines(GOOD + "extra: " + "[" * 500 + "]" * 500 + "\n")
    assert (
        line
        == "crm.yaml:19: extra"
        + "[0]" * 63
        + ": nested deeper than 64 levels, the limit for a definition: flatten the data"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!int x", "bad value 'x': not a valid int (ValueError)"),
        ("!!bool maybe", "bad value 'maybe': not a valid bool (KeyError)"),
        ("!!timestamp soon", "bad value 'soon': not a valid timestamp (AttributeError)"),
        ('"a\\x1bb"', "'a\\x1bb' contains the control character U+001B: control characters are not allowed"),
        ("{<<: {a: 1}}", "merge keys (<<) are not allowed: write the keys out"),
    ],
)
def test_bad_scalars_are_errors_not_crashes(value: str, message: str) -> None:
    (line,) = error_lines(GOOD.replace("integration: crm", f"integration: crm\ndescription: {value}"))
    assert line.startswith("crm.yaml:2: description") and message in line


def test_a_file_s_problems_are_capped() -> None:
    lines = error_lines(GOOD + "".join(f"unknown_{i}: 1\n" for i in range(300)))
    assert len(lines) == ERRORS_SHOWN.value + 1
    assert (
        lines[-1] == f"crm.yaml: ... and 250 more problems (only the first {ERRORS_SHOWN.value} of a file are listed)"
    )


def test_dag_id_index_reads_within_the_limits() -> None:
    laughs = next(case for case in YAML_CASES if case.name == "laughs_map_unknown_key").text
    assert dag_id_of(laughs) is None  # over the values limit: not read, however its names look
    assert dag_id_of(GOOD + "schedule: daily\n") == "contactsync__crm__customers"  # a duplicate key is tolerated
    assert dag_id_of("integration: [\n") is None


def test_every_limit_is_documented_with_its_value() -> None:
    reference = (Path(__file__).resolve().parents[1] / "docs" / "definition-reference.md").read_text()
    for limit in LIMITS:
        assert f"| {limit.name} | {limit.default:,} {limit.unit}" in reference
    assert DEFINITION_SIZE.env and DEFINITION_SIZE.env in reference


# -- strict values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("integration: crm", "version: true\nintegration: crm", "version: version must be the number 1, not True"),
        ("list_ids: [5]", "list_ids: 5", "destination.list_ids: Input should be a valid list, not the number 5"),
        ("conn_id: crm_pg", "conn_id: 42", "source.conn_id: Input should be a valid string, not the number 42"),
        ("[id, email,", "[id, 5, email,", "source.fields[1]: Input should be a valid string, not the number 5"),
    ],
)
def test_values_are_read_strictly(old: str, new: str, message: str) -> None:
    assert any(message in line for line in error_lines(GOOD.replace(old, new))), message


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.stem)
def test_a_definition_round_trips_through_its_json_dump(example: Path) -> None:
    """The operators validate ``model_dump(mode="json")`` again on workers: strict types must accept it."""
    definition = load_definition(example)
    assert type(definition).model_validate(definition.model_dump(mode="json")) == definition


def test_csv_delimiter_and_quote_must_differ() -> None:
    text = GOOD_FILE.replace("csv: {encoding: utf-8}", "csv: {encoding: utf-8, delimiter: '\"'}")
    assert any("source.csv: delimiter and quotechar must differ" in line for line in error_lines(text))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("collection: users", "collection: users\n  database: 'crm.prod'", "source.database: 'crm.prod' is not valid"),
        (
            "collection: users",
            "collection: users\n  pipeline: [{$merge: {into: x}}]",
            "source.pipeline: stage 1 ($merge) writes to the database",
        ),
    ],
)
def test_mongo_names_and_pipelines(old: str, new: str, message: str) -> None:
    assert any(message in line for line in error_lines(GOOD_MONGO.replace(old, new))), message


def test_alert_emails_are_one_address_each() -> None:
    lines = error_lines(GOOD + "alerts:\n  emails: ['a@example.com, b@example.com']\n")
    assert any(
        "alerts.emails[0]: 'a@example.com, b@example.com' is not valid here: one email address" in line
        for line in lines
    )


# -- queries -------------------------------------------------------------------------------------


def query_definition(source_type: str, query: str) -> str:
    conn = {"postgres": "crm_pg", "bigquery": "crm_bq", "snowflake": "crm_sf"}[source_type]
    text = GOOD.replace("type: postgres", f"type: {source_type}").replace("conn_id: crm_pg", f"conn_id: {conn}")
    block = textwrap.indent(query, "    ")
    return text.replace("table: public.customers", f"query: |\n{block}")


DIALECTS = ("postgres", "bigquery", "snowflake")


@pytest.mark.parametrize("source_type", DIALECTS)
@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("SELECT * FROM t;", "SELECT * FROM t"),
        ("SELECT * FROM t -- the customers", "SELECT * FROM t"),
        ("-- first\nSELECT id FROM t /* why */ ;\n-- done", "-- first\nSELECT id FROM t"),
        ("WITH a AS (SELECT id FROM t) SELECT * FROM a", "WITH a AS (SELECT id FROM t) SELECT * FROM a"),
        (
            "SELECT id FROM t WHERE note = ') s; DELETE FROM t; --'",
            "SELECT id FROM t WHERE note = ') s; DELETE FROM t; --'",
        ),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", "SELECT * FROM t WHERE id IN (SELECT id FROM u)"),
    ],
)
def test_a_select_is_kept_without_what_follows_it(source_type: str, query: str, kept: str) -> None:
    definition = parse_definition(query_definition(source_type, query))
    assert definition.source.query == kept


@pytest.mark.parametrize("source_type", DIALECTS)
@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT * FROM t ) s; DELETE FROM t; --", "')' closes a parenthesis the query did not open"),
        ("SELECT * FROM t; DELETE FROM t", "the query holds 2 statements"),
        ("SELECT 1; SELECT 2;", "the query holds 2 statements"),
        ("DELETE FROM t", "the query starts with DELETE"),
        ("INSERT INTO t SELECT * FROM u", "the query starts with INSERT"),
        ("DROP TABLE t", "the query starts with DROP"),
        ("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", "the query is INSERT"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "the query contains DELETE"),
        ("SELECT * INTO copy FROM t", "SELECT ... INTO creates a table"),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE/SHARE locks rows"),
        ("EXPLAIN SELECT 1", "the query starts with EXPLAIN"),
        ("-- nothing", "the query is empty"),
        ("SELECT 'unterminated", "not valid"),
        ("SELECT * FROM t WHERE " + "(" * 30 + "id = 1" + ")" * 30, "nests deeper than 25 levels"),
        ("SELECT * FROM t WHERE " + "NOT " * 400 + "a = 'x'", "the query nests too deeply to be parsed"),
    ],
)
def test_a_query_that_is_not_one_select_is_refused(source_type: str, query: str, reason: str) -> None:
    lines = error_lines(query_definition(source_type, query))
    assert any(line.startswith("crm.yaml:6: source.query: ") and reason in line for line in lines), lines


def test_strings_and_comments_are_read_in_the_source_s_dialect() -> None:
    """Backslash escapes a quote in BigQuery and Snowflake strings, not in PostgreSQL's standard strings;
    PostgreSQL nests block comments, Snowflake does not."""
    escaped = "SELECT 'a\\' ) s; DELETE FROM t; --' AS x"
    assert check_select(escaped, "bigquery") == escaped  # one string
    assert check_select(escaped, "snowflake") == escaped
    with pytest.raises(ValueError, match="closes a parenthesis"):
        check_select(escaped, "postgres")  # the string ends at \' : the rest is SQL
    nested = "SELECT 1 /* /* */ ) s; DELETE FROM t; -- */"
    assert check_select(nested, "postgres") == "SELECT 1"  # all one comment
    with pytest.raises(ValueError, match="closes a parenthesis"):
        check_select(nested, "snowflake")


def test_query_length_limit() -> None:
    query = "SELECT " + ", ".join(f"c{i}" for i in range(5000)) + " FROM t"
    (line,) = [line for line in error_lines(query_definition("postgres", query)) if "source.query" in line]
    assert "characters, over the limit of 20,000: create a view holding the query and read it with table:" in line


def test_plain_queries_are_checked_without_sqlglot(tmp_path: Path) -> None:
    """A query of words, numbers and operators is checked without importing sqlglot (0.3 s per parse of the
    DAG file); a query with a string is parsed."""
    code = textwrap.dedent(
        """
        import sys
        from airflow_provider_contactsync.core.spec import parse_definition
        from hostile_definitions import GOOD
        text = GOOD.replace("table: public.customers", "query: select id, email from crm.customers where id > 5;")
        assert parse_definition(text).source.query == "select id, email from crm.customers where id > 5"
        assert "sqlglot" not in sys.modules
        parse_definition(text.replace("id > 5", "email <> 'x'"))
        assert "sqlglot" in sys.modules
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=120
    )
    assert child.returncode == 0, child.stderr[-2000:]


WORDS = """select with from where and or not as on join left group by order having union all distinct case when
then else end""".split()
PIECES = [
    *WORDS,
    "t",
    "u.id",
    "1",
    "2.5",
    "*",
    ",",
    "(",
    ")",
    "=",
    "<>",
    ">=",
    "+",
    "-",
    "/",
    "%",
    "!=",
    "upper",
    "x_1",
]


@pytest.mark.parametrize("source_type", DIALECTS)
def test_what_the_plain_check_accepts_the_parser_finds_harmless(source_type: str) -> None:
    """Random plain queries: whatever the parser-free check accepts, sqlglot finds either a syntax error (left
    to the database) or one read-only SELECT, never a write, a second statement or a ')' leaving the wrapper."""
    import random

    rng = random.Random(11)
    accepted = 0
    for _ in range(400):
        query = "SELECT " + " ".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 14)))
        if _plainly_one_select(query) is None:
            continue
        accepted += 1
        try:
            parse_select(query, source_type)
        except ValueError as exc:
            assert "not valid" in str(exc) or "nests too deeply" in str(exc), (query, str(exc))
    assert accepted > 50


def test_a_file_that_is_not_utf8_names_the_line_of_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_bytes(GOOD.replace("customers", "clients", 1).encode("utf-8").replace(b"clients", b"cli\xe9nts"))
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert str(info.value) == (
        f"{path}: line 3, column 12: cannot read the file: not UTF-8 text (byte 0xe9: invalid continuation byte); "
        "definitions are UTF-8"
    )

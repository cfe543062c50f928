"""Hostile formulas and data: every case ends in a FormulaError or a row error, fast; none hangs.

Cases that would run for hours without the limits (catastrophic regular expressions, 30 nested
comprehensions, an unterminated string of backslashes) run in a subprocess with a timeout, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import functools
import inspect
import json
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_contactsync.core.errors import FormulaError, RowError
from airflow_provider_contactsync.core.formulas import check_transform, compile_formula, compile_transform
from airflow_provider_contactsync.core.formulas.limits import (
    MAX_COMPREHENSION_NESTING,
    MAX_DEPTH,
    MAX_FORMULA_CHARS,
    MAX_NESTED_STEPS,
    MAX_REGEX_CHARS,
    REGEX_CACHE_SIZE,
)
from airflow_provider_contactsync.core.formulas.regex import Regex, RegexError, cached


def compile_error(text: str, fields=("a", "b", "l", "s", "p", "m")) -> FormulaError:
    with pytest.raises(FormulaError) as info:
        compile_formula(text, fields)
    return info.value


def row_error(text: str, **row) -> str:
    with pytest.raises(RowError) as info:
        compile_formula(text, row.keys()).evaluate(row)
    return info.value.reason


def run_isolated(code: str, timeout: float = 120) -> dict:
    """Run ``code`` (which prints one JSON object) in a fresh interpreter; a hang fails the test."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s: a limit does not hold")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- formula size ----------------------------------------------------------------------------------


def test_a_formula_at_the_size_limit_compiles():
    text = 'a == "' + "x" * (MAX_FORMULA_CHARS - 7) + '"'
    assert len(text) == MAX_FORMULA_CHARS
    assert compile_formula(text, ["a"]).evaluate({"a": "x" * (MAX_FORMULA_CHARS - 7)}) is True


def test_a_longer_formula_is_refused_before_parsing_and_named():
    text = " + ".join(["a"] * 40_000)  # 100 KB, and 40,000 levels deep
    with pytest.raises(FormulaError) as info:
        compile_transform({"full_name": text}, ["a"])
    error = info.value
    assert error.key_path == "transform.full_name"
    assert error.message == f"formula is too long: {len(text):,} characters, over the limit of {MAX_FORMULA_CHARS:,}"
    assert [str(e) for e in check_transform({"full_name": text}, ["a"])] == [str(error)]


# -- nesting depth ---------------------------------------------------------------------------------

# Each builds a formula nested ``n`` levels deep (n >= 2) in one way, with what it gives on ROW.
ROW = {"a": "x", "b": True, "l": ["x"], "m": {"k": {"k": "x"}}}
NESTINGS = {
    "+": (lambda n: " + ".join(["a"] * n), lambda n: "x" * n),
    "==": (lambda n: "a" + " == a" * (n - 1), None),
    "<": (lambda n: "a" + " < a" * (n - 1), None),
    "!": (lambda n: "!" * (n - 1) + "b", lambda n: n % 2 == 1),
    "-": (lambda n: "-" * (n - 2) + "size(a)", lambda n: 1 if n % 2 == 0 else -1),
    "&& on the right": (lambda n: "b && (" * (n - 1) + "b" + ")" * (n - 1), lambda n: True),
    "|| of fields": (lambda n: " || ".join(["b"] * n), lambda n: True),
    "?: in the test": (
        lambda n: functools.reduce(lambda t, _: f"({t} ? true : false)", range(n - 1), "b"),
        lambda n: True,
    ),
    "?: in the else branch": (lambda n: "b ? a : " * (n - 1) + "a", lambda n: "x"),
    "method calls": (lambda n: "a" + ".trim()" * (n - 1), lambda n: "x"),
    "ifNull": (lambda n: "a" + ".ifNull(a)" * (n - 1), lambda n: "x"),
    "lists": (lambda n: "[" * (n - 1) + "a" + "]" * (n - 1), None),
    "maps": (lambda n: "{1: " * (n - 1) + "a" + "}" * (n - 1), None),
    "indexes": (lambda n: "l" + "[0]" * (n - 1), None),
    "selections": (lambda n: "m" + ".k" * (n - 1), None),
    "comprehension targets": (lambda n: "l" + ".map(x, x)" * (n - 1), lambda n: ["x"]),
}


@pytest.mark.parametrize("kind", NESTINGS)
def test_nesting_up_to_the_limit_compiles_and_one_more_level_is_refused(kind):
    build, expected = NESTINGS[kind]
    formula = compile_formula(build(MAX_DEPTH), ROW)  # Python compiles the generated code too
    if expected is not None:
        assert formula.evaluate(ROW) == expected(MAX_DEPTH)
    error = compile_error(build(MAX_DEPTH + 1))
    assert error.message.startswith(f"formula is too deeply nested: more than {MAX_DEPTH} levels")
    assert error.line == 1 and error.column is not None


def test_compiling_the_deepest_formulas_needs_a_bounded_stack():
    """A caller deep in its own stack (Airflow, pytest) still compiles them: no RecursionError."""
    compile_formula("a", ["a"])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 350)
    try:
        for build, _ in NESTINGS.values():
            compile_formula(build(MAX_DEPTH), ROW)
            with pytest.raises(FormulaError, match="too deeply nested"):
                compile_formula(build(MAX_DEPTH + 1), ROW)
    finally:
        sys.setrecursionlimit(limit)


def test_parentheses_alone_do_not_nest():
    text = "(" * 4000 + "a" + ")" * 4000
    assert compile_formula(text, ["a"]).evaluate({"a": 7}) == 7


@pytest.mark.parametrize(
    "text",
    [
        "!" * 9000 + "b",
        "-" * 9000 + "a",
        " + ".join(["a"] * 2400),
        "[" * 4000 + "a" + "]" * 4000,
        "{1: " * 1900 + "a" + "}" * 1900,
        "a" + ".trim()" * 1400,
        "".join(f"a == {i} ? {i} : " for i in range(500)) + "0",
        "a" + "[0]" * 3000,
    ],
    ids=["not", "minus", "plus", "lists", "maps", "calls", "ternaries", "indexes"],
)
def test_absurd_nesting_within_the_size_limit_is_a_formula_error(text):
    assert len(text) <= MAX_FORMULA_CHARS
    assert "too deeply nested" in compile_error(text).message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r'a + "\ud800"', r"invalid escape \ud800: not a Unicode character"),
        (r'"\U00110000"', r"invalid escape \U00110000: not a Unicode character"),
        (r'b"\udfff"', r"invalid escape \udfff: not a Unicode character"),
        ('a + "\ud800"', r"a string cannot hold a lone surrogate (\ud800-\udfff is not a character)"),
    ],
)
def test_a_string_literal_that_is_not_unicode_is_a_formula_error(text, message):
    assert compile_error(text).message == message


def test_a_huge_int_literal_is_out_of_range_not_a_crash():
    error = compile_error("a == " + "9" * 5000)
    assert error.message == "int literal out of range: 9999999999999999999999999999999999999..."


# -- comprehensions --------------------------------------------------------------------------------


def nested_exists(levels: int) -> str:
    names = [f"x{i}" for i in range(levels)]
    return "".join(f"l.exists({n}, " for n in names) + f"{names[-1]} == 'none'" + ")" * levels


def test_comprehensions_nest_up_to_the_limit():
    formula = compile_formula(nested_exists(MAX_COMPREHENSION_NESTING), ["l"])
    assert formula.evaluate({"l": ["a", "b"]}) is False
    error = compile_error(nested_exists(MAX_COMPREHENSION_NESTING + 1))
    assert error.message == (
        f"comprehensions are nested too deeply: exists() inside {MAX_COMPREHENSION_NESTING} others, over the limit"
        f" of {MAX_COMPREHENSION_NESTING} levels (each level can multiply the work per row by the length of a list)"
    )
    assert (error.line, error.column) == (1, 3 + len("l.exists(x0, ") * MAX_COMPREHENSION_NESTING)


def test_comprehensions_one_after_another_do_not_nest():
    text = "l" + ".map(x, x + 1)" * 10 + ".filter(x, x > 0).exists(x, [x].map(y, y).all(z, z > 0))"
    assert compile_formula(text, ["l"]).evaluate({"l": [1, 2]}) is True


def test_thirty_nested_exists_is_refused_at_compile_time():
    assert "comprehensions are nested too deeply" in compile_error(nested_exists(30)).message


def test_one_pass_over_a_huge_list_is_not_limited():
    rows = {"l": list(range(MAX_NESTED_STEPS + 10))}
    assert compile_formula("l.exists(x, x == -1)", ["l"]).evaluate(rows) is False
    assert len(compile_formula("l.filter(x, x >= 0)", ["l"]).evaluate(rows)) == MAX_NESTED_STEPS + 10


STEPS_ERROR = (
    f"too much work for one row: over {MAX_NESTED_STEPS:,} steps inside comprehensions (the limit per formula"
    " and row; inner comprehensions and row fields read again for every element count)"
)


@pytest.mark.parametrize(
    "text",
    [
        "a.exists(x, b.exists(y, x == y))",
        "a.all(x, b.all(y, x != y))",
        "a.map(x, b.filter(y, y == x)).size() > 0",
        "a.filter(x, x in b).size() > 0",
        "a.exists(x, b.exists_one(y, y == x))",
    ],
)
def test_work_inside_comprehensions_is_bounded_per_row(text):
    formula = compile_formula(text, ["a", "b"])
    small = {"a": list(range(999)), "b": list(range(-1000, 0))}  # 999 x 1,000 steps: under the limit
    assert formula.evaluate(small) in (False, True)
    big = {"a": list(range(1001)), "b": list(range(-1000, 0))}
    with pytest.raises(RowError) as info:
        formula.evaluate(big)
    assert info.value.reason == STEPS_ERROR


def test_the_step_count_is_per_formula_and_per_row():
    text = "a.exists(x, b.exists(y, x == y))"
    row = {"a": list(range(600)), "b": list(range(-1000, 0))}  # 600,000 steps each
    transform = compile_transform({"one": text, "two": text}, ["a", "b"])
    for _ in range(2):
        out, errors = transform.apply(row)
        assert errors == [] and out["one"] is False and out["two"] is False


def test_literal_lists_and_map_lookups_inside_comprehensions_are_not_counted():
    row = {"a": list(range(2000)), "m": {str(i): i for i in range(2000)}}
    assert compile_formula("a.all(x, x in [1, 2] || x >= 0)", ["a"]).evaluate(row) is True
    assert compile_formula("a.all(x, string(x) in m)", ["a", "m"]).evaluate(row) is True


@pytest.mark.parametrize(
    ("text", "counted"),
    [
        ("a.exists(x, t.contains(string(x)))", True),  # the text is scanned again for every element
        ("a.exists(x, t.split(',').size() == -x)", True),
        ("a.map(x, l + [x]).size() > 0", True),
        ("a.exists(x, size(t) == x)", False),  # constant time: not counted
        ("a.exists(x, size(l) == x)", False),
        ("a.exists(x, m[string(x)] == 0)", False),
        ("a.exists(x, has(m.k) && x < 0)", False),
        ("a.exists(x, t.isNull() || t.ifNull('') == string(x))", False),
        ("a.exists(x, string(x).contains('-'))", False),  # the element's own data: linear overall
    ],
)
def test_row_fields_read_again_for_every_element_are_counted(text, counted):
    row = {"a": list(range(2000)), "t": "z" * 64 * 600, "l": [0] * 600, "m": {str(i): i for i in range(600)}}
    formula = compile_formula(text, row)
    if counted:  # 2,000 elements x 600 steps
        with pytest.raises(RowError) as info:
            formula.evaluate(row)
        assert info.value.reason == STEPS_ERROR
    else:
        formula.evaluate(row)
        assert "_c(_steps" not in formula.source


def test_a_split_of_a_big_field_for_every_element_stops_early():
    result = run_isolated(
        """
        import json
        from airflow_provider_contactsync.core.formulas import compile_formula
        s = "y," * 500_000  # 1 MB: 500,000 splits of it would take an hour
        formula = compile_formula('s.split(",").exists(a, s.split(",").exists(b, b == "z"))', ["s"])
        try:
            formula.evaluate({"s": s})
        except Exception as exc:
            print(json.dumps(str(exc)[:25]))
        """
    )
    assert result == "too much work for one row"


def test_an_absorbed_step_error_still_stops_the_work():
    text = "a.exists(x, b.exists(y, x == y)) || true"  # CEL: error || true is true
    row = {"a": list(range(100_000)), "b": list(range(-100_000, 0))}
    assert compile_formula(text, ["a", "b"]).evaluate(row) is True


def test_the_transform_rejects_the_row_and_keeps_going():
    transform = compile_transform({"hit": "a.exists(x, b.exists(y, x == y))", "n": "size(a)"}, ["a", "b"])
    out, errors = transform.apply({"a": list(range(2000)), "b": list(range(-2000, 0))})
    assert [(e.field, e.reason) for e in errors] == [("hit", STEPS_ERROR)]
    assert out["n"] == 2000 and "hit" not in out


# -- regular expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\\\1", "backreferences are not supported in RE2 syntax: \\1"),
        ("a(?=b)", "lookahead and lookbehind are not supported in RE2 syntax: (?="),
        ("(?<!a)b", "lookahead and lookbehind are not supported in RE2 syntax: (?<!"),
        ("a\\\\Z", "\\Z is not RE2 syntax: use \\z or $"),
        ("a{1001}", "invalid repetition size: {1001} (RE2 allows at most 1000 repetitions)"),
        (
            "\\\\pL{1000}",
            "too large: its RE2 program needs more than 1 MiB (the limit per regular expression);"
            " use fewer or smaller repetitions",
        ),
        ("(", "missing ): ("),
    ],
)
def test_a_literal_pattern_re2_refuses_is_a_compile_error_at_the_pattern(pattern, reason):
    error = compile_error(f's.matches("{pattern}")')
    shown = pattern.replace("\\\\", "\\")
    assert error.message == f'matches: invalid regular expression "{shown}": {reason}'
    assert (error.line, error.column) == (1, 11)


def test_a_data_pattern_re2_refuses_rejects_the_row_with_the_reason():
    assert row_error("s.matches(p)", s="ab", p="a(?=b)") == (
        'matches: invalid regular expression "a(?=b)": lookahead and lookbehind are not supported in RE2 syntax: (?='
    )
    assert row_error("s.matches(p)", s="ab", p="(a)\\1") == (
        'matches: invalid regular expression "(a)\\1": backreferences are not supported in RE2 syntax: \\1'
    )


def test_a_data_pattern_over_the_length_limit_rejects_the_row():
    pattern = "a" * (MAX_REGEX_CHARS + 1)
    assert row_error("s.matches(p)", s="a", p=pattern) == (
        f"matches: the regular expression is {MAX_REGEX_CHARS + 1:,} characters, over the limit of {MAX_REGEX_CHARS:,}"
    )


def test_data_patterns_are_compiled_once_through_a_bounded_cache():
    formula = compile_formula("s.matches(p)", ["s", "p"])
    cached.cache_clear()
    for _ in range(3):
        assert formula.evaluate({"s": "abc", "p": "^a.c$"}) is True
        with pytest.raises(RowError):
            formula.evaluate({"s": "abc", "p": "(?=a)"})  # a refused pattern is kept too
    info = cached.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (2, 4, REGEX_CACHE_SIZE)
    for i in range(REGEX_CACHE_SIZE * 2):
        formula.evaluate({"s": "abc", "p": f"x{i}"})
    assert cached.cache_info().currsize == REGEX_CACHE_SIZE


def test_a_literal_pattern_is_compiled_with_the_formula():
    formula = compile_formula('s.matches("^[0-9]{5}$")', ["s"])
    assert "_match_re(v_s, _k" in formula.source
    assert formula.evaluate({"s": "75001"}) is True
    assert formula.evaluate({"s": "7500"}) is False
    with pytest.raises(RowError, match=r"no such overload: matches\(null, string\)"):
        formula.evaluate({"s": None})


@pytest.mark.parametrize(
    ("text", "s", "expected"),
    [
        ('s.matches("c$")', "abc\n", False),  # RE2: $ is the end of the text, not before a final newline
        ('s.matches("(?m)c$")', "abc\nd", True),
        ('s.matches("^.$")', "é", True),  # code points, not bytes
        ('s.matches("^\\\\d+$")', "٣", False),  # \d is ASCII in RE2
        ('s.matches("\\\\pL")', "é", True),
        ('s.matches("a")', "xa\ud800", True),  # a lone surrogate from JSON data does not fail
        ('s.matches("^$")', "", True),
    ],
)
def test_matches_follows_re2(text, s, expected):
    assert compile_formula(text, ["s"]).evaluate({"s": s}) is expected


def test_a_pattern_with_a_lone_surrogate_is_refused():
    with pytest.raises(RegexError, match="lone surrogate"):
        Regex("\ud800")


def test_catastrophic_patterns_match_in_linear_time():
    result = run_isolated(
        """
        import json
        from airflow_provider_contactsync.core.formulas import compile_formula
        text = "a" * 50_000 + "!"
        literal = compile_formula('s.matches("^(a+)+$")', ["s"]).evaluate({"s": text})
        data = compile_formula("s.matches(p)", ["s", "p"]).evaluate({"s": text, "p": "(x+x+)+y|^(a|aa)+$"})
        nested = compile_formula("s.matches(p)", ["s", "p"]).evaluate({"s": text, "p": "^(a*)*(a*)*b"})
        print(json.dumps([literal, data, nested]))
        """
    )
    assert result == [False, False, False]


# -- the library's own parsers, and the lexer ------------------------------------------------------


def test_library_parsers_are_linear_on_hostile_text():
    result = run_isolated(
        """
        import json
        from airflow_provider_contactsync.core.errors import RowError
        from airflow_provider_contactsync.core.formulas import compile_formula
        out = []
        for text, value in [
            ("double(a)", "1" * 200_000 + "x"),  # Python's re took minutes: [0-9]+\\.?[0-9]* backtracks
            ("timestamp(a)", "2024-01-01T00:00:00" + "0" * 200_000),
            ("duration(a)", "1" * 50_000 + "x"),
            ("a.asInt()", "+" + "1" * 200_000 + "x"),
            ("int(a)", "9" * 5000),
            ("a.asInt()", "9" * 5000),
        ]:
            try:
                out.append(repr(compile_formula(text, ["a"]).evaluate({"a": value})))
            except RowError as exc:
                out.append(exc.reason[:22])
        print(json.dumps(out))
        """
    )
    assert result == [
        "double: cannot convert",
        "timestamp: cannot pars",
        "duration: cannot parse",
        'asInt: "+1111111111111',
        "int overflow",
        "int overflow",
    ]


def test_replace_cannot_build_a_huge_text():
    formula = compile_formula("s.replace('', t)", ["s", "t"])
    assert formula.evaluate({"s": "ab", "t": "-"}) == "-a-b-"
    with pytest.raises(RowError) as info:
        formula.evaluate({"s": "x" * 100_000, "t": "y" * 100_000})  # 10 GB
    assert info.value.reason == "replace: the result would be 10,000,200,000 characters, over the limit of 10,000,000"
    assert compile_formula("s.replace('x', t, 2)", ["s", "t"]).evaluate({"s": "x" * 10**6, "t": "yy"})[:5] == "yyyyx"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"2.5e3"', 2500.0),
        ('" 1.5"', None),
        ('"-.5"', -0.5),
        ('"Infinity"', float("inf")),
        ('"1_000"', None),
    ],
)
def test_double_from_text_keeps_its_syntax(text, expected):
    formula = compile_formula(f"double({text})", [])
    if expected is None:
        with pytest.raises(RowError, match="cannot convert"):
            formula.evaluate({})
    else:
        assert formula.evaluate({}) == expected


@pytest.mark.parametrize(
    ("text", "micros"),
    [("1h30m", 5_400_000_000), ("-1.5s", -1_500_000), ("100ms", 100_000), ("1.µs", 1), ("2m3ms", 120_003_000)],
)
def test_durations_still_parse(text, micros):
    value = compile_formula(f'duration("{text}")', []).evaluate({})
    assert value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds == micros


@pytest.mark.parametrize("text", ["1", ".s", "1h30", "1d", "h", "1..2s"])
def test_bad_durations_are_row_errors(text):
    with pytest.raises(RowError, match="duration: cannot parse"):
        compile_formula(f'duration("{text}")', []).evaluate({})


def test_time_zone_offsets_still_parse():
    formula = compile_formula("t.getHours(z)", ["t", "z"])
    t = compile_formula('timestamp("2024-01-31T10:00:00Z")', []).evaluate({})
    assert [formula.evaluate({"t": t, "z": z}) for z in ("+02:00", "-0130", "UTC")] == [12, 8, 10]


def test_an_unterminated_string_of_backslashes_is_a_quick_syntax_error():
    result = run_isolated(
        """
        import json
        from airflow_provider_contactsync.core.errors import FormulaError
        from airflow_provider_contactsync.core.formulas import compile_formula
        out = []
        for text in ['a == "' + "\\\\\\\\" * 4000, "a == '" + "\\\\\\\\" * 4000, 'a == \"\"\"' + "\\\\\\\\" * 4000]:
            try:
                compile_formula(text, ["a"])
            except FormulaError as exc:
                out.append(exc.message)
        print(json.dumps(out))
        """,
        timeout=60,
    )
    assert result == [
        "syntax error: unexpected character '\"'",
        'syntax error: unexpected character "\'"',
        "syntax error: unexpected character '\"'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        (r'"""x\"""y"""', 'x"""y'),
        ('"""a\n"b"\n"""', 'a\n"b"\n'),
        (r'r"\d+\"', "\\d+\\"),  # a raw string holds no quote: its last backslash is text
        (r"r'''a\'''", "a\\"),
        (r'b"\x41\377"', b"A\xff"),
        (r'"\\"', "\\"),
    ],
)
def test_string_literals_still_lex(text, expected):
    assert compile_formula(text, []).evaluate({}) == expected


# -- the bad-input suite of issue 11 ---------------------------------------------------------------


def test_hostile_inputs_fail_fast_with_a_clear_error():
    """Each named case ends in a FormulaError or a row error; the whole suite runs in one subprocess."""
    result = run_isolated(
        """
        import json
        from airflow_provider_contactsync.core.errors import FormulaError
        from airflow_provider_contactsync.core.formulas import compile_transform
        cases = {
            "100 KB formula": (" || ".join(['a == "x"'] * 12_000), {"a": "y"}),
            "10,000 nested parentheses": ("(" * 10_000 + "a" + ")" * 10_000, {"a": 1}),
            "!!!...!a": ("!" * 9_999 + "b", {"b": True}),
            "a+a+...+a, 50k terms": (" + ".join(["a"] * 50_000), {"a": 1}),
            "deep list": ("[" * 4_000 + "a" + "]" * 4_000, {"a": 1}),
            "30 nested exists": (
                "".join(f"l.exists(x{i}, " for i in range(30)) + "x29 == -1" + ")" * 30, {"l": [1, 2]}
            ),
            "catastrophic literal pattern": ('s.matches("^(a+)+$")', {"s": "a" * 100 + "!"}),
            "catastrophic data pattern": ("s.matches(p)", {"s": "a" * 100 + "!", "p": "^(a+)+$"}),
            "backreference, literal": ('s.matches("(a)\\\\\\\\1")', {"s": "aa"}),
            "lookahead, from data": ("s.matches(p)", {"s": "ab", "p": "a(?=b)"}),
            "quadratic over data lists": (
                "a.exists(x, b.exists(y, x == y))", {"a": list(range(10**5)), "b": [-1] * 10**5}
            ),
        }
        out = {}
        for name, (text, row) in cases.items():
            try:
                transform = compile_transform({"out": text}, list(row))
            except FormulaError as exc:
                out[name] = ["formula error", exc.message[:40]]
                continue
            value, errors = transform.apply(row)
            out[name] = ["row error", errors[0].reason[:40]] if errors else ["value", value["out"]]
        print(json.dumps(out))
        """
    )
    assert result == {
        "100 KB formula": ["formula error", "formula is too long: 143,996 characters,"],
        "10,000 nested parentheses": ["formula error", "formula is too long: 20,001 characters, "],
        "!!!...!a": ["formula error", "formula is too deeply nested: more than "],
        "a+a+...+a, 50k terms": ["formula error", "formula is too long: 199,997 characters,"],
        "deep list": ["formula error", "formula is too deeply nested: more than "],
        "30 nested exists": ["formula error", "comprehensions are nested too deeply: ex"],
        "catastrophic literal pattern": ["value", False],
        "catastrophic data pattern": ["value", False],
        "backreference, literal": ["formula error", 'matches: invalid regular expression "(a)'],
        "lookahead, from data": ["row error", 'matches: invalid regular expression "a(?'],
        "quadratic over data lists": ["row error", "too much work for one row: over 1,000,00"],
    }

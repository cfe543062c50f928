"""CEL semantics of compiled formulas: arithmetic, equality, ordering, logic, access, macros."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from airflow_provider_contactsync.core.errors import FormulaError, RowError
from airflow_provider_contactsync.core.formulas import compile_formula
from airflow_provider_contactsync.core.formulas.values import UInt


def ev(text: str, **row):
    """Evaluate a formula on a row whose fields are the keyword arguments (values stay dyn)."""
    return compile_formula(text, row.keys()).evaluate(row)


def err(text: str, **row) -> str:
    with pytest.raises(RowError) as info:
        ev(text, **row)
    return info.value.reason


# -- arithmetic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("7.0 / 2.0", 3.5),
        ("10u / 3u", 3),
        ("'ab' + 'cd'", "abcd"),
        ("b'ab' + b'c'", b"abc"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("-(3)", -3),
        ("--3", 3),
        ("2.5 * 2.0", 5.0),
        ("0x10", 16),
    ],
)
def test_arithmetic(text, expected):
    assert ev(text) == expected


def test_int_division_truncates_toward_zero_on_fields():
    assert ev("a / b", a=-9, b=4) == -2
    assert ev("a % b", a=-9, b=4) == -1


def test_uint_literal_and_type():
    value = ev("1u + 2u")
    assert value == 3 and type(value) is UInt


def test_double_division_by_zero_is_ieee():
    assert ev("1.0 / 0.0") == math.inf
    assert ev("-1.0 / 0.0") == -math.inf
    assert math.isnan(ev("0.0 / 0.0"))


@pytest.mark.parametrize("text", ["a / 0", "a % 0"])
def test_int_division_by_zero_is_an_error(text):
    assert "by zero" in err(text, a=1)


@pytest.mark.parametrize(
    "text",
    [
        "9223372036854775807 + 1",
        "-9223372036854775808 - 1",
        "9223372036854775807 * 2",
        "-(-9223372036854775808)",
        "-9223372036854775808 / -1",
        "int(1e19)",
        "int(-1e19)",
        "int(a)",
    ],
)
def test_int_overflow(text):
    assert err(text, a=math.inf) == "int overflow"


def test_int64_bounds_are_fine():
    assert ev("9223372036854775806 + 1") == 2**63 - 1
    assert ev("-9223372036854775807 - 1") == -(2**63)


def test_uint_underflow():
    assert err("0u - 1u") == "uint overflow"


@pytest.mark.parametrize(
    ("text", "row", "message"),
    [
        ("a + 1", {"a": "x"}, "no such overload: string + int"),
        ("a + b", {"a": 1, "b": 1.0}, "no such overload: int + double"),
        ("a + 1", {"a": True}, "no such overload: bool + int"),
        ("a * 2", {"a": "x"}, "no such overload: string * int"),
        ("a + 1u", {"a": 1}, "no such overload: int + uint"),
        ("-a", {"a": "x"}, "no such overload: -string"),
        ("!a", {"a": 1}, "no such overload: !int"),
        ("a + b", {"a": None, "b": None}, "no such overload: null + null"),
        ("a + 1", {"a": None}, "no such overload: null + int"),
        ("a + b", {"a": None, "b": b"x"}, "no such overload: null + bytes"),
    ],
)
def test_no_implicit_conversions(text, row, message):
    assert err(text, **row) == message


def test_static_type_error_is_a_compile_error():
    with pytest.raises(FormulaError, match="no such overload: string \\+ int"):
        compile_formula('"a" + 1', [])


# -- null next to a string: contactsync's one deviation from CEL ----------------------------------


SEED = "(first_name + ' ' + last_name).trim()"


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [("Ann", "Lee", "Ann Lee"), ("Ann", None, "Ann"), (None, "Lee", "Lee"), (None, None, "")],
)
def test_the_seed_example_on_rows_with_missing_parts(first, last, expected):
    assert ev(SEED, first_name=first, last_name=last) == expected


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("a + b", {"a": "x", "b": None}, "x"),
        ("a + b", {"a": None, "b": "x"}, "x"),
        ("a + 'x'", {"a": None}, "x"),
        ("'x' + a", {"a": None}, "x"),
        ("'x' + null", {}, "x"),
        ("null + 'x'", {}, "x"),
        ("a + b", {"a": "", "b": None}, ""),
    ],
)
def test_null_next_to_a_string_counts_as_empty(text, row, expected):
    assert ev(text, **row) == expected


def test_other_nulls_keep_cel_semantics():
    assert err("a + b", a=None, b=None) == "no such overload: null + null"
    assert ev("a.size() > 0 || true", a=None) is True  # errors absorbed by ||, as before
    assert err("size(a)", a=None) == "no such overload: size(null)"
    assert err("a.contains('x')", a=None) == "no such overload: contains(null, string)"


def test_string_plus_null_is_statically_a_string():
    assert compile_formula("'a' + null", []).result_type == "string"
    assert compile_formula("x + null", ["x"]).result_type == "string"
    assert compile_formula("(x + ' ' + y).trim()", ["x", "y"]).result_type == "string"
    with pytest.raises(FormulaError, match="no such overload: null \\+ null"):
        compile_formula("null + null", [])
    with pytest.raises(FormulaError, match="no such overload: null \\+ int"):
        compile_formula("null + 1", [])


# -- equality and ordering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1.0", True),
        ("1 == 1u", True),
        ("1u == 1.0", True),
        ("1 == '1'", False),
        ("'1' != 1", True),
        ("null == null", True),
        ("[1, 2] == [1.0, 2u]", True),
        ("[1] == [1, 2]", False),
        ("{'a': 1} == {'a': 1.0}", True),
        ("{'a': 1} == {'b': 1}", False),
        ("b'a' == b'a'", True),
        ("true == true", True),
        ("1 < 1.5", True),
        ("2u > 1", True),
        ("-1 < 1u", True),
        ("'a' < 'b'", True),
        ("'b' <= 'a'", False),
        ("false < true", True),
        ("3 >= 3.0", True),
        ("0.0 / 0.0 == 0.0 / 0.0", False),
    ],
)
def test_equality_and_ordering(text, expected):
    assert ev(text) is expected


def test_bool_is_not_an_int_for_equality():
    assert ev("a == 1", a=True) is False
    assert ev("a == b", a=True, b=1) is False
    assert ev("[a] == [1]", a=True) is False


def test_ordering_across_types_is_an_error():
    assert err("a < 1", a="1") == "no such overload: string < int"
    assert err("a < b", a=True, b=1) == "no such overload: bool < int"
    assert err("a < b", a=None, b=None) == "no such overload: null < null"


def test_null_comparisons():
    assert ev("a == null", a=None) is True
    assert ev("a != null", a="x") is True
    assert ev("a == 'x'", a=None) is False


# -- logic -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bad() || true", True),
        ("true || bad()", True),
        ("bad() && false", False),
        ("false && bad()", False),
    ],
)
def test_logic_absorbs_errors_both_orders(text, expected):
    formula = text.replace("bad()", "(x / 0 == 1)")
    assert ev(formula, x=1) is expected


@pytest.mark.parametrize(
    "text",
    [
        "bad() || false",
        "false || bad()",
        "bad() && true",
        "true && bad()",
        "bad() || bad()",
        "bad() && bad()",
    ],
)
def test_logic_keeps_errors_when_the_other_side_does_not_decide(text):
    formula = text.replace("bad()", "(x / 0 == 1)")
    assert err(formula, x=1) == "division by zero"


def test_logic_with_dyn_operands():
    assert ev("a || b", a=False, b=True) is True
    assert ev("a && b", a=True, b=True) is True
    assert ev("a || b", a="x", b=True) is True  # non-bool is an error, absorbed by true
    assert ev("a && b", a="x", b=False) is False
    assert "no such overload" in err("a || b", a="x", b=False)
    assert "no such overload" in err("a && b", a=1, b=True)


def test_not():
    assert ev("!a", a=False) is True
    assert ev("!(1 < 2)") is False


def test_ternary():
    assert ev("a > 1 ? 'big' : 'small'", a=2) == "big"
    assert ev("a > 1 ? 'big' : 'small'", a=0) == "small"
    assert ev("a ? 1 : x / 0", a=True, x=1) == 1  # the branch not taken is not evaluated
    assert "expected bool" in err("a ? 1 : 2", a="yes")


def test_ternary_condition_must_be_bool_statically():
    with pytest.raises(FormulaError, match="must be bool"):
        compile_formula("1 ? 2 : 3", [])


# -- membership, size, access ----------------------------------------------------------------------


def test_in_lists_and_maps():
    assert ev("'FR' in ['FR', 'BE']") is True
    assert ev("a in ['FR', 'BE']", a="DE") is False
    assert ev("1 in [1.0]") is True
    assert ev("a in [1]", a=True) is False
    assert ev("'k' in m", m={"k": 1}) is True
    assert ev("'z' in m", m={"k": 1}) is False
    assert ev("1.0 in m", m={1: "x"}) is True
    assert ev("x in l", x=None, l=[None]) is True
    assert "no such overload" in err("'a' in s", s="abc")


def test_size_both_styles():
    assert ev("size('héllo')") == 5
    assert ev("'abc'.size()") == 3
    assert ev("size(b'ab')") == 2
    assert ev("l.size()", l=[1, 2]) == 2
    assert ev("size(m)", m={"a": 1}) == 1
    assert err("size(a)", a=None) == "no such overload: size(null)"


def test_map_and_list_access():
    row = {"m": {"city": "Paris", "n": {"k": 1}}, "l": [10, 20]}
    assert ev("m.city", **row) == "Paris"
    assert ev("m['city']", **row) == "Paris"
    assert ev("m.n.k", **row) == 1
    assert ev("l[1]", **row) == 20
    assert ev("l[1u]", **row) == 20
    assert err("m.zip", **row) == "no such key: zip"
    assert err("m['zip']", **row) == "no such key: zip"
    assert err("l[2]", **row) == "index out of range: 2"
    assert err("l[-1]", **row) == "index out of range: -1"
    assert ev("{1: 'a'}[1u]") == "a"


def test_has_on_maps_never_errors_for_a_missing_key():
    assert ev("has(m.city)", m={"city": None}) is True
    assert ev("has(m.zip)", m={"city": "x"}) is False
    assert ev("has(m.a.b)", m={"a": {}}) is False
    assert ev("has(m.zip) ? m.zip : 'none'", m={}) == "none"
    assert "needs a map" in err("has(m.zip)", m="x")


def test_has_needs_a_selection():
    with pytest.raises(FormulaError, match="has\\(\\) expects a field selection"):
        compile_formula("has(m)", ["m"])


def test_list_and_map_literals():
    assert ev("[a, 1, 'x']", a=None) == [None, 1, "x"]
    assert ev("{'a': 1, 'b': [2]}") == {"a": 1, "b": [2]}
    assert "repeated key" in err("{k: 1, 'a': 2}", k="a")
    with pytest.raises(FormulaError, match="map keys"):
        compile_formula("{1.5: 1}", [])


# -- macros ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("l.all(x, x > 0)", True),
        ("l.all(x, x > 1)", False),
        ("l.exists(x, x == 2)", True),
        ("l.exists(x, x == 9)", False),
        ("l.exists_one(x, x > 2)", True),
        ("l.exists_one(x, x > 1)", False),
        ("l.map(x, x * 2)", [2, 4, 6]),
        ("l.map(x, x > 1, x * 10)", [20, 30]),
        ("l.filter(x, x % 2 == 1)", [1, 3]),
        ("[].all(x, x > 0)", True),
        ("m.all(k, k.startsWith('a'))", True),
        ("m.map(k, m[k])", [1, 2]),
        ("l.map(x, l.filter(y, y > x).size())", [2, 1, 0]),
        ("l.exists(l, l == 3)", True),
    ],
)
def test_macros(text, expected):
    assert ev(text, l=[1, 2, 3], m={"a1": 1, "a2": 2}) == expected


def test_macros_absorb_errors_like_logic():
    row = {"l": [0, 1]}
    assert ev("l.exists(x, 1 / x == 1)", **row) is True  # the error on 0 is absorbed
    assert ev("l.all(x, 1 / x == 5)", **row) is False
    assert err("l.all(x, 1 / x == 1)", **row) == "division by zero"
    assert err("l.exists(x, x / 0 == 1)", **row) == "division by zero"


def test_macro_variable_shadows_a_field():
    assert ev("l.map(a, a + 1)", l=[1], a="field") == [2]


def test_macro_on_a_non_list_is_an_error():
    assert "cannot iterate" in err("s.all(x, true)", s="abc")


def test_macro_argument_checks():
    with pytest.raises(FormulaError, match="variable name"):
        compile_formula("l.all(1, true)", ["l"])
    with pytest.raises(FormulaError, match="takes 2"):
        compile_formula("l.all(x)", ["l"])
    with pytest.raises(FormulaError, match="is a macro"):
        compile_formula("all(l, x, true)", ["l"])


# -- conversions and types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int('42')", 42),
        ("int('-7')", -7),
        ("int(4.9)", 4),
        ("int(-4.9)", -4),
        ("int(3u)", 3),
        ("uint(3)", UInt(3)),
        ("double(2)", 2.0),
        ("double('2.5')", 2.5),
        ("string(42)", "42"),
        ("string(1.5)", "1.5"),
        ("string(2.0)", "2"),
        ("string(1e20)", "1e+20"),
        ("string(true)", "true"),
        ("string(b'abc')", "abc"),
        ("bool('true')", True),
        ("bool('0')", False),
        ("bytes('é')", "é".encode()),
        ("dyn(1) + 2", 3),
        ("string(duration('1h30m'))", "5400s"),
        ("string(duration('1.5s'))", "1.5s"),
        ("string(timestamp('2024-01-31T10:00:00+02:00'))", "2024-01-31T08:00:00Z"),
        ("int(timestamp('1970-01-01T00:01:00Z'))", 60),
        ("timestamp(60) == timestamp('1970-01-01T00:01:00Z')", True),
        ("type(1) == int", True),
        ("type('a') == string", True),
        ("type(1u) == uint", True),
        ("type(null) == null_type", True),
        ("type([]) == list", True),
        ("type(type(1)) == type", True),
        ("type(timestamp(0)) == google.protobuf.Timestamp", True),
        ("type(1) == double", False),
    ],
)
def test_conversions(text, expected):
    value = ev(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "row", "fragment"),
    [
        ("int(a)", {"a": "4.5"}, 'cannot convert "4.5" to int'),
        ("int(a)", {"a": None}, "no such overload: int(null)"),
        ("uint(a)", {"a": -1}, "uint overflow"),
        ("double(a)", {"a": "abc"}, "cannot convert"),
        ("bool(a)", {"a": "yes"}, "cannot convert"),
        ("string(a)", {"a": None}, "no such overload: string(null)"),
        ("string(a)", {"a": b"\xff"}, "not valid UTF-8"),
        ("timestamp(a)", {"a": "2024-13-01T00:00:00Z"}, "out of range"),
        ("timestamp(a)", {"a": "yesterday"}, "cannot parse"),
        ("duration(a)", {"a": "5 minutes"}, "cannot parse"),
    ],
)
def test_conversion_errors(text, row, fragment):
    assert fragment in err(text, **row)


# -- timestamps and durations ----------------------------------------------------------------------

TS = dt.datetime(2024, 3, 10, 23, 30, 15, 250000, tzinfo=dt.timezone.utc)  # a Sunday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t.getFullYear()", 2024),
        ("t.getMonth()", 2),
        ("t.getDate()", 10),
        ("t.getDayOfMonth()", 9),
        ("t.getDayOfWeek()", 0),
        ("t.getDayOfYear()", 69),
        ("t.getHours()", 23),
        ("t.getMinutes()", 30),
        ("t.getSeconds()", 15),
        ("t.getMilliseconds()", 250),
        ("t.getHours('Europe/Paris')", 0),
        ("t.getDate('Europe/Paris')", 11),
        ("t.getDayOfWeek('+02:00')", 1),
        ("t.getHours('-05:00')", 18),
        ("getFullYear(t)", 2024),
        ("duration('90m').getHours()", 1),
        ("duration('90m').getMinutes()", 90),
        ("d.getFullYear()", 1999),
        ("d.getMonth()", 11),
        ("d.getDayOfWeek()", 5),
        ("t + duration('1h') > t", True),
        ("t - timestamp('2024-03-10T00:00:00Z') == duration('23h30m15.25s')", True),
        ("(t - duration('24h')).getDate()", 9),
        ("d < date2", True),
    ],
)
def test_timestamps(text, expected):
    assert ev(text, t=TS, d=dt.date(1999, 12, 31), date2=dt.date(2000, 1, 1)) == expected


def test_timestamp_errors():
    assert "unknown time zone" in err("t.getHours('Mars/Base')", t=TS)
    assert "no such overload" in err("t.getHours()", t="2024-01-01")
    assert "no such overload" in err("t < d", t=TS, d=dt.date(2024, 1, 1))
    assert "timestamp overflow" in err("t + duration('87600000h')", t=TS)


# -- strings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s.contains('ll')", True),
        ("s.startsWith('He')", True),
        ("s.endsWith('lo')", True),
        ("s.matches('^H.*o$')", True),
        ("s.matches('l+')", True),
        ("matches(s, '^x')", False),
        ("s.charAt(1)", "e"),
        ("s.charAt(5)", ""),
        ("s.indexOf('l')", 2),
        ("s.indexOf('l', 3)", 3),
        ("s.indexOf('z')", -1),
        ("s.lastIndexOf('l')", 3),
        ("s.lastIndexOf('l', 2)", 2),
        ("'ÉcoLE'.lowerAscii()", "Écoole"[:0] + "École"),
        ("s.upperAscii()", "HELLO"),
        ("s.replace('l', 'L')", "HeLLo"),
        ("s.replace('l', 'L', 1)", "HeLlo"),
        ("'a,b,c'.split(',')", ["a", "b", "c"]),
        ("'a,b,c'.split(',', 2)", ["a", "b,c"]),
        ("'a,b,c'.split(',', 0)", []),
        ("s.substring(1)", "ello"),
        ("s.substring(1, 3)", "el"),
        ("'  x \\t'.trim()", "x"),
        ("['a', 'b'].join()", "ab"),
        ("['a', 'b'].join('-')", "a-b"),
        ("'a\\nb'", "a\nb"),
        ("r'a\\nb'", "a\\nb"),
        ("'\\x41\\u00e9'", "Aé"),
        ("'''multi\nline'''", "multi\nline"),
    ],
)
def test_strings(text, expected):
    assert ev(text, s="Hello") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("s.charAt(9)", "index out of range: 9"),
        ("s.substring(2, 1)", "invalid range"),
        ("s.substring(0, 9)", "index out of range"),
        ("s.indexOf('l', 9)", "index out of range"),
        ("[1].join()", "must be strings"),
        ("s.matches(s + '(')", 'invalid regular expression "Hello(": missing ): Hello('),
        ("n.contains('a')", "no such overload: contains(null, string)"),
    ],
)
def test_string_errors(text, fragment):
    assert fragment in err(text, s="Hello", n=None)

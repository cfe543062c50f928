"""contactsync's own formula functions: cleaning, conversion, null-in/null-out."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_contactsync.core.errors import FormulaError, RowError
from airflow_provider_contactsync.core.formulas import compile_formula

UTC = dt.timezone.utc


def ev(text: str, **row):
    return compile_formula(text, row.keys()).evaluate(row)


def err(text: str, **row) -> str:
    with pytest.raises(RowError) as info:
        ev(text, **row)
    return info.value.reason


NULL_IN_NULL_OUT = [
    "normalizeEmail",
    "normalizePhoneNumber",
    "trim",
    "lower",
    "upper",
    "asInt",
    "asFloat",
    "asBool",
    "asString",
    "asDate",
    "formatDate",
    "asTimestamp",
]


@pytest.mark.parametrize("name", NULL_IN_NULL_OUT)
def test_null_in_null_out_both_call_styles(name):
    assert ev(f"x.{name}()", x=None) is None
    assert ev(f"{name}(x)", x=None) is None


def test_normalize_email():
    assert ev("e.normalizeEmail()", e="  Ann.Lee@Example.COM ") == "ann.lee@example.com"
    assert ev("normalizeEmail(e)", e="a@b.c") == "a@b.c"
    assert err("e.normalizeEmail()", e=42) == "normalizeEmail: expected a string, got int 42"


@pytest.mark.parametrize(
    ("formula", "value", "expected"),
    [
        ("p.normalizePhoneNumber()", "+33 6 12 34 56 78", "+33612345678"),
        ("p.normalizePhoneNumber('FR')", "06 12 34 56 78", "+33612345678"),
        ("p.normalizePhoneNumber('fr')", "06.12.34.56.78", "+33612345678"),
        ("p.normalizePhoneNumber(['FR', 'BE', 'CH'])", "02 512 34 56", "+3225123456"),  # not valid in FR
        ("p.normalizePhoneNumber(['FR', 'BE', 'CH'])", "0470 12 34 56", "+33470123456"),  # valid in FR first
        ("p.normalizePhoneNumber(['CH', 'FR'])", "044 668 18 00", "+41446681800"),
        ("p.normalizePhoneNumber(['BE', 'FR'])", "+33 6 12 34 56 78", "+33612345678"),
        ("normalizePhoneNumber(p, 'FR')", "0612345678", "+33612345678"),
        ("p.normalizePhoneNumber(r)", "0612345678", "+33612345678"),  # regions from a field
    ],
)
def test_normalize_phone_number(formula, value, expected):
    assert ev(formula, p=value, r=["FR"]) == expected


def test_normalize_phone_number_errors():
    assert err("p.normalizePhoneNumber(['FR', 'BE', 'CH'])", p="12") == (
        'normalizePhoneNumber: "12" is not a valid phone number (tried FR, BE, CH)'
    )
    assert "international format expected" in err("p.normalizePhoneNumber()", p="06 12 34 56 78")
    assert "not a valid phone number" in err("p.normalizePhoneNumber('FR')", p="abc")
    assert "not a valid phone number" in err("p.normalizePhoneNumber('FR')", p="")
    assert "expected a string" in err("p.normalizePhoneNumber('FR')", p=33612345678)
    assert "regions must be" in err("p.normalizePhoneNumber(r)", p="0612345678", r=1)


def test_normalize_phone_number_unknown_region_is_a_compile_error():
    with pytest.raises(FormulaError, match="unknown region 'XX'") as info:
        compile_formula("p.normalizePhoneNumber(['FR', 'XX'])", ["p"])
    assert (info.value.line, info.value.column) == (1, 24)


def test_trim_lower_upper():
    assert ev("s.trim()", s="\t a b \n") == "a b"
    assert ev("s.lower()", s="ÉCOLE") == "école"
    assert ev("s.upper()", s="straße") == "STRASSE"
    assert err("s.trim()", s=1) == "trim: expected a string, got int 1"


def test_is_null_and_if_null():
    assert ev("x.isNull()", x=None) is True
    assert ev("isNull(x)", x="") is False  # empty and blank strings are not null
    assert ev("x.isNull()", x="   ") is False
    assert ev("x.isNull()", x=0) is False
    assert ev("x.ifNull('n/a')", x=None) == "n/a"
    assert ev("x.ifNull('n/a')", x="") == ""
    assert ev("ifNull(x, 0)", x=5) == 5
    assert ev("x.ifNull(1 / 0)", x=5) == 5  # the default is only evaluated when needed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("42", 42), (" 42 ", 42), ("-3", -3), ("+7", 7), (42, 42), (42.0, 42), ("42.0", 42), ("1e3", 1000)],
)
def test_as_int(value, expected):
    result = ev("x.asInt()", x=value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4.5", 'asInt: "4.5" is not an integer'),
        ("abc", 'asInt: "abc" is not an integer'),
        ("", 'asInt: "" is not an integer'),
        (4.5, "asInt: 4.5 is not an integer"),
        (True, "asInt: expected a string or a number, got bool true"),
        ("99999999999999999999", "int overflow"),
    ],
)
def test_as_int_errors(value, message):
    assert err("x.asInt()", x=value) == message


@pytest.mark.parametrize(("value", "expected"), [("4.5", 4.5), (" 4,5 ", 4.5), (3, 3.0), ("1e3", 1000.0)])
def test_as_float(value, expected):
    result = ev("x.asFloat()", x=value)
    assert result == expected and type(result) is float


def test_as_float_errors():
    assert err("x.asFloat()", x="1.2.3") == 'asFloat: "1.2.3" is not a number'
    assert err("x.asFloat()", x="1_000") == 'asFloat: "1_000" is not a number'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("oui", True),
        ("Non", False),
        (" y ", True),
        (True, True),
        (0, False),
        (1, True),
    ],
)
def test_as_bool(value, expected):
    assert ev("x.asBool()", x=value) is expected


def test_as_bool_errors():
    assert "is not a boolean" in err("x.asBool()", x="maybe")
    assert "is not a boolean" in err("x.asBool()", x=2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, "42"),
        (4.5, "4.5"),
        (4.0, "4"),
        (True, "true"),
        ("x", "x"),
        (b"ab", "ab"),
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31, 10, 0, tzinfo=UTC), "2024-01-31T10:00:00Z"),
        (dt.timedelta(seconds=90), "90s"),
    ],
)
def test_as_string(value, expected):
    assert ev("x.asString()", x=value) == expected


def test_as_string_refuses_containers():
    assert "expected a scalar value" in err("x.asString()", x=[1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", dt.date(2024, 1, 31)),
        (" 2024-01-31 ", dt.date(2024, 1, 31)),
        ("2024-01-31T10:00:00+02:00", dt.date(2024, 1, 31)),
        ("2024-01-31T10:00:00Z", dt.date(2024, 1, 31)),
        ("31/01/2024", dt.date(2024, 1, 31)),
        ("31-01-2024", dt.date(2024, 1, 31)),
        ("31.01.2024", dt.date(2024, 1, 31)),
        ("2024/01/31", dt.date(2024, 1, 31)),
        ("20240131", dt.date(2024, 1, 31)),
        (dt.date(2024, 1, 31), dt.date(2024, 1, 31)),
        (dt.datetime(2024, 1, 31, 23, 0, tzinfo=UTC), dt.date(2024, 1, 31)),
    ],
)
def test_as_date(value, expected):
    result = ev("x.asDate()", x=value)
    assert result == expected and type(result) is dt.date


def test_as_date_with_format_and_errors():
    assert ev("x.asDate('%m/%d/%Y')", x="01/31/2024") == dt.date(2024, 1, 31)
    assert err("x.asDate('%m/%d/%Y')", x="31/01/2024") == ('asDate: "31/01/2024" does not match the format "%m/%d/%Y"')
    assert "is not a date" in err("x.asDate()", x="tomorrow")
    assert "is not a date" in err("x.asDate()", x="2024-02-30")
    assert "expected a string, date or timestamp" in err("x.asDate()", x=5)


def test_format_date():
    assert ev("x.formatDate()", x=dt.date(2024, 1, 5)) == "2024-01-05"
    assert ev("x.formatDate('%d.%m.%Y')", x=dt.date(2024, 1, 5)) == "05.01.2024"
    assert ev("x.formatDate()", x=dt.datetime(2024, 1, 5, 8, tzinfo=UTC)) == "2024-01-05"
    assert ev("x.formatDate('%d/%m/%Y %H:%M')", x=dt.datetime(2024, 1, 5, 8, tzinfo=UTC)) == "05/01/2024 08:00"
    assert ev("x.asDate().formatDate('%Y')", x="05/01/2024") == "2024"
    assert ev("x.formatDate()", x="05/01/2024") == "2024-01-05"
    assert "expected a date or timestamp" in err("x.formatDate()", x=3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31T10:00:00Z", dt.datetime(2024, 1, 31, 10, tzinfo=UTC)),
        ("2024-01-31T10:00:00+02:00", dt.datetime(2024, 1, 31, 8, tzinfo=UTC)),
        ("2024-01-31 10:00:00", dt.datetime(2024, 1, 31, 10, tzinfo=UTC)),
        ("2024-01-31", dt.datetime(2024, 1, 31, tzinfo=UTC)),
        ("31/01/2024", dt.datetime(2024, 1, 31, tzinfo=UTC)),
        (0, dt.datetime(1970, 1, 1, tzinfo=UTC)),
        (dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, tzinfo=UTC)),
        (dt.datetime(2024, 1, 31, 10), dt.datetime(2024, 1, 31, 10, tzinfo=UTC)),
    ],
)
def test_as_timestamp(value, expected):
    result = ev("x.asTimestamp()", x=value)
    assert result == expected and result.tzinfo is not None


def test_as_timestamp_errors():
    assert "is not a timestamp" in err("x.asTimestamp()", x="soon")
    assert "out of range" in err("x.asTimestamp()", x=10**20)


def test_functions_chain_and_combine():
    row = {"first": " ann ", "last": "LEE", "age": "41"}
    assert ev("first.trim().upper() + ' ' + last.lower()", **row) == "ANN lee"
    assert ev("age.asInt() + 1", **row) == 42
    assert ev("age.asInt() >= 18 ? 'adult' : 'minor'", **row) == "adult"
    assert ev("missing.ifNull(first).trim()", missing=None, first=" x ") == "x"

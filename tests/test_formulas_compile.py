"""Compile-time behaviour: error positions, static types, the Transform contract, the registry."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_contactsync.core.errors import FormulaError, RowError
from airflow_provider_contactsync.core.formulas import (
    FUNCTIONS,
    Formula,
    Transform,
    check_transform,
    compile_formula,
    compile_transform,
    render_reference,
)

FIELDS = ["email", "phone", "first_name", "last_name", "age", "birthday", "tags", "address"]


def compile_error(text: str, fields=FIELDS, **kwargs) -> FormulaError:
    with pytest.raises(FormulaError) as info:
        compile_formula(text, fields, **kwargs)
    return info.value


# -- errors with positions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("email +", 1, 8, "unexpected end of formula"),
        ("email ++ phone", 1, 8, "syntax error: unexpected '+'"),
        ("email.normalizeEmail(\n  ) $ 1", 2, 5, "unexpected character '$'"),
        ("(email", 1, 7, "unexpected end of formula"),
        ("[1, 2", 1, 6, "unexpected end of formula"),
        ("email..trim()", 1, 7, "syntax error"),
    ],
)
def test_syntax_errors_have_positions(text, line, column, fragment):
    error = compile_error(text)
    assert (error.line, error.column) == (line, column)
    assert fragment in error.message


def test_unknown_field_with_suggestion_and_position():
    error = compile_error("first_name + ' ' + lastname")
    assert error.message == "unknown field 'lastname' (did you mean 'last_name'?)"
    assert (error.line, error.column) == (1, 20)


def test_unknown_field_on_a_later_line():
    error = compile_error("email.isNull()\n  || phnoe.isNull()")
    assert (error.line, error.column) == (2, 6)
    assert "did you mean 'phone'" in error.message


def test_unknown_field_without_suggestion():
    assert compile_error("zzz").message == "unknown field 'zzz'"


def test_unknown_function_with_suggestion():
    error = compile_error("email.normaliseEmail()")
    assert error.message == "unknown function 'normaliseEmail' (did you mean 'normalizeEmail'?)"
    assert (error.line, error.column) == (1, 7)
    assert compile_error("frobnicate(email)").message == "unknown function 'frobnicate'"


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        (
            "email.normalizeEmail(1)",
            7,
            "wrong number of arguments: x.normalizeEmail() takes 0 arguments, got 1",
        ),
        ("normalizeEmail()", 1, "wrong number of arguments: normalizeEmail() takes 1 argument, got 0"),
        (
            "phone.normalizePhoneNumber('FR', 'BE')",
            7,
            "wrong number of arguments: x.normalizePhoneNumber() takes 0 or 1 arguments, got 2",
        ),
        ("size(tags, 1)", 1, "wrong number of arguments: size() takes 1 argument, got 2"),
        ("email.isNull(1)", 7, "wrong number of arguments: x.isNull() takes 0 arguments, got 1"),
    ],
)
def test_wrong_arity(text, column, message):
    error = compile_error(text)
    assert error.message == message
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("email.isNull().trim()", "no such overload: trim(bool)"),
        ("age.asInt().normalizeEmail()", "no such overload: normalizeEmail(int)"),
        ("email.isNull() + 1", "no such overload: bool + int"),
        ("size(1)", "no such overload: size(int)"),
        ("email.isNull() < 'a'", "no such overload: bool < string"),
        ("'a' || email.isNull()", "|| needs bool operands, not string"),
        ("!'a'", "no such overload: !string"),
        ("-'a'", "no such overload: -string"),
        ("1 in 'abc'", "no such overload: int in string"),
        ("'abc'.x", "no field 'x' on a string value"),
        ("'abc'[0]", "cannot index a string value"),
        ("age.asInt().all(x, true)", "needs a list or a map, not int"),
        ("[1].all(x, 1)", "predicate of all() must be bool"),
        ("9223372036854775808", "int literal out of range"),
        ("Msg{a: 1}", "message construction"),
        ("trim", "is a function"),
        ("has(tags)", "expects a field selection"),
    ],
)
def test_static_type_errors(text, fragment):
    assert fragment in compile_error(text).message


def test_static_type_error_points_at_the_call():
    error = compile_error("email\n  .isNull()\n  .trim()")
    assert (error.line, error.column) == (3, 4)


def test_field_types_enable_more_checks():
    assert "trim(int)" in compile_error("age.trim()", field_types={"age": "int"}).message
    assert compile_formula("age.trim()", FIELDS).result_type == "string"  # dyn: checked per row instead


def test_empty_and_non_string_formulas():
    assert compile_error("  ").message == "empty formula"
    assert "must be a string" in compile_error(42).message  # type: ignore[arg-type]


# -- static result types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email.normalizeEmail()", "string"),
        ("phone.normalizePhoneNumber(['FR', 'BE'])", "string"),
        ("(first_name + ' ' + last_name).trim()", "string"),
        ("email.isNull() || phone.isNull()", "bool"),
        ("age.asInt()", "int"),
        ("age.asInt() + 1", "int"),
        ("age.asFloat() * 2.0", "double"),
        ("age.asBool()", "bool"),
        ("birthday.asDate()", "date"),
        ("birthday.asDate().formatDate()", "string"),
        ("birthday.asTimestamp()", "timestamp"),
        ("birthday.asTimestamp() - birthday.asTimestamp()", "duration"),
        ("1u", "uint"),
        ("b'x'", "bytes"),
        ("null", "null"),
        ("[1, 2]", "list"),
        ("{'a': 1}", "map"),
        ("tags.filter(t, t != '')", "list"),
        ("tags.exists(t, t == 'vip')", "bool"),
        ("email", "dyn"),
        ("address.city", "dyn"),
        ("email.ifNull('x')", "dyn"),
        ("age.asInt().ifNull(0)", "int"),
        ("age > 1 ? 'a' : 'b'", "string"),
        ("age > 1 ? 'a' : null", "string"),
        ("age > 1 ? 'a' : 1", "dyn"),
        ("type(email)", "dyn"),
        ("size(tags)", "int"),
        ("email + 'x'", "string"),
        ("string(age)", "string"),
        ("duration('1h')", "duration"),
    ],
)
def test_result_type(text, expected):
    assert compile_formula(text, FIELDS).result_type == expected


def test_result_type_uses_field_types():
    formula = compile_formula("age", FIELDS, field_types={"age": "int"})
    assert formula.result_type == "int"
    assert compile_formula("age + 1", FIELDS, field_types={"age": "int"}).result_type == "int"


def test_formula_attributes():
    formula = compile_formula("(first_name + ' ' + last_name).trim()", FIELDS)
    assert isinstance(formula, Formula)
    assert formula.text == "(first_name + ' ' + last_name).trim()"
    assert formula.fields_used == frozenset({"first_name", "last_name"})


def test_missing_field_in_the_row_is_null():
    assert compile_formula("email.isNull()", FIELDS).evaluate({}) is True


def test_evaluate_turns_unexpected_exceptions_into_row_errors():
    naive = dt.datetime(2024, 1, 1)
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(RowError, match="unexpected TypeError"):
        compile_formula("a < b", ["a", "b"]).evaluate({"a": naive, "b": aware})


# -- transforms ------------------------------------------------------------------------------------

TRANSFORM = {
    "email": "email.normalizeEmail()",
    "phone": "phone.normalizePhoneNumber(['FR', 'BE', 'CH'])",
    "full_name": "(first_name + ' ' + last_name).trim()",
    "missing": "email.isNull() || phone.isNull()",
    "age": "age.asInt()",
}


def test_transform_apply_happy_path():
    transform = compile_transform(TRANSFORM, FIELDS)
    assert isinstance(transform, Transform)
    row = {
        "email": " Ann@X.org",
        "phone": "06 12 34 56 78",
        "first_name": "Ann",
        "last_name": "Lee",
        "age": "42",
        "birthday": None,
        "tags": [],
        "address": {},
    }
    out, errors = transform.apply(row)
    assert errors == []
    assert out == {
        **row,
        "email": "ann@x.org",
        "phone": "+33612345678",
        "full_name": "Ann Lee",
        "missing": False,
        "age": 42,
    }
    assert row["email"] == " Ann@X.org"  # the input row is not modified


def test_transform_keeps_going_when_formulas_fail():
    transform = compile_transform(TRANSFORM, FIELDS)
    row = {"email": "a@b.c", "phone": "12", "first_name": "Ann", "last_name": 42, "age": "4.5"}
    out, errors = transform.apply(row)
    assert out == {"email": "a@b.c", "first_name": "Ann", "last_name": 42, "missing": False}
    assert [(e.field, e.value, e.reason) for e in errors] == [
        ("phone", "12", 'normalizePhoneNumber: "12" is not a valid phone number (tried FR, BE, CH)'),
        ("full_name", None, "no such overload: string + int"),
        ("age", "4.5", 'asInt: "4.5" is not an integer'),
    ]
    assert all(isinstance(e, RowError) for e in errors)


def test_transform_formulas_see_the_source_row_not_each_other():
    transform = compile_transform({"email": "email.upper()", "copy": "email"}, ["email"])
    out, _ = transform.apply({"email": "a"})
    assert out == {"email": "A", "copy": "a"}


def test_transform_never_raises_for_bad_data():
    transform = compile_transform(TRANSFORM, FIELDS)
    for row in ({}, {"email": 1, "phone": [], "age": {}}, {"first_name": b"x", "last_name": dt.date.today()}):
        out, errors = transform.apply(row)
        assert isinstance(out, dict) and all(isinstance(e, RowError) for e in errors)


def test_transform_types_and_output_fields():
    transform = compile_transform(TRANSFORM, FIELDS)
    assert transform.result_types == {
        "email": "string",
        "phone": "string",
        "full_name": "string",
        "missing": "bool",
        "age": "int",
    }
    assert transform.output_fields == FIELDS + ["full_name", "missing"]
    assert transform.formulas["age"].evaluate({"age": "7"}) == 7


def test_transform_reports_every_broken_formula():
    formulas = {"a": "email.trim(", "b": "email.normalizeEmail()", "c": "emial.trim()", "d": "nope(email)"}
    with pytest.raises(FormulaError) as info:
        compile_transform(formulas, FIELDS)
    error = info.value
    assert error.key_path == "transform.a"
    assert [e.key_path for e in error.errors] == ["transform.a", "transform.c", "transform.d"]
    assert error.errors[1].message == "unknown field 'emial' (did you mean 'email'?)"
    assert [e.key_path for e in check_transform(formulas, FIELDS)] == [
        "transform.a",
        "transform.c",
        "transform.d",
    ]
    assert check_transform(TRANSFORM, FIELDS) == []


def test_transform_tolerates_failures_of_fields_nothing_needs():
    transform = compile_transform(TRANSFORM, FIELDS, needed={"email", "phone"})
    assert transform.tolerated == {"full_name", "missing", "age"}
    row = {"email": "a@b.c", "phone": "12", "first_name": "Ann", "last_name": 42, "age": "4.5"}
    out, errors = transform.apply(row)
    assert "phone" not in out  # a needed field that failed is absent
    assert out["full_name"] is None and out["age"] is None  # tolerated ones are null
    rejecting, tolerated = transform.split(errors)
    assert [e.field for e in rejecting] == ["phone"]
    assert [(e.field, e.reason) for e in tolerated] == [
        ("full_name", "no such overload: string + int"),
        ("age", 'asInt: "4.5" is not an integer'),
    ]


def test_without_needed_every_formula_rejects():
    transform = compile_transform(TRANSFORM, FIELDS)
    assert transform.tolerated == frozenset()
    _, errors = transform.apply({"age": "x"})
    assert transform.split(errors) == (errors, [])


def test_strict_concat_keeps_cel_plus_for_those_formulas():
    formulas = {"ext_id": "'crm-' + id", "label": "'crm-' + id"}
    transform = compile_transform(formulas, ["id"], strict_concat={"ext_id"})
    out, errors = transform.apply({"id": None})
    assert out["label"] == "crm-"
    assert [(e.field, e.reason) for e in errors] == [("ext_id", "no such overload: string + null")]
    assert transform.apply({"id": "7"}) == ({"id": "7", "ext_id": "crm-7", "label": "crm-7"}, [])
    assert transform.result_types == {"ext_id": "string", "label": "string"}


# -- registry and reference ------------------------------------------------------------------------


def test_functions_registry():
    arities, description = FUNCTIONS["normalizePhoneNumber"]
    assert arities == frozenset({1, 2})
    assert "E.164" in description
    for name in (
        "normalizeEmail",
        "trim",
        "isNull",
        "ifNull",
        "asInt",
        "asFloat",
        "asBool",
        "asString",
        "lower",
        "upper",
        "asDate",
        "formatDate",
        "asTimestamp",
        "int",
        "uint",
        "double",
        "string",
        "bool",
        "bytes",
        "timestamp",
        "duration",
        "type",
        "dyn",
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "charAt",
        "indexOf",
        "lastIndexOf",
        "lowerAscii",
        "upperAscii",
        "replace",
        "split",
        "substring",
        "join",
    ):
        assert name in FUNCTIONS, name


def test_every_documented_example_compiles():
    from airflow_provider_contactsync.core.formulas.library import LIBRARY

    fields = [
        "email",
        "phone",
        "first_name",
        "last_name",
        "city",
        "country",
        "age",
        "score",
        "optin",
        "customer_id",
        "birthday",
        "signup",
        "last_order_at",
        "tags",
        "zip",
        "created",
        "code",
        "name",
        "x",
    ]
    for fn in LIBRARY.values():
        compile_formula(fn.example.split("//")[0], fields)


def test_render_reference_lists_every_function():
    text = render_reference()
    for name in FUNCTIONS:
        assert f"`{name}`" in text
    assert "`string.normalizePhoneNumber(list) -> string`" in text


def test_docs_reference_is_up_to_date():
    from pathlib import Path

    from airflow_provider_contactsync.core.formulas.reference import update_document

    doc = Path(__file__).resolve().parents[1] / "docs" / "formulas.md"
    text = doc.read_text(encoding="utf-8")
    assert update_document(text) == text, "run: python -m airflow_provider_contactsync.core.formulas.gen_docs"


def test_absurdly_nested_formula_is_a_formula_error():
    with pytest.raises(FormulaError, match="too complex|too deeply nested"):
        compile_formula(" + ".join(["a"] * 300), ["a"])


# -- dotted fields: nested documents read by the source as `address.city` -------------------------


def test_a_dotted_field_is_read_by_its_full_name():
    transform = compile_transform(
        {"city": "address.city.trim()", "zip": 'address.zip.ifNull("none")'}, fields=["address.city", "address.zip"]
    )
    row, errors = transform.apply({"address.city": " Paris ", "address.zip": None})
    assert (row["city"], row["zip"], errors) == ("Paris", "none", [])
    assert compile_formula("address.city.trim()", ["address.city"]).fields_used == {"address.city"}


def test_dotted_fields_do_not_collide_with_look_alike_names():
    fields = ["a.b_c", "a_b.c", "a__b.c", "a.b__c"]
    transform = compile_transform({f"out{i}": f for i, f in enumerate(fields)}, fields=fields)
    row, _ = transform.apply({f: f for f in fields})
    assert [row[f"out{i}"] for i in range(len(fields))] == fields


def test_a_whole_nested_field_still_selects_inside_the_map():
    formula = compile_formula("address.city", ["address"])
    assert formula.evaluate({"address": {"city": "Lyon"}}) == "Lyon"
    with pytest.raises(RowError, match="no such key: city"):
        formula.evaluate({"address": {}})


def test_an_unknown_dotted_field_is_named_whole_with_a_suggestion():
    error = compile_error("address.cty.trim()", fields=["address.city"])
    assert "unknown field 'address.cty'" in error.message and "did you mean 'address.city'" in error.message

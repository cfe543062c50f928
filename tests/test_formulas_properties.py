"""Property tests: int arithmetic matches Python ints within int64 and errors outside it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.core.formulas import compile_formula

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
ints = st.one_of(st.integers(INT_MIN, INT_MAX), st.integers(-1000, 1000), st.sampled_from([INT_MIN, INT_MAX, -1, 0, 1]))

FORMULAS = {op: compile_formula(f"a {op} b", ["a", "b"]) for op in ("+", "-", "*", "/", "%")}
EQ = compile_formula("a == b", ["a", "b"])
LT = compile_formula("a < b", ["a", "b"])


def expected(op: str, a: int, b: int) -> int | None:
    """Python's exact result under CEL rules (truncating division); None when CEL must error."""
    if op in ("/", "%") and b == 0:
        return None
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    elif op == "/":
        value = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    else:
        value = abs(a) % abs(b) * (1 if a >= 0 else -1)
    return value if INT_MIN <= value <= INT_MAX else None


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(FORMULAS)), a=ints, b=ints)
def test_int_arithmetic_matches_python_within_int64(op, a, b):
    want = expected(op, a, b)
    if want is None:
        with pytest.raises(RowError):
            FORMULAS[op].evaluate({"a": a, "b": b})
    else:
        got = FORMULAS[op].evaluate({"a": a, "b": b})
        assert got == want and type(got) is int


@settings(max_examples=200, deadline=None)
@given(a=ints, b=ints)
def test_division_identity(a, b):
    if b == 0 or (a == INT_MIN and b == -1):
        return
    q = FORMULAS["/"].evaluate({"a": a, "b": b})
    r = FORMULAS["%"].evaluate({"a": a, "b": b})
    assert q * b + r == a
    assert abs(r) < abs(b)


@settings(max_examples=200, deadline=None)
@given(a=st.one_of(ints, st.floats(allow_nan=False)), b=st.one_of(ints, st.floats(allow_nan=False)))
def test_numeric_equality_and_ordering_across_int_and_double(a, b):
    assert EQ.evaluate({"a": a, "b": b}) is (a == b)
    assert LT.evaluate({"a": a, "b": b}) is (a < b)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30), other=st.text(max_size=5))
def test_string_functions_match_python(text, other):
    row = {"s": text, "o": other}
    assert compile_formula("s + o", ["s", "o"]).evaluate(row) == text + other
    assert compile_formula("s.contains(o)", ["s", "o"]).evaluate(row) is (other in text)
    assert compile_formula("size(s)", ["s"]).evaluate(row) == len(text)
    assert compile_formula("s.trim()", ["s"]).evaluate(row) == text.strip()

"""parse_json, the sandbox's bounded JSON reader, against its definition: it accepts exactly the JSON
texts whose strings are valid Unicode and whose nesting is at most MAX_DEPTH, and then returns what
json.loads returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airflow_provider_contactsync.sandbox.errors import ApiError
from airflow_provider_contactsync.sandbox.jsonbody import MAX_DEPTH, parse_json

# Pieces that matter to the checks: quotes, backslashes and brackets inside strings, surrogate halves
# (alone or paired), an astral character, and letters that can follow a backslash to look like an escape.
TEXT = st.lists(
    st.sampled_from(
        ['"', "\\", "[", "]", "{", "}", "\ud83d", "\ude00", "\udbff", "\U0001f600", "é", "a", "\\u", "d800"]
    ),
    max_size=8,
).map("".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3))


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in strings(v))]
    return [value] if isinstance(value, str) else []


def valid_unicode(value: Any) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for s in strings(value) for c in s)


@settings(max_examples=400, deadline=None, database=None)
@example(value=["\\u\U0001f600d800"], wrap=0, ascii_only=True)  # "\\u\ud83d\ude00d800": no lone surrogate
@given(value=VALUES, wrap=st.integers(0, MAX_DEPTH + 3), ascii_only=st.booleans())
def test_accepts_exactly_valid_unicode_within_the_depth(value: Any, wrap: int, ascii_only: bool) -> None:
    for _ in range(wrap):
        value = [value]
    text = json.dumps(value, ensure_ascii=ascii_only)  # ascii: \uXXXX escapes; else raw (maybe surrogate) bytes
    body = text.encode("utf-8", "surrogatepass")
    # escaped halves next to each other are one character in JSON; raw surrogate bytes are never UTF-8
    unicode_ok = valid_unicode(json.loads(text)) if ascii_only else valid_unicode(value)
    expected = unicode_ok and depth(value) <= MAX_DEPTH
    try:
        parsed = parse_json(body)
    except ApiError as exc:
        assert not expected, exc.message
        assert exc.status == 400 and exc.code == "invalid_parameter"
    else:
        assert expected
        assert parsed == json.loads(text)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1,]", b"NaN", b"[Infinity]", b"-Infinity", b"[" * 100_000, b"]" * 5, b"\xff", b'"\\ud800"'],
)
def test_refuses_what_is_not_json(body: bytes) -> None:
    with pytest.raises(ApiError) as err:
        parse_json(body)
    assert err.value.status == 400 and err.value.code == "invalid_parameter"


def test_other_unicode_encodings_are_read_as_json_loads_reads_them() -> None:
    assert parse_json('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    assert parse_json('["\U0001f600"]'.encode("utf-32-le")) == ["\U0001f600"]

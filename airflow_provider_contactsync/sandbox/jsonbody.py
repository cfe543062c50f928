"""Request bodies as JSON, within bounds: whatever a client sends, a 400 or a value that is safe to keep.

``json.loads`` alone is not enough for a server: a deeply nested body recurses until a
``RecursionError`` (and a value nested just below that limit fails later, when it is encoded again),
``\\ud800`` decodes to a lone surrogate that SQLite and UTF-8 encoders refuse, and ``NaN`` or
``Infinity`` are not JSON. :func:`parse_json` refuses all of these with Brevo's 400
``invalid_parameter``. The checks cost a few percent of the parse on a 10 MB import body: the depth
is measured on the body's brackets with bytes operations, and surrogate escapes are looked at only
when the body has any.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import errors

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (Brevo's bodies nest at most 5 deep)."""

INVALID = "Input must be a valid json object"

_NOT_SKELETON = bytes(range(256)).translate(None, b'"[]{}')
_SURROGATE_ESCAPE = re.compile(r"\\u([dD][89a-fA-F][0-9a-fA-F]{2})")
_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_AMBIGUOUS = re.compile(r"\\\\u[dD][89a-fA-F]")  # "\\\\ud800": literal text, or "\\\\" and an escape?
_ESCAPES = re.compile(r"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; :class:`~.errors.ApiError` 400 ``invalid_parameter`` when it is not
    valid JSON, not valid Unicode (a lone surrogate, raw or escaped), nests deeper than
    :data:`MAX_DEPTH`, or uses ``NaN``/``Infinity``."""
    try:
        encoding = json.detect_encoding(body)
        text = body.decode(encoding)  # strict: invalid UTF-8 and raw surrogates are refused here
    except UnicodeDecodeError:
        raise errors.invalid(f"{INVALID} (the body is not valid UTF-8)") from None
    depth = _depth_over(body if encoding == "utf-8" else text.encode("utf-8", "surrogatepass"), MAX_DEPTH)
    if depth is True:
        raise errors.invalid(f"{INVALID} (nested deeper than {MAX_DEPTH} levels)")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # unbalanced and deep: the skeleton check could not tell
        raise errors.invalid(f"{INVALID} (nested deeper than {MAX_DEPTH} levels)") from None
    except ValueError:
        raise errors.invalid(INVALID) from None
    if _SURROGATE_ESCAPE.search(text):
        lone = _lone_surrogate(text)
        if lone is not None:
            raise errors.invalid(f"{INVALID} (lone surrogate \\u{lone} in a string: not valid Unicode)")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_over(body: bytes, limit: int) -> bool | None:
    """True when ``body`` nests arrays/objects deeper than ``limit``, False when not, None when its
    brackets do not balance (not JSON: the parser says why)."""
    if b"\\" in body:  # escaped quotes must not end a string: drop every escaped \ and "
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(None, _NOT_SKELETON).replace(b'""', b"")
    if b'"' in skeleton:  # strings holding brackets: keep what lies outside the quotes
        skeleton = b"".join(skeleton.split(b'"')[::2])
    for _ in range(limit):  # each round removes the innermost level everywhere
        if not skeleton:
            return False
        size = len(skeleton)
        # mark first, then drop: "[{}]" loses only its inner pair this round
        skeleton = skeleton.replace(b"{}", b"x").replace(b"[]", b"x").replace(b"x", b"")
        if len(skeleton) == size:
            return None
    return True if skeleton else False


def _lone_surrogate(text: str) -> str | None:
    """The first ``\\uD800``-``\\uDFFF`` escape of ``text`` that is not half of a pair, if any."""
    if _AMBIGUOUS.search(text):
        return _scan_escapes(text)
    # Every "\\uD..." is an escape here (none follows another backslash): mask the pairs, look for a rest
    # (masked, not removed: removing could join a "\\" before a pair with the letters after it).
    match = _SURROGATE_ESCAPE.search(_SURROGATE_PAIR.sub("#", text))
    return match.group(1) if match else None


def _scan_escapes(text: str) -> str | None:
    """:func:`_lone_surrogate` one escape at a time, telling escapes from escaped backslashes."""
    pending: str | None = None  # a high surrogate waiting for its low half
    pending_end = -1
    for match in _ESCAPES.finditer(text):
        if len(match.group(1)) % 2 == 0:  # "\\\\ud800": an escaped backslash, then the letters
            continue
        code = match.group(2)
        low = code[1].lower() in "cdef"
        if pending is not None:
            if low and match.start() == pending_end and len(match.group(1)) == 1:
                pending = None
                continue
            return pending
        if low:
            return code
        pending, pending_end = code, match.end()
    return pending

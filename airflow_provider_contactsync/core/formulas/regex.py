"""Regular expressions on RE2 (google-re2): the syntax CEL specifies, matched in linear time.

Python's ``re`` backtracks, so ``(a+)+$`` against ``"aaaa…!"`` takes exponential time; RE2
never does. Every pattern the formula library applies to data goes through :class:`Regex`:
``matches()`` (literal patterns compiled once with the formula, patterns read from data through a
bounded cache) and the library's own parsers. Each program is capped at
:data:`~.limits.REGEX_MAX_MEM`.
"""

from __future__ import annotations

import functools

import re2
from re2 import _re2

from .limits import REGEX_CACHE_SIZE, REGEX_MAX_MEM

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


class RegexError(ValueError):
    """A pattern RE2 refuses; ``reason`` says why in the user's terms."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _options(capture: bool) -> re2.Options:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False
    options.never_capture = not capture
    return options


_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


def _explain(error: str) -> str:
    """RE2's message, with what to write instead for the constructs Python's ``re`` has and RE2 lacks."""
    if error == "pattern too large - compile failed":
        return (
            f"too large: its RE2 program needs more than {REGEX_MAX_MEM >> 20} MiB (the limit per regular "
            "expression); use fewer or smaller repetitions"
        )
    detail = error.partition(": ")[2]
    if error.startswith("invalid perl operator") and detail.startswith(_LOOKAROUND):
        return f"lookahead and lookbehind are not supported in RE2 syntax: {detail}"
    if error.startswith("invalid escape sequence") and detail[1:2].isdigit():
        return f"backreferences are not supported in RE2 syntax: {detail}"
    if error.startswith("invalid escape sequence") and detail == "\\Z":
        return "\\Z is not RE2 syntax: use \\z or $"
    if error.startswith("invalid repetition size"):
        return f"{error} (RE2 allows at most 1000 repetitions)"
    return error


class Regex:
    """One compiled pattern; matching is linear in the text and never raises."""

    __slots__ = ("pattern", "_re")

    def __init__(self, pattern: str, *, capture: bool = False) -> None:
        self.pattern = pattern
        try:
            encoded = pattern.encode("utf-8")
        except UnicodeEncodeError:
            raise RegexError("not valid Unicode (it holds a lone surrogate)") from None
        compiled = _re2.RE2(encoded, _options(capture))
        if not compiled.ok():
            raise RegexError(_explain(compiled.error().decode("utf-8", "replace")))
        # An unanchored search also runs the pattern backwards; RE2 builds that program lazily and,
        # when it is over the memory limit, reports no match. Build it now so that can't happen.
        if compiled.ReverseProgramSize() < 0:
            raise RegexError(_explain("pattern too large - compile failed"))
        self._re = compiled

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return self._re.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    def fullmatch(self, text: str) -> tuple[str | None, ...] | None:
        """The groups when the pattern matches the whole of ``text`` (``()`` without groups), else None."""
        data = text.encode("utf-8", "surrogatepass")
        spans = self._re.Match(_ANCHOR_BOTH, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        return tuple(
            None if start < 0 else data[start:end].decode("utf-8", "surrogatepass") for start, end in spans[1:]
        )

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


@functools.lru_cache(maxsize=REGEX_CACHE_SIZE)
def cached(pattern: str) -> Regex | str:
    """``matches()``'s pattern compiled, or the reason it can't be (kept too, so a bad pattern on
    every row is refused without compiling it again)."""
    try:
        return Regex(pattern)
    except RegexError as exc:
        return exc.reason

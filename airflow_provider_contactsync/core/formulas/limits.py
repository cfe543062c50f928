"""Limits that keep compiling a formula, and running it on a row, bounded whatever the input.

A formula is written once and runs on every row, so the compile-time limits are generous for
real formulas and only stop text no one writes by hand; the run-time ones turn a row whose data
would make a formula run away into a row error. docs/formulas.md ("Limits") lists them for users.
"""

from __future__ import annotations

#: Longest formula, in characters. Parsing costs ~10-30 µs per token, so this bounds the compile
#: time of one formula to well under a second; a lookup table of 250 countries is ~6,000.
MAX_FORMULA_CHARS = 10_000

#: Deepest nesting of operators, calls, indexes, lists, maps and ``?:`` branches (parentheses
#: alone do not count). The compiler recurses once per level, and the Python it generates needs up
#: to two brackets per level, under Python's own limit of 200.
MAX_DEPTH = 64

#: Comprehensions (``all exists exists_one map filter``) inside another's predicate or step. Each
#: level can multiply the work per row by the length of a list.
MAX_COMPREHENSION_NESTING = 3

#: Work per formula and row that a comprehension repeats for every element: elements visited by
#: comprehensions inside it, and row fields read again there (a list element or map entry is a
#: step, so are 64 characters of text). One pass over a list is free. About a second of work.
MAX_NESTED_STEPS = 1_000_000

#: Longest text ``replace()`` may build: the one function whose result can be much larger than its
#: arguments (``s.replace("", t)`` is ``size(s) * size(t)``).
MAX_REPLACE_CHARS = 10_000_000

#: Memory for one regular expression's compiled program (RE2's ``max_mem``; RE2 also keeps its
#: matching cache within it, falling back to a slower linear-time matcher when that is full).
REGEX_MAX_MEM = 1 << 20

#: Longest regular expression read from data, in characters (a literal one is part of its formula).
MAX_REGEX_CHARS = MAX_FORMULA_CHARS

#: Regular expressions kept compiled (patterns read from data, and literal ones at compile time).
REGEX_CACHE_SIZE = 64

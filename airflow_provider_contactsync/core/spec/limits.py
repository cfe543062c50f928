"""How much work one definition file may ask for: every limit, its value, why, and what to do instead.

The dag-processor reads every definition of a folder in one DAG file, within Airflow's DAG-file
timeout (``[core] dagbag_import_timeout``, 30 s by default): one file that takes longer, or
crashes the process, removes every contactsync DAG. So reading a file is bounded before any
Python object is built from it (docs/adr/0003-broken-definition-isolation.md). Each limit is far
above what a real definition needs (a few kB, a few hundred values, nesting about 6 deep); a file
over one is taken for a mistake, and its error names the limit.

The two limits that bound the amount of data can be raised with an environment variable, set
wherever definitions are read (dag-processor, workers, the ``contactsync`` command); the others
protect the parser itself and are fixed. Formulas have limits of their own (length, nesting, work per
row: ``core/formulas/limits.py``). Rendered into docs/definition-reference.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One limit: its default, the environment variable that raises it (if any), and its story."""

    name: str
    default: int
    unit: str
    what: str
    why: str
    instead: str
    env: str | None = None

    @property
    def value(self) -> int:
        """The limit in force: the environment variable when set to a positive integer, else the default."""
        if self.env is None:
            return self.default
        raw = os.environ.get(self.env, "").strip()
        return int(raw) if raw.isdigit() and int(raw) > 0 else self.default

    def raise_hint(self) -> str:
        """How to get under it, and how to raise it where that makes sense."""
        hint = self.instead
        if self.env is not None:
            hint += f"; or raise the limit with the environment variable {self.env}"
        return hint


DEFINITION_SIZE = Limit(
    name="definition size",
    default=64,
    unit="kB",
    what="Size of one definition file; its text after alias expansion may be 4 times that.",
    why="A definition is one to five kB; reading, validating and checking a file costs time in "
    "proportion to its size, in the dag-processor's one DAG file for every definition.",
    instead="move large data (long value lists, big pipelines or queries) into the source, e.g. a view",
    env="CONTACTSYNC_MAX_DEFINITION_KB",
)

EXPANDED_TEXT_FACTOR = 4
"""Text after alias expansion: at most this many times the size limit (256 kB by default). An alias to
a long string counts one value but all its characters: 138 aliases to a list of 138 aliases to a 32 kB
string are 19,000 values holding 600 MB of text, which every check of every string would read."""

YAML_VALUES = Limit(
    name="YAML values",
    default=20_000,
    unit="values",
    what="Values in a file (each key, scalar, list and mapping), an alias (``*name``) counting as "
    "every value it stands for.",
    why="Aliases let a few hundred bytes stand for billions of values (a 'billion laughs' file). Reading "
    "the file does not expand them; values are counted as they are built, so such a file stops here.",
    instead="write fewer values, or use fewer aliases to big anchors",
    env="CONTACTSYNC_MAX_YAML_VALUES",
)

YAML_DEPTH = Limit(
    name="YAML nesting",
    default=64,
    unit="levels",
    what="Nesting depth of lists and mappings.",
    why="A definition nests about 6 deep (a Mongo pipeline about 12); the checks walk nested data "
    "recursively, and thousands of levels would exhaust Python's stack.",
    instead="flatten the data",
)

QUERY_LENGTH = Limit(
    name="query length",
    default=20_000,
    unit="characters",
    what="Length of ``source.query``.",
    why="The query is parsed on every read of the definition to check that it is one SELECT.",
    instead="create a view holding the query and read it with table:",
)

QUERY_DEPTH = Limit(
    name="query nesting",
    default=25,
    unit="levels",
    what="Nesting of parentheses and subqueries in ``source.query``.",
    why="The SQL parser is recursive; deeper queries would exhaust Python's stack.",
    instead="create a view holding the query and read it with table:",
)

ERRORS_SHOWN = Limit(
    name="errors shown",
    default=50,
    unit="errors",
    what="Problems listed for one file (the rest are counted).",
    why="The problems of every file become one Airflow import error; thousands of lines from one "
    "file would bury the others.",
    instead="fix the first ones: most problems of a file share a cause",
)

LIMITS = (DEFINITION_SIZE, YAML_VALUES, YAML_DEPTH, QUERY_LENGTH, QUERY_DEPTH, ERRORS_SHOWN)

"""Generated bad inputs (issue 11) and the harness that runs them: tests/test_bad_inputs.py asserts
that each one ends well, benchmarks/bad_inputs.py tallies how they end.

Channels: ``contactsync validate``, the DAG factory's parse, ``contactsync preview``, DAG runs of a
file source. Kinds: YAML bombs and nesting, mistyped values, queries, hostile identifiers and
formulas (definitions); broken encodings, NUL bytes, sizes, quoting, JSON (rows and whole files);
values Brevo refuses.
"""

from __future__ import annotations

from functools import cache

from .cases import CHANNELS, GOOD_OUTCOMES, OUTCOMES, Case


@cache
def all_cases() -> tuple[Case, ...]:
    """Every case, definitions first, DAG runs last (each case's inputs are made when it runs)."""
    from .dag_runs import dag_run_cases
    from .definitions import definition_cases
    from .rows import row_cases

    cases = (*definition_cases(), *row_cases(), *dag_run_cases())
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, duplicates
    return cases


@cache
def cases_by_name() -> dict[str, Case]:
    return {case.name: case for case in all_cases()}


__all__ = ["CHANNELS", "GOOD_OUTCOMES", "OUTCOMES", "Case", "all_cases", "cases_by_name"]

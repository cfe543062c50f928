"""Issue 11: every generated bad input ends as a clear error or a per-row reject (tests/bad_inputs/).

Definitions (YAML bombs and nesting, mistyped values, queries, hostile identifiers, formulas)
through ``contactsync validate`` and the DAG factory's parse; CSV and JSON lines files (encodings,
NUL bytes, sizes, quoting, deep JSON, huge integers, lone surrogates, emails Brevo refuses, formulas
that run away on a row) through ``contactsync preview``; a subset through real DAG runs of a file
source. Never a traceback, never a hang (a 60 s guard per case), never a silent drop.

Cases run in one long-lived worker process (bad_inputs.harness.Worker), not a process per case;
``benchmarks/bad_inputs.py`` prints the tally of how they end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from bad_inputs import CHANNELS, all_cases
from bad_inputs.cases import Case
from bad_inputs.harness import Worker

CASES = all_cases()


@pytest.fixture(scope="session")
def bad_input_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the session: Airflow imported, its database migrated and a sandbox started once."""
    with Worker(tmp_path_factory.mktemp("bad-inputs")) as worker:
        yield worker


def _param(case: Case) -> object:
    marks = [pytest.mark.slow] if case.channel == "dag_run" else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input_ends_well(case: Case, bad_input_worker: Worker) -> None:
    result = bad_input_worker.run(case)
    assert result.outcome in case.good, (
        f"{case.name} ended as {result.outcome}, expected {' or '.join(sorted(case.good))}:\n{result.detail}"
    )


def test_the_cases_cover_the_issue_list() -> None:
    names = {case.name for case in CASES}
    assert len(CASES) >= 200
    assert Counter(case.channel for case in CASES).keys() == set(CHANNELS)
    for channel in ("validate", "parse"):
        for what in (
            "yaml/billion_laughs_9x9",
            "yaml/billion_laughs_map_10x7_unknown_key",
            "yaml/quadratic_list_aliases",
            "yaml/recursive_alias_seq",
            "yaml/deep_flow_seq_3000",
            "yaml/deep_flow_seq_10000",
            "value/encoding_klingon",
            "value/encoding_rot13",
            "value/safety_lag_true",
            "value/safety_lag_1e20",
            "value/update_existing_yes",
            "value/list_ids_listtrue",
            "query/escapes_wrapper_postgres",
            "identifier/source_name_quote",
            "identifier/source_name_semicolon",
            "identifier/source_name_unicode",
            "identifier/source_name_nul",
            "identifier/source_name_long_10k",
            "formula/nested_exists_30",
            "formula/formula_100kb",
        ):
            assert f"{channel}/{what}" in names
    for what in (
        "formula/regex_literal_nested_plus",
        "formula/regex_from_data_catastrophic",
        "formula/nested_exists_30",
        "formula/formula_100kb",
        "formula/deep_parens_1000",
        "csv/latin1_line_in_utf8",
        "csv/cp1252_file",
        "csv/utf16_file",
        "csv/invalid_utf8_continuation",
        "csv/binary_garbage_middle",
        "csv/nul_in_name",
        "csv/field_10mb_quoted_newlines",
        "csv/unterminated_quote_middle",
        "csv/million_column_header",
        "csv/header_40k_columns_duplicates",
        "jsonl/nesting_10000",
        "jsonl/int_5000_digits_id",
        "jsonl/int_above_2_64_id",
        "jsonl/lone_surrogate_high",
        "email/refused_a@b.c",
        "email/refused_a@1.2",
    ):
        assert f"preview/{what}" in names
    assert 8 <= sum(case.channel == "dag_run" for case in CASES) <= 15


def test_a_case_over_the_deadline_is_a_hang_and_the_worker_comes_back(tmp_path: Path) -> None:
    """The harness itself: a hang is reported as one and the next case runs in a new worker."""
    hanging = next(case for case in CASES if case.name == "preview/formula/regex_literal_nested_plus")
    quick = next(case for case in CASES if case.name == "validate/value/encoding_klingon")
    with Worker(tmp_path, deadline=0.001) as worker:
        result = worker.run(hanging)
        assert result.outcome == "hang"
        worker.deadline = 60
        assert worker.run(quick).outcome == "clear error"
        assert worker.restarts == 1

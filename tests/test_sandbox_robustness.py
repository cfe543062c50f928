"""Robustness of the sandbox over Brevo's whole contacts and processes API: schemathesis sends valid and
invalid requests (wrong types, out-of-range numbers, ids beyond int64, odd Unicode, missing fields) to
every operation of the spec, including those the sandbox does not implement, and every answer must be
a non-5xx with Brevo's error shape for errors, no traceback and no error in the sandbox's log.

Bounded (a few examples per operation and mode, derandomized) so it stays fast; conformance to the
spec's schemas is test_sandbox_schema's job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from airflow_provider_contactsync.sandbox import BrevoSandbox
from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

SPEC = Path(__file__).parent / "data" / "brevo-openapi.yaml"
EXAMPLES = 5


def operations() -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_path(SPEC).include(path_regex=r"^/(contacts|processes)")
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = operations()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrevoSandbox]:
    """One sandbox for the module, with a few contacts so generated ids and emails sometimes exist."""
    with BrevoSandbox(tmp_path_factory.mktemp("robustness") / "brevo.sqlite3", "key", **FAST_SETTINGS) as sandbox:
        with httpx.Client(base_url=sandbox.url, headers={"api-key": "key"}) as client:
            for i in range(3):
                client.post("/contacts", json={"email": f"user{i}@example.com", "listIds": [2]})
        yield sandbox


@pytest.mark.parametrize("mode", list(GenerationMode), ids=[m.value for m in GenerationMode])
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_5xx_and_brevo_errors_only(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    sandbox: BrevoSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_contactsync.sandbox")
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=sandbox.url, headers={"api-key": sandbox.api_key})
        where = f"{case.method} {case.formatted_path} {case.query or ''} {case.body!r:.300}"
        problem = None
        if response.status_code >= 500:
            problem = "a server error"
        elif "Traceback" in response.text:
            problem = "a traceback"
        elif response.status_code >= 400:
            try:
                body = json.loads(response.content)
            except ValueError:
                body = None
            if not (isinstance(body, dict) and isinstance(body.get("code"), str) and body.get("message")):
                problem = "not Brevo's error shape"
        if problem:
            failures.append(f"{problem}: {where} -> {response.status_code} {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        pytest.skip(f"no {mode.value} request exists for {operation.label}")
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures and not logged, "\n".join(failures[:5] + logged[:5])

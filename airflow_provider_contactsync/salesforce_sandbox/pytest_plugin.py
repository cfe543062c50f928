"""pytest fixtures: a started Salesforce sandbox on a fresh database for each test.

Enable with ``pytest_plugins = ["airflow_provider_contactsync.salesforce_sandbox.pytest_plugin"]``.
The fixtures point ``REQUESTS_CA_BUNDLE`` at the sandbox CA bundle for the test (certifi's CAs plus the
sandbox's), so simple-salesforce and the ``SalesforceHook`` verify its certificate. A test gives the hook
a connection with ``monkeypatch.setenv("AIRFLOW_CONN_<ID>", salesforce_sandbox.airflow_connection())``,
or a subprocess ``salesforce_sandbox.environ(conn_id)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import SalesforceSandbox


@pytest.fixture
def salesforce_sandbox_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SalesforceSandbox]]:
    """Start sandboxes with other settings: ``salesforce_sandbox_factory(page_size=500)``; stopped at
    teardown. ``db_path`` may be passed too (reuse one to test persistence)."""
    started: list[SalesforceSandbox] = []

    def make(**options: Any) -> SalesforceSandbox:
        db_path = options.pop("db_path", tmp_path / f"salesforce-{len(started)}.sqlite3")
        sandbox = SalesforceSandbox(db_path, **options)
        sandbox.start()
        started.append(sandbox)
        if sandbox.ca_bundle:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sandbox.ca_bundle))
        return sandbox

    yield make
    for sandbox in reversed(started):
        if sandbox._server is not None:
            sandbox.stop()


@pytest.fixture
def salesforce_sandbox(salesforce_sandbox_factory: Callable[..., SalesforceSandbox]) -> SalesforceSandbox:
    """A started sandbox on a fresh DB in tmp_path: ``.base_url``, ``.airflow_connection()``, helpers."""
    return salesforce_sandbox_factory()

"""pytest fixtures: a started Brevo sandbox on a fresh database for each test.

Enable with ``pytest_plugins = ["airflow_provider_contactsync.sandbox.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import BrevoSandbox
from .settings import FAST_SETTINGS

TEST_API_KEY = "xkeysib-sandbox-test-key"


@pytest.fixture
def brevo_sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., BrevoSandbox]]:
    """Start sandboxes with other settings: ``brevo_sandbox_factory(contacts_rps=2)``; stopped at teardown.

    Fast settings (no import delay, limits that never trigger) unless overridden; ``db_path`` and
    ``api_key`` may be passed too (reuse a ``db_path`` to test persistence).
    """
    started: list[BrevoSandbox] = []

    def make(**settings: Any) -> BrevoSandbox:
        db_path = settings.pop("db_path", tmp_path / f"brevo-{len(started)}.sqlite3")
        api_key = settings.pop("api_key", TEST_API_KEY)
        sandbox = BrevoSandbox(db_path, api_key, **{**FAST_SETTINGS, **settings})
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in reversed(started):
        if sandbox._server is not None:
            sandbox.stop()


@pytest.fixture
def brevo_sandbox(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> BrevoSandbox:
    """A started sandbox on a fresh DB in tmp_path: ``.url`` is the /v3 base URL, ``.api_key`` the key."""
    return brevo_sandbox_factory()

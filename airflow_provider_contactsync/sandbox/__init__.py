"""A local Brevo API v3 for demos and tests: stdlib HTTP server + SQLite, no Airflow imports.

``BrevoSandbox(db_path, api_key).start()`` (or the ``contactsync-sandbox`` command, or the
``brevo_sandbox`` pytest fixture) serves the contacts, segments and processes endpoints contactsync
uses, with Brevo's paths, validation, error bodies and rate-limit headers, plus fault injection, a
request log, what a contact or Brevo's web app would do (unsubscribe, define a segment) and export
files under ``/_sandbox/``.
"""

from __future__ import annotations

from .errors import ApiError
from .server import BrevoSandbox
from .settings import Settings

__all__ = ["ApiError", "BrevoSandbox", "Settings"]

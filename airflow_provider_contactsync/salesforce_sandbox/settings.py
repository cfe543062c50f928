"""Run-time knobs of the Salesforce sandbox: one typed object, changed only through :meth:`Settings.update`.

The CLI flags, ``/_sandbox/config`` and ``SalesforceSandbox.configure`` all mean the same thing.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Settings:
    """Defaults mimic a Salesforce org; tests lower them to provoke limits."""

    page_size: int = 2000
    """Records per REST query page (``Sforce-Query-Options: batchSize=n`` may ask for fewer, at least 200)."""
    daily_api_limit: int = 1_000_000
    """REST calls (login excluded) per 24 hours, then 403 ``REQUEST_LIMIT_EXCEEDED``; reported in
    ``Sforce-Limit-Info`` and ``/limits``. A Developer Edition org has 15,000."""
    bulk_job_seconds: float = 0.0
    """How long a Bulk 2.0 query job stays UploadComplete/InProgress before JobComplete."""
    session_seconds: float = 7200.0
    """A session expires after this many seconds without a call (then 401 ``INVALID_SESSION_ID``)."""
    cursor_seconds: float = 900.0
    """A queryMore locator expires after this many seconds without use (then ``INVALID_QUERY_LOCATOR``)."""
    composite_max_records: int = 200
    """Most records in one composite/sobjects call."""
    slow_ms: int = 0
    """Delay every answer by this many milliseconds."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest request body: more is 413."""
    read_timeout: float = 60.0
    """Seconds a client may take to send a request or read an answer."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, **changes: Any) -> dict[str, Any]:
        """Apply known settings (type-converted); ``ValueError`` naming any unknown or bad one."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            kind = type(getattr(self, name))
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"setting {name}: cannot use {value!r}")
            try:
                converted[name] = kind(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"setting {name}: cannot use {value!r} ({exc})") from None
            if not (math.isfinite(converted[name]) and converted[name] >= 0):
                raise ValueError(f"setting {name}: must be a number >= 0")
        for name in ("page_size", "composite_max_records", "read_timeout", "session_seconds", "cursor_seconds"):
            if name in converted and converted[name] <= 0:
                raise ValueError(f"setting {name}: must be more than 0")
        with self._lock:
            for name, value in converted.items():
                setattr(self, name, value)
        return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

"""Run-time settings of the sandbox: one typed object, changed only through :meth:`Settings.update`.

Every knob a test may want to turn (rate limits, import delay, random faults) lives here so the
CLI flags, the ``/_sandbox/config`` endpoint and ``BrevoSandbox.configure`` all mean the same thing.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

_AT_MOST = {"read_timeout": 86_400, "idle_timeout": 86_400, "import_delay": 86_400, "slow_ms": 86_400_000}
"""Durations are capped at a day: a wait of 1e30 seconds is a typo, and too long for the OS."""


@dataclass
class Settings:
    """Sandbox knobs; defaults mimic Brevo's general tier."""

    contacts_rps: int = 10
    contacts_per_hour: int = 36_000
    other_per_hour: int = 100
    rate_429: float = 0.0
    fault_5xx: float = 0.0
    fault_drop: float = 0.0
    slow_ms: int = 0
    import_delay: float = 2.0
    process_running_status: str = "in_process"
    max_import_bytes: int = 10 * 1024 * 1024
    request_log_size: int = 10_000
    read_timeout: float = 60.0
    """Seconds a request (line, headers, body) may take to arrive once it started: then 408."""
    idle_timeout: float = 75.0
    """Seconds an idle keep-alive connection is kept open (nginx's default)."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest request body accepted: a larger one is answered 413 without being read."""
    max_batch_contacts: int = 1000
    """Most contacts in one ``POST /contacts/batch`` (Brevo documents no maximum): more is 400
    ``out_of_range``."""
    doi_template_ids: list[int] = field(default_factory=lambda: list(range(1, 11)))
    """The account's double opt-in templates: another ``templateId`` in ``POST
    /contacts/doubleOptinConfirmation`` is 400."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, **changes: Any) -> dict[str, Any]:
        """Apply known settings (type-converted); raise ``ValueError`` naming any unknown or bad one."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            kind = type(getattr(self, name))
            if kind is list:
                converted[name] = _id_list(name, value)
                continue
            try:
                converted[name] = kind(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"setting {name}: cannot use {value!r} ({exc})") from None
            if kind in (int, float) and not (math.isfinite(converted[name]) and converted[name] >= 0):
                raise ValueError(f"setting {name}: must be a number >= 0")
        for name in ("read_timeout", "idle_timeout"):
            if name in converted and converted[name] == 0:
                raise ValueError(f"setting {name}: must be more than 0")
        for name, most in _AT_MOST.items():
            if name in converted and converted[name] > most:
                raise ValueError(f"setting {name}: at most {most} (a day)")
        for name in ("rate_429", "fault_5xx", "fault_drop"):
            if name in converted and converted[name] > 1:
                raise ValueError(f"setting {name}: a fraction between 0 and 1")
        with self._lock:
            for name, value in converted.items():
                setattr(self, name, value)
        return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _id_list(name: str, value: Any) -> list[int]:
    """Ids from a list of integers or a comma-separated string (``"1,2,3"``, as the CLI passes them)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"setting {name}: a list of ids, not {value!r}")
    out = []
    for item in items:
        if isinstance(item, str) and item.strip().isascii() and item.strip().isdigit():
            item = int(item.strip())
        if not isinstance(item, int) or isinstance(item, bool) or not 0 < item < 2**63:
            raise ValueError(f"setting {name}: {item!r} is not an id (a positive integer)")
        out.append(item)
    return out


FAST_SETTINGS: dict[str, Any] = {
    "contacts_rps": 10_000,
    "contacts_per_hour": 10_000_000,
    "other_per_hour": 10_000_000,
    "import_delay": 0.0,
}
"""Settings for tests: no waiting for imports, limits that never trigger unless a test lowers them."""

"""Fault injection: the failures a real network and a busy Brevo produce, on demand.

Deterministic rules (``{"method": "POST", "path": "/v3/contacts/import", "action": "status",
"status": 503, "times": 1}``) come first, then the random rates from the settings. ``drop_after``
closes the socket *after* the request was processed, so the client cannot know whether it happened.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .settings import Settings

ACTIONS = ("status", "drop_before", "drop_after", "delay")


@dataclass
class Fault:
    """What to do to one request: ``action`` with its ``status``/``ms``."""

    action: str
    status: int = 503
    ms: int = 0
    body: dict[str, Any] | None = None
    rule_id: int | None = None


@dataclass
class Rule:
    action: str
    method: str | None = None
    path: str | None = None
    status: int = 503
    ms: int = 0
    times: int | None = None
    body: dict[str, Any] | None = None
    id: int = 0
    hits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path:
            if self.path.endswith("*"):
                return path.startswith(self.path[:-1])
            return path == self.path
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "ms": self.ms,
            "times": self.times,
            "hits": self.hits,
        }


class Faults:
    """The active rules plus the random fault rates of the settings."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, **spec: Any) -> dict[str, Any]:
        """Add a rule; ``path`` is exact unless it ends with ``*`` (prefix); ``times`` None = forever."""
        action = spec.get("action")
        if action == "drop":
            action = "drop_before"
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)} (got {action!r})")
        unknown = set(spec) - {"action", "method", "path", "status", "ms", "times", "body"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        times = spec.get("times")
        rule = Rule(
            action=action,
            method=spec.get("method"),
            path=spec.get("path"),
            status=int(spec.get("status", 503)),
            ms=int(spec.get("ms", 0)),
            times=int(times) if times is not None else None,
            body=spec.get("body"),
        )
        if action == "status" and not 100 <= rule.status <= 599:
            raise ValueError("status must be an HTTP status code")
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule.as_dict()

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def pick(self, method: str, path: str) -> list[Fault]:
        """The faults for this request: at most one rule (first match), else the random ones."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path) and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return [Fault(rule.action, rule.status, rule.ms, rule.body, rule.id)]
        s = self.settings
        out: list[Fault] = []
        if s.slow_ms:
            out.append(Fault("delay", ms=s.slow_ms))
        if s.fault_drop and self._rng.random() < s.fault_drop:
            out.append(Fault(self._rng.choice(("drop_before", "drop_after"))))
        elif s.fault_5xx and self._rng.random() < s.fault_5xx:
            out.append(Fault("status", status=self._rng.choice((500, 502, 503, 504))))
        return out

"""Fault injection: a status, a delay or a dropped connection for the requests a rule matches.

``add(method="GET", path="/services/data/v*/query*", action="status", status=503, times=1)``; ``path``
is a shell-style pattern (``fnmatch``) on the request path without its query string. The first rule
that matches and has uses left applies. ``drop_after`` closes the connection *after* the request was
processed, so the client cannot know whether it happened.
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
from dataclasses import dataclass
from typing import Any

ACTIONS = ("status", "drop_before", "drop_after", "delay")

DEFAULT_BODIES: dict[int, list[dict[str, str]]] = {
    401: [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    403: [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    500: [
        {
            "message": "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1234567890)",
            "errorCode": "UNKNOWN_EXCEPTION",
        }
    ],
    503: [{"message": "Server temporarily unavailable.", "errorCode": "SERVER_UNAVAILABLE"}],
}
"""What Salesforce answers with these statuses; another status gets a generic body."""


def default_body(status: int) -> list[dict[str, str]]:
    if status in DEFAULT_BODIES:
        return DEFAULT_BODIES[status]
    code = "SERVER_UNAVAILABLE" if status >= 500 else "BAD_REQUEST"
    return [{"message": f"Sandbox injected fault ({status})", "errorCode": code}]


@dataclass
class Rule:
    action: str
    method: str | None = None
    path: str | None = None
    status: int = 503
    ms: int = 0
    times: int | None = None
    body: Any = None
    id: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)

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
    """The active rules, checked in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, **spec: Any) -> dict[str, Any]:
        """Add a rule; ``times`` None means every matching request."""
        unknown = set(spec) - {"action", "method", "path", "status", "ms", "times", "body"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        action = spec.get("action", "status")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)} (got {action!r})")
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
        if not 100 <= rule.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if rule.ms < 0 or (rule.times is not None and rule.times < 1):
            raise ValueError("ms must be >= 0 and times >= 1")
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

    def pick(self, method: str, path: str) -> Rule | None:
        """The rule for this request (its use counted), if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path) and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return rule
        return None

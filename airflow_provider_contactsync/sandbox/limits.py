"""Authentication and Brevo's two rate-limit buckets.

``/v3/contacts*`` has a per-second and a per-hour window; every other /v3 path (including
``/processes``) shares a small hourly budget. Fixed windows, as the ``x-sib-ratelimit-*`` headers
describe them: ``reset`` is the number of seconds left in the window that binds first. A 429 forced
by the ``rate_429`` setting is a transient one: ``remaining`` 0 and ``reset`` 1, whatever the bucket.
"""

from __future__ import annotations

import hmac
import math
import random
import threading
import time
from dataclasses import dataclass

from .errors import ApiError
from .settings import Settings


def check_api_key(expected: str, given: str | None) -> None:
    if given is None or not hmac.compare_digest(expected.encode(), given.encode()):
        raise ApiError(401, "unauthorized", "Key not found")


@dataclass
class _Window:
    length: float
    started: float | None = None
    used: int = 0

    def roll(self, now: float) -> None:
        if self.started is None or now - self.started >= self.length:
            self.started = now
            self.used = 0

    def left(self, now: float) -> float:
        return self.length if self.started is None else max(0.0, self.length - (now - self.started))


class RateLimiter:
    """Counts requests per bucket and answers the headers to send (and whether to refuse with 429)."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._windows = {
            "contacts_s": _Window(1.0),
            "contacts_h": _Window(3600.0),
            "other_h": _Window(3600.0),
        }

    @staticmethod
    def bucket(path: str) -> str:
        return "contacts" if path == "/v3/contacts" or path.startswith("/v3/contacts/") else "other"

    def reset(self) -> None:
        with self._lock:
            for window in self._windows.values():
                window.started, window.used = None, 0

    def hit(self, path: str) -> tuple[bool, dict[str, str]]:
        """Count one request on ``path``: (allowed, headers)."""
        now = time.monotonic()
        s = self.settings
        if self.bucket(path) == "contacts":
            pairs = [("contacts_s", s.contacts_rps), ("contacts_h", s.contacts_per_hour)]
        else:
            pairs = [("other_h", s.other_per_hour)]
        with self._lock:
            for name, _ in pairs:
                self._windows[name].roll(now)
            allowed = all(self._windows[name].used < limit for name, limit in pairs)
            forced = allowed and s.rate_429 > 0 and self._rng.random() < s.rate_429
            if allowed and not forced:
                for name, _ in pairs:
                    self._windows[name].used += 1
            if forced:
                # A random 429 stands for a burst over the per-second limit, which clears within a second;
                # a client told to wait for an hourly window (3600 s) would stall on a transient fault.
                limit, remaining, reset = pairs[0][1], 0, 1
            else:
                # Report the window closest to running out (the one a client must respect first).
                name, limit = min(pairs, key=lambda p: (p[1] - self._windows[p[0]].used, self._windows[p[0]].length))
                window = self._windows[name]
                remaining = max(0, limit - window.used)
                reset = max(1, math.ceil(window.left(now))) if remaining == 0 else math.ceil(window.left(now))
        headers = {
            "x-sib-ratelimit-limit": str(limit),
            "x-sib-ratelimit-remaining": str(remaining),
            "x-sib-ratelimit-reset": str(reset),
        }
        return allowed and not forced, headers

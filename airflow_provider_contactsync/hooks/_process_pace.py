"""When to look first at a Brevo import process: as soon as it can usefully be complete.

A fixed first poll (2 s) dominated small runs: a 1,000-contact import is processed in a fraction
of a second, yet the load slept 2 s before asking. Brevo's process documents carry no timing, so
the only evidence is our own: how many bytes each import body had, when Brevo accepted it, and how
long earlier imports of this hook took. The first poll of a wait comes when the largest pending
body should be done at the rate last observed (a prior before any observation), never sooner than
``floor`` and never later than the connection's ``poll_interval`` (the ceiling, so a slow account
is never polled later than before). Polls after the first double from there (the hook's schedule),
and the hook still stretches them when Brevo's rate-limit headers say the /processes budget
(100 requests/hour) would run dry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_FIRST_POLL = 0.1
"""Seconds: earlier than this a poll can only find the process queued."""

PRIOR_BYTES_PER_SECOND = 2_000_000.0
"""Import speed assumed before anything was observed: a 1,000-contact body (~150 kB) is polled at
the floor, an 8 MB body at the ceiling. Replaced by the speed observed once one wait ended."""


@dataclass
class ProcessPace:
    """Submission sizes and times of import processes, and the import speed last observed."""

    ceiling: float
    floor: float = MIN_FIRST_POLL
    bytes_per_second: float = PRIOR_BYTES_PER_SECOND
    _submitted: dict[int, tuple[float, int]] = field(default_factory=dict)

    def submitted(self, process_id: int, at: float, size: int) -> None:
        """Brevo accepted a body of ``size`` bytes at ``at`` (monotonic seconds) as ``process_id``."""
        self._submitted[int(process_id)] = (at, size)

    def first_wait(self, process_ids: Sequence[int], now: float) -> float | None:
        """Seconds to wait before the first poll, or None when no process of the wait is ours."""
        known = [self._submitted[pid] for pid in process_ids if pid in self._submitted]
        if not known:
            return None
        due = max(at + size / self.bytes_per_second for at, size in known)
        return min(self.ceiling, max(self.floor, due - now))

    def finished(self, process_ids: Sequence[int], now: float) -> None:
        """The processes were found complete at ``now``: learn the speed, forget them.

        ``now - at`` is an upper bound of each process's time (it ended before the poll that saw
        it), so the fastest body's speed is the best lower bound of Brevo's speed; later bodies may
        have queued behind earlier ones.
        """
        speeds = []
        for pid in process_ids:
            at, size = self._submitted.pop(int(pid), (None, 0))
            if at is not None and now > at and size > 0:
                speeds.append(size / (now - at))
        if speeds:
            self.bytes_per_second = max(speeds)

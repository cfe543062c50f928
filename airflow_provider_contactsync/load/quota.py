"""The monthly operations quota of an integration (the Salesforce seed: 100,000 operations a month).

Every create, update and delete an integration's sources make in Brevo counts as one operation, per
integration and calendar month (UTC). At ``quota.warn_at`` of the limit (80%) the alert addresses get
one email a month; a run that would go past the limit sends nothing and fails, the integration stops
for the rest of the month (every later run of any of its sources fails before reading or sending),
and a second email says so. Raising ``quota.operations_per_month`` lifts the stop; the next month
starts from 0 by itself. Why runs fail rather than the DAG being paused: docs/adr/0011-operations-quota.md.

**Where usage lives.** An Airflow Variable per integration and month,
``contactsync_quota__<integration>__<YYYY-MM>``, holding JSON: ``used``, ``warned_at``, ``stopped_at``
(with ``stopped_limit``, the limit in force then, and ``stopped_by``) and ``reserved`` (operations runs
in progress have been allowed). Not the asset state store: that is keyed by one source's asset, and
the quota is shared by every source of the integration. A new month is a new Variable, so nothing
has to reset the count; old months stay readable.

**Not atomic.** Variables have no compare-and-set: two DAGs of one integration loading at the same
moment each read, then write, the same Variable. The check is kept conservative instead: before
sending, a run re-reads the Variable and *reserves* its planned operations in it, and each run's check
counts the others' reservations (younger than :data:`RESERVATION_HOURS`); right after settling it
re-reads again, adds what Brevo really did and drops its reservation. What is left is the moment
between one read and its write (milliseconds), not the whole load.

The clock is :func:`utc_now`, looked up at each call, so tests move it across a month's end.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "contactsync_quota__"

RESERVATION_HOURS = 24
"""A reservation older than this (its run died without settling) no longer counts."""

OPERATIONS = ("created", "updated", "deleted", "unlinked", "blacklisted", "recovered")
"""The run-summary counts that are operations in Brevo: contacts created or updated (``recovered``: those a
crashed attempt of the run delivered, created or updated), and contacts removed (deleted, unlinked from
this source's lists, blacklisted). List and consent changes ride with a contact's update; unchanged,
skipped and refused contacts made no write."""


def utc_now() -> dt.datetime:
    """The quota's clock (tests replace it)."""
    return dt.datetime.now(dt.timezone.utc)


def month_of(moment: dt.datetime) -> str:
    """The calendar month (UTC) of a moment, as ``YYYY-MM``."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m")


def month_end(month: str) -> dt.datetime:
    """The first instant of the month after ``month`` (UTC): when its quota starts again from 0."""
    year, number = (int(part) for part in month.split("-"))
    return dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=dt.timezone.utc)


def variable_key(integration: str, month: str) -> str:
    return f"{VARIABLE_PREFIX}{integration}__{month}"


def operations_of(counts: Mapping[str, Any]) -> int:
    """The operations a run made in Brevo, from its summary's counts (:data:`OPERATIONS`)."""
    return sum(int(counts.get(name) or 0) for name in OPERATIONS)


class QuotaExhaustedError(AirflowFailException):
    """The integration reached its monthly quota: the run fails (not retried), nothing sent.

    The quota email has been sent (this run, or the run that stopped the integration this month), so the
    task-failure email is not sent again for it (``alerts``'s failure notifier reads the flag below).
    """

    contactsync_alert_sent = True


@dataclass
class MonthUsage:
    """One integration's operations in one month, as kept in its Variable."""

    integration: str
    month: str
    used: int = 0
    warned_at: str | None = None
    stopped_at: str | None = None
    stopped_limit: int | None = None
    stopped_by: str | None = None
    reserved: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, integration: str, month: str, raw: str | None) -> MonthUsage:
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ValueError(f"Variable {variable_key(integration, month)} does not hold a JSON object")
        return cls(
            integration,
            month,
            used=int(data.get("used") or 0),
            warned_at=data.get("warned_at"),
            stopped_at=data.get("stopped_at"),
            stopped_limit=data.get("stopped_limit"),
            stopped_by=data.get("stopped_by"),
            reserved=dict(data.get("reserved") or {}),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "used": self.used,
                "warned_at": self.warned_at,
                "stopped_at": self.stopped_at,
                "stopped_limit": self.stopped_limit,
                "stopped_by": self.stopped_by,
                "reserved": self.reserved,
            },
            sort_keys=True,
        )

    def reserved_by_others(self, run: str | None, now: dt.datetime) -> int:
        """Operations other runs in progress were allowed and have not settled yet."""
        oldest = now - dt.timedelta(hours=RESERVATION_HOURS)
        return sum(
            int(entry.get("operations") or 0)
            for name, entry in self.reserved.items()
            if name != run and dt.datetime.fromisoformat(str(entry.get("at"))) >= oldest
        )

    def flagged(self, limit: int) -> bool:
        """The integration was stopped this month under this limit (or a higher one): the email went out."""
        return self.stopped_at is not None and self.stopped_limit is not None and limit <= self.stopped_limit

    def stopped(self, limit: int) -> bool:
        return self.used >= limit or self.flagged(limit)

    def share(self, limit: int) -> str:
        """``used`` as a percentage of ``limit``, rounded down (79.99% is not shown as 80%)."""
        tenths = self.used * 1000 // limit
        return f"{tenths // 10}.{tenths % 10}%" if tenths % 10 else f"{tenths // 10}%"


@dataclass
class QuotaCheck:
    """The answer before sending: ``reason`` says why the run may not send (None: it may)."""

    usage: MonthUsage
    limit: int
    planned: int
    reason: str | None = None
    newly_stopped: bool = False  # this check stopped the integration: the email is to be sent


@dataclass
class QuotaSettled:
    """After settling: the month's usage, and which emails are due."""

    usage: MonthUsage
    limit: int
    operations: int
    warn: bool = False
    newly_stopped: bool = False


Reader = Callable[[str], "str | None"]
Writer = Callable[[str, str], None]


def _read_variable(key: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=None)


def _write_variable(key: str, value: str) -> None:
    from airflow.sdk import Variable

    Variable.set(key, value, description="contactsync: operations of an integration in a month (UTC)")


class MonthlyQuota:
    """The quota of one integration, read and written from inside a task.

    :param integration: the integration's name.
    :param limit: operations a month (``quota.operations_per_month``).
    :param warn_at: share of the limit at which the warning email goes out.
    :param read, write: how the Variable is read and written (the Task SDK's ``Variable`` by default).
    """

    def __init__(
        self,
        integration: str,
        limit: int,
        warn_at: float = 0.8,
        *,
        read: Reader = _read_variable,
        write: Writer = _write_variable,
    ) -> None:
        self.integration = integration
        self.limit = limit
        self.warn_at = warn_at
        self._read = read
        self._write = write

    @classmethod
    def of(cls, definition: Any, **kwargs: Any) -> MonthlyQuota | None:
        """The quota of a definition's integration, or None when it has none (``quota_or_default``)."""
        quota = definition.quota_or_default
        if quota is None:
            return None
        return cls(definition.integration, quota.operations_per_month, quota.warn_at, **kwargs)

    def usage(self, month: str | None = None) -> MonthUsage:
        """The month's usage (this month by default), read now."""
        month = month or month_of(utc_now())
        return MonthUsage.from_json(self.integration, month, self._read(variable_key(self.integration, month)))

    def room(self, run: str | None = None) -> int:
        """Operations left this month for ``run`` (the others' reservations taken off); 0 when stopped."""
        now = utc_now()
        usage = self.usage(month_of(now))
        if usage.stopped(self.limit):
            return 0
        return max(0, self.limit - usage.used - usage.reserved_by_others(run, now))

    def check(self, planned: int, *, run: str | None = None, source: str = "", write: bool = True) -> QuotaCheck:
        """May a run make ``planned`` operations now? Re-reads the Variable.

        Allowed (``write``): the operations are reserved for ``run``. Refused: the integration is stopped
        for the month; the first refusal under this limit records it (``newly_stopped``: the caller emails).
        ``write=False`` (dry runs) only answers.

        :param source: who asks (the DAG id), named in the stop's record.
        """
        now = utc_now()
        month = month_of(now)
        usage = self.usage(month)
        others = usage.reserved_by_others(run, now)
        result = QuotaCheck(usage, self.limit, planned)
        if usage.stopped(self.limit):
            result.reason = self._stopped_reason(usage)
        elif planned > 0 and usage.used + others + planned > self.limit:
            busy = f" ({others:,} more reserved by runs in progress)" if others else ""
            result.reason = (
                f"this run would make {planned:,} operations (creates, updates and deletes) and integration "
                f"{self.integration} has used {usage.used:,}{busy} of its {self.limit:,} for {month} (UTC), so it "
                f"would go past quota.operations_per_month; nothing was sent. {self._until(month)}"
            )
            usage.stopped_by = f"{source or 'a run'} needed {planned:,} operations"
        if result.reason is None:
            if write and run is not None and planned > 0:
                usage.reserved[run] = {"operations": planned, "at": now.isoformat()}
                self._save(usage)
            return result
        if not usage.flagged(self.limit):
            result.newly_stopped = True
            usage.stopped_at = now.isoformat()
            usage.stopped_limit = self.limit
            usage.stopped_by = usage.stopped_by or f"{usage.used:,} operations used"
            if run is not None:
                usage.reserved.pop(run, None)
            if write:
                self._save(usage)
        return result

    def settle(self, operations: int, *, run: str | None = None, month: str | None = None) -> QuotaSettled:
        """Add what a run really did to its month (the month of its check), drop its reservation, and say
        which emails are due: the warning once a month, the stop once per limit. Re-reads the Variable."""
        now = utc_now()
        usage = self.usage(month or month_of(now))
        usage.used += operations
        dropped = run is not None and usage.reserved.pop(run, None) is not None
        changed = operations > 0 or dropped
        result = QuotaSettled(usage, self.limit, operations)
        if usage.warned_at is None and usage.used >= self.limit * Fraction(str(self.warn_at)):
            usage.warned_at = now.isoformat()
            result.warn = changed = True
        if usage.used >= self.limit and not usage.flagged(self.limit):
            usage.stopped_at = now.isoformat()
            usage.stopped_limit = self.limit
            usage.stopped_by = f"{usage.used:,} operations used"
            result.newly_stopped = changed = True
        if changed:
            self._save(usage)
        return result

    def summary(self, usage: MonthUsage) -> dict[str, Any]:
        """The run summary's quota lines."""
        return {"quota used": usage.used, "quota limit": self.limit, "quota month": usage.month}

    def _save(self, usage: MonthUsage) -> None:
        self._write(variable_key(self.integration, usage.month), usage.to_json())

    def _stopped_reason(self, usage: MonthUsage) -> str:
        when = f" on {usage.stopped_at[:10]}" if usage.stopped_at else ""
        why = f" ({usage.stopped_by})" if usage.stopped_by else ""
        return (
            f"integration {self.integration} reached its monthly operations quota for {usage.month} (UTC){when}"
            f"{why}: {usage.used:,} of {self.limit:,} operations used; nothing is synced. "
            f"{self._until(usage.month)}"
        )

    def _until(self, month: str) -> str:
        return (
            f"Syncing of integration {self.integration} stops until {month_end(month):%Y-%m-%d %H:%M} UTC, when a "
            "new month starts from 0, or until quota.operations_per_month is raised."
        )

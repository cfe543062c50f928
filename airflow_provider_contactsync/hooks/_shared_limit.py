"""Brevo's per-account rate limits shared by every process that syncs into the account, through Redis.

Brevo meters requests per account, but each :class:`~._brevo_http.BrevoHttp` only knows its own: two
loads into one account (two DAGs, two Celery workers) each spend the whole budget and collect 429s.
With the connection extra ``shared_rate_limit``, every request first takes a place in Redis, in one
log per account, endpoint group (``contacts``, ``general``) and window (1 s, 1 h). No Airflow import
at module level, and the clock can be injected, so the windows are tested without waiting. Why it
works this way: docs/adr/0015-shared-rate-limits.md.

* A **sliding-window log**, not a token bucket: Brevo counts in fixed windows that start when it
  likes, and a bucket of ``limit`` tokens refilled at ``limit`` per window lets ``2 x limit``
  through across a window edge. Admitting a request only while fewer than ``limit`` admission times
  (a sorted set) fall in the last window allows at most ``limit`` in *any* window of that length, so
  in each of Brevo's too, wherever they start.
* **One Lua script** checks every window of the group and records the request in all of them, or
  in none: a refused request costs nothing, and two workers can't both take the last place.
* **Redis's clock** (``TIME`` in the script), so workers on machines whose clocks drift agree.
* Keys hold a **hash** of the account (base URL and API key, or the ``account`` name), never the key.
* **Fail open**: when Redis can't be reached, requests go out as they did without the extra (each
  process paced by Brevo's headers, 429s waited out and retried, which is safe: a 429 proves Brevo
  did nothing). One warning per outage; Redis is tried again every ``REDIS_RETRY_SECONDS``.
  Configuration mistakes (an unknown Redis connection, the redis provider missing, a password or
  ACL Redis refuses) are not outages: they raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError

KEY_PREFIX = "contactsync:brevo-rate"
REDIS_TIMEOUT_SECONDS = 2.0
"""Connect and read timeout for the limiter's Redis calls: a hung Redis delays a request this long, once."""
REDIS_RETRY_SECONDS = 30.0
"""After Redis failed, requests go out unshared this long before Redis is tried again."""

KEEP_MS = 60_000
"""Entries are kept this long past the caller's window, so a connection with a longer margin still sees them."""

# KEYS: one sorted set per window. ARGV[1]: now in ms ('' = Redis's clock); ARGV[2]: this request's
# member; ARGV[3]: KEEP_MS; then per key: limit, window length in ms. A request is in a window when
# its time is after now - window. Returns {1, 0} when the request is recorded in every window, else
# {0, ms to wait} and nothing is recorded.
_ACQUIRE_SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local keep = tonumber(ARGV[3])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local since = string.format('(%d', now - window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window - keep)
  local used = redis.call('ZCOUNT', key, since, '+inf')
  if used >= limit then
    local freeing = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT', used - limit, 1)
    local w = tonumber(freeing[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then
  return {0, wait}
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[3 + 2 * i]) + keep)
end
return {1, 0}
"""


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any ``seconds`` long stretch (Brevo's ``span`` plus the margin)."""

    limit: int
    seconds: float
    span: int


@dataclass(frozen=True)
class SharedLimitConfig:
    """The connection extra ``shared_rate_limit``, validated once; defaults are Brevo's general tier.

    :param redis_conn_id: the Airflow Redis connection (``RedisHook``) holding the shared logs.
    :param contacts_per_second: ``/contacts*`` requests per second for the whole account
        (Brevo: 10; 20 on Professional/Enterprise). ``null`` drops the window.
    :param contacts_per_hour: ``/contacts*`` requests per hour (Brevo: 36,000).
    :param general_per_hour: requests per hour to every other endpoint, ``/processes`` included
        (Brevo: 100).
    :param margin_seconds: added to each window's length, for the spread of network latency
        between workers and Brevo (a request admitted later may arrive sooner).
    :param account: a name shared by connections whose keys belong to one Brevo account (the limits
        are per account, and an account can have several keys). Default: the base URL and API key.
    """

    redis_conn_id: str
    contacts_per_second: int | None = 10
    contacts_per_hour: int | None = 36_000
    general_per_hour: int | None = 100
    margin_seconds: float = 0.05
    account: str | None = None

    @classmethod
    def from_extra(cls, value: Any) -> SharedLimitConfig | None:
        """Read the extra's value (an object, or its JSON text); ``None`` when absent.

        :raises ValueError: naming the key that is unknown, missing or out of range.
        """
        if value in (None, "", {}):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(value, Mapping):
            raise ValueError(f"an object is expected, not {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        conn_id = value.get("redis_conn_id")
        if not isinstance(conn_id, str) or not conn_id.strip():
            raise ValueError("redis_conn_id is required: the Airflow Redis connection that holds the shared limits")
        options: dict[str, Any] = {"redis_conn_id": conn_id.strip()}
        for name in ("contacts_per_second", "contacts_per_hour", "general_per_hour"):
            if name in value:
                limit = value[name]
                if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                    raise ValueError(f"{name} must be a whole number of requests >= 1, or null; got {limit!r}")
                options[name] = limit
        if "margin_seconds" in value:
            margin = value["margin_seconds"]
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 60:
                raise ValueError(f"margin_seconds must be a number of seconds between 0 and 60; got {margin!r}")
            options["margin_seconds"] = float(margin)
        if value.get("account") is not None:
            account = value["account"]
            if not isinstance(account, str) or not account.strip():
                raise ValueError("account must be a non-empty name")
            options["account"] = account.strip()
        return cls(**options)

    def windows(self, bucket: str) -> tuple[Window, ...]:
        """The windows that meter ``bucket`` (``contacts`` or ``general``), margins included."""
        if bucket == "contacts":
            pairs = ((self.contacts_per_second, 1), (self.contacts_per_hour, 3600))
        else:
            pairs = ((self.general_per_hour, 3600),)
        return tuple(Window(limit, span + self.margin_seconds, span) for limit, span in pairs if limit)

    def account_id(self, base_url: str, api_key: str) -> str:
        """What the Redis keys are named after: a hash, so the key is never written to Redis."""
        seed = f"account\n{self.account}" if self.account else f"{base_url}\n{api_key}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]


def connect_redis(conn_id: str, *, where: str = "shared_rate_limit") -> Any:
    """A ``redis.Redis`` client for an Airflow connection, failing fast: short timeouts, no retries.

    :param where: names the setting in error messages (e.g. the Brevo connection's extra).
    :raises ConfigurationError: the connection does not exist or the redis provider is not installed.
    """
    try:
        from airflow.providers.redis.hooks.redis import RedisHook
    except ImportError:
        raise ConfigurationError(
            f"{where} needs the Redis provider: install apache-airflow-providers-redis "
            "(contactsync's `events` extra brings it)"
        ) from None
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        client = RedisHook(redis_conn_id=conn_id).get_conn()
    except AirflowNotFoundException:
        raise ConfigurationError(f"{where}: redis_conn_id {conn_id!r} is not an Airflow connection") from None
    pool = getattr(client, "connection_pool", None)  # RedisCluster has one per node
    if pool is not None:
        pool.connection_kwargs.update(
            socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
    if hasattr(client, "set_retry"):  # redis-py retries 3 times with backoff by default: an outage would stall
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client.set_retry(Retry(NoBackoff(), 0))
    return client


def _redis_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(Redis refuses us: a configuration mistake, Redis can't answer: an outage)."""
    try:
        from redis.exceptions import AuthenticationError, NoPermissionError, RedisError
    except ImportError:  # pragma: no cover - connect_redis says what to install
        return (), (OSError,)
    return (AuthenticationError, NoPermissionError), (RedisError, OSError)


class SharedRateLimiter:
    """Take a place in an account's shared windows before each request.

    :param config: the validated ``shared_rate_limit`` extra.
    :param account_id: :meth:`SharedLimitConfig.account_id`.
    :param connect: returns the Redis client; called on first use and after an outage.
    :param clock: seconds, for tests; ``None`` (production) uses Redis's clock, the same for every worker.
    :param monotonic: local clock for the retry-after-outage delay.
    :param where: names the setting in error messages (e.g. the Brevo connection's extra).
    """

    def __init__(
        self,
        config: SharedLimitConfig,
        *,
        account_id: str,
        connect: Callable[[], Any],
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
        where: str = "shared_rate_limit",
    ) -> None:
        self.config = config
        self.where = where
        self.account_id = account_id
        self._connect = connect
        self._clock = clock
        self._monotonic = monotonic
        self.log = log or logging.getLogger(__name__)
        self._client: Any = None
        self._script: Any = None
        self._down_until: float | None = None
        self._refused, self._unreachable = _redis_errors()

    def keys(self, bucket: str) -> list[str]:
        """The sorted sets of ``bucket``'s windows, named after Brevo's window, not the margin, so connections
        with other margins or limits share them; ``{…}`` keeps an account's keys in one Redis Cluster slot."""
        return [f"{KEY_PREFIX}:{{{self.account_id}}}:{bucket}:{w.span}s" for w in self.config.windows(bucket)]

    def acquire(self, bucket: str) -> float | None:
        """Take one request's place in ``bucket`` (``contacts`` or ``general``).

        :return: ``0.0`` when taken; seconds until a place frees up when the windows are full (nothing
            taken: call again after waiting); ``None`` when Redis can't be reached (nothing taken,
            nothing to wait for: the request goes out unshared).
        """
        windows = self.config.windows(bucket)
        if not windows:
            return 0.0
        if self._down_until is not None and self._monotonic() < self._down_until:
            return None
        now = "" if self._clock is None else round(self._clock() * 1000)
        args: list[Any] = [now, os.urandom(8).hex(), KEEP_MS]
        for window in windows:
            args += [window.limit, round(window.seconds * 1000)]
        try:
            if self._script is None:
                self._client = self._connect()
                self._script = self._client.register_script(_ACQUIRE_SCRIPT)
            taken, wait_ms = self._script(keys=self.keys(bucket), args=args)
        except self._refused as exc:
            self.close()
            raise ConfigurationError(
                f"{self.where}: Redis connection {self.config.redis_conn_id!r} refused: {type(exc).__name__}: {exc}"
            ) from None
        except self._unreachable as exc:
            self._unavailable(exc)
            return None
        if self._down_until is not None:
            self._down_until = None
            self.log.info("Brevo shared rate limit: Redis is reachable again; requests are shared again")
        return 0.0 if int(taken) else int(wait_ms) / 1000

    def _unavailable(self, exc: BaseException) -> None:
        if self._down_until is None:
            self.log.warning(
                "Brevo shared rate limit: Redis (connection %r) unreachable: %s: %s. Requests go out without "
                "the shared limit (each process paced by Brevo's headers, 429s waited out) until it answers; "
                "trying again every %.0f s",
                self.config.redis_conn_id,
                type(exc).__name__,
                exc,
                REDIS_RETRY_SECONDS,
            )
        self._down_until = self._monotonic() + REDIS_RETRY_SECONDS
        self.close()

    def close(self) -> None:
        """Drop the Redis client (its connections); the next call connects again."""
        client, self._client, self._script = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; nothing to do
                pass

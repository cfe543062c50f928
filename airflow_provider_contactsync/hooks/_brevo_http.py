"""HTTP policy for Brevo: rate-limit pacing, retries, idempotency and error parsing.

Pure policy plus an httpx request loop; no Airflow import, so it is testable with
``httpx.MockTransport`` and an injected clock. :class:`~.brevo.BrevoHook` is the only user.

Why the rules are what they are:

* Brevo answers every call with ``x-sib-ratelimit-limit/remaining/reset`` (``reset`` = seconds left
  in the window). When ``remaining`` reaches 0 we wait the window out *before* the next call in
  that bucket instead of collecting a 429.
* A 429 proves the request was not processed, so any call may be repeated after the reset.
* Those headers are the account's, but they arrive after the fact: two processes syncing into one
  account each spend the budget they see. With a :class:`~._shared_limit.SharedRateLimiter` (the
  connection extra ``shared_rate_limit``) every request first takes a place in windows that all
  processes share through Redis, and waits (or defers, like a used-up hourly budget) until one frees.
* 5xx answers, read timeouts and dropped connections do not say whether Brevo acted on the
  request. Only calls whose repetition is harmless (reads, PUT/DELETE, upserts) are repeated;
  the others raise :class:`BrevoOutcomeUnknownError`.
"""

from __future__ import annotations

import json
import logging
import random as _random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.hooks._shared_limit import SharedRateLimiter

DEFAULT_BASE_URL = "https://api.brevo.com/v3"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}

#: Statuses after which an idempotent call is repeated with exponential backoff.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class BrevoRateLimitedError(BrevoError):
    """Brevo's rate limit asks for a longer wait than a task should spend asleep.

    Sleeping through an hourly window would hold a worker slot for an hour: the caller stops here
    and resumes after ``resume_in`` seconds (the load task defers to a trigger; anything resumable
    can do the same).

    :param resume_in: seconds until the window resets (jitter included).
    """

    def __init__(self, resume_in: float, *, method: str, path: str, bucket: str) -> None:
        self.resume_in = resume_in
        self.bucket = bucket
        super().__init__(
            429,
            "rate_limited",
            f"Brevo's {bucket} rate limit is used up for {resume_in:.0f} s, longer than the {method} {path} call "
            "may wait (connection extra max_wait_seconds)",
            method=method,
            path=path,
        )


class BrevoOutcomeUnknownError(BrevoError):
    """A non-idempotent call failed in a way that does not say whether Brevo processed it.

    Repeating it could create a duplicate, so it is not repeated: check Brevo's state (e.g. look
    the contact up) before trying again.
    """


def resolve_base_url(host: str | None, port: int | None = None) -> str:
    """Turn a connection's host (and port) into the API base URL ending in ``/v3``.

    Accepts ``""`` (Brevo itself), ``api.example.com``, ``http://127.0.0.1:8787/v3``,
    ``127.0.0.1`` with ``port=8787``, with or without ``/v3``. Loopback hosts without a scheme
    default to ``http`` (the sandbox), everything else to ``https``.

    :param host: the connection's host field, possibly a full URL.
    :param port: the connection's port field; used only when the host names no port.
    """
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        hostname = urlsplit(f"//{host}").hostname or ""
        scheme = "http" if hostname in _LOOPBACK_HOSTS or hostname.startswith("127.") else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{int(port)}"
    path = parts.path.rstrip("/")
    if not path.endswith("/v3"):
        path = f"{path}/v3"
    return f"{parts.scheme}://{netloc}{path}"


def endpoint_group(path: str) -> str:
    """Name the endpoint family of ``path`` (relative to ``/v3``), for stats and rate-limit buckets."""
    first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return first or "root"


def rate_limit_bucket(path: str) -> str:
    """Brevo meters ``/contacts*`` on its own budget; the other endpoints share a small one."""
    return "contacts" if endpoint_group(path) == "contacts" else "general"


@dataclass
class BrevoStats:
    """Counters a caller (or a benchmark) can read after a run.

    :param requests: HTTP requests sent, per endpoint group (``contacts``, ``processes``, ...),
        retries included.
    :param retries: requests that were repeats of an earlier attempt.
    :param rate_limited: 429 answers received.
    :param wait_seconds: total time spent sleeping (pacing, 429 waits, backoff, polling).
    :param import_bodies: ``POST /contacts/import`` bodies accepted by Brevo.
    :param imported_contacts: contacts carried by those bodies.
    :param shared_waits: times the shared rate limit (Redis) made a request wait for a place.
    :param shared_unavailable: requests sent without the shared limit because Redis was unreachable.
    """

    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    wait_seconds: float = 0.0
    import_bodies: int = 0
    imported_contacts: int = 0
    shared_waits: int = 0
    shared_unavailable: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass
class RetryPolicy:
    """How hard to try before giving up.

    :param max_retries: repeats after 5xx, timeouts and connection errors.
    :param max_rate_limit_retries: repeats after 429 (kept apart: waiting out a 429 is normal on a
        shared account and should not eat the budget for real failures).
    :param backoff_base: first backoff ceiling in seconds; doubles per retry.
    :param backoff_cap: largest backoff ceiling.
    :param rate_limit_jitter: up to this many seconds added after a reset, so parallel workers
        do not all fire at the same instant.
    :param max_wait_seconds: longest wait for a rate-limit window to reset; a longer one raises
        :class:`BrevoRateLimitedError` instead of sleeping (Brevo's hourly buckets reset in up to
        an hour).
    """

    max_retries: int = 5
    max_rate_limit_retries: int = 10
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    rate_limit_jitter: float = 0.25
    max_wait_seconds: float = 300.0

    def backoff(self, retry_number: int, rand: Callable[[], float]) -> float:
        """Full-jitter exponential backoff: uniform in ``[0, min(cap, base * 2**n))``."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**retry_number))
        return rand() * ceiling


@dataclass
class RateLimitBucket:
    """Last known state of one Brevo rate-limit bucket, from the response headers."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # monotonic time at which the window resets

    def update(self, headers: Mapping[str, str], now: float) -> None:
        limit = _int_header(headers, "x-sib-ratelimit-limit")
        remaining = _int_header(headers, "x-sib-ratelimit-remaining")
        reset = _float_header(headers, "x-sib-ratelimit-reset")
        if limit is not None:
            self.limit = limit
        if remaining is not None:
            self.remaining = remaining
        if reset is not None:
            self.reset_at = now + max(reset, 0.0)

    def seconds_until_reset(self, now: float) -> float | None:
        if self.reset_at is None:
            return None
        return max(self.reset_at - now, 0.0)

    def required_wait(self, now: float) -> float:
        """Seconds to wait before the next call: the rest of the window once it is used up."""
        if self.remaining is None or self.remaining > 0 or self.reset_at is None:
            return 0.0
        return max(self.reset_at - now, 0.0)

    def fair_interval(self, now: float) -> float:
        """Smallest spacing that lets the remaining budget last until the window resets."""
        left = self.seconds_until_reset(now)
        if left is None or self.remaining is None:
            return 0.0
        return left / max(self.remaining, 1)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = _float_header(headers, name)
    return None if value is None else int(value)


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def parse_error_body(response: httpx.Response) -> tuple[str | None, str, dict[str, Any]]:
    """Brevo's ``{code, message, metadata}`` error body, tolerating non-JSON answers."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        return None, text[:500] or (response.reason_phrase or "no body"), {}
    if not isinstance(body, dict):
        return None, json.dumps(body)[:500], {}
    code = body.get("code")
    message = body.get("message") or response.reason_phrase or ""
    metadata = body.get("metadata")
    return (
        (str(code) if code is not None else None),
        str(message),
        metadata if isinstance(metadata, dict) else {},
    )


# Transport failures where the request never reached Brevo: safe to repeat any call.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures after (part of) the request may have been processed.
_UNKNOWN_OUTCOME_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


class BrevoHttp:
    """Send one logical Brevo call: pace, send, classify the outcome, retry or raise.

    :param client: the keep-alive httpx client (base URL and ``api-key`` header already set).
    :param secret: the API key, only to scrub it from any text we put in an error.
    :param policy: retry limits and backoff shape.
    :param stats: counters updated in place.
    :param sleep: injectable ``time.sleep`` so tests check waits without waiting.
    :param monotonic: injectable ``time.monotonic`` (must advance with ``sleep``).
    :param rand: injectable ``random.random`` for jitter.
    :param shared: the account's limits shared with other processes (``None``: this process alone).
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        secret: str | None,
        policy: RetryPolicy,
        stats: BrevoStats,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = _random.random,
        log: logging.Logger | None = None,
        shared: SharedRateLimiter | None = None,
    ) -> None:
        self.client = client
        self.shared = shared
        self._secret = secret
        self.policy = policy
        self.stats = stats
        self.sleep = sleep
        self.monotonic = monotonic
        self.rand = rand
        self.log = log or logging.getLogger(__name__)
        self.buckets: dict[str, RateLimitBucket] = {}

    def bucket(self, path: str) -> RateLimitBucket:
        return self.buckets.setdefault(rate_limit_bucket(path), RateLimitBucket())

    def wait(self, seconds: float, why: str, *, level: int = logging.INFO) -> None:
        """Sleep through the injected clock and count it."""
        if seconds <= 0:
            return
        self.log.log(level, "Brevo: waiting %.2f s (%s)", seconds, why)
        self.stats.wait_seconds += seconds
        self.sleep(seconds)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send ``method path`` and return the 2xx (or ``accept``-listed) response.

        :param idempotent: whether repeating the call after an ambiguous failure is harmless.
            Decided by the caller, who knows the body (e.g. ``updateEnabled``).
        :param json_body: JSON-serialisable body; or ``content`` for a pre-serialised one.
        :param accept: non-2xx statuses the caller handles itself (e.g. 404 on a lookup).
        :raises BrevoOutcomeUnknownError: a non-idempotent call failed ambiguously.
        :raises BrevoError: any other failure, after retries.
        """
        method = method.upper()
        group = endpoint_group(path)
        bucket = self.bucket(path)
        headers = {"content-type": "application/json"} if content is not None else None
        failures = 0  # 5xx / transport retries used
        limited = 0  # 429 retries used
        attempt = 0
        while True:
            self._rate_limit_wait(
                bucket.required_wait(self.monotonic()) + self._reset_jitter(bucket),
                method,
                path,
                "rate limit exhausted",
            )
            if bucket.remaining == 0 and (bucket.seconds_until_reset(self.monotonic()) or 0) <= 0:
                bucket.remaining = None  # the window has reset; the next answer tells the new count
            self._take_shared_place(method, path)
            if attempt:
                self.stats.retries += 1
            attempt += 1
            self.stats.requests[group] += 1
            try:
                response = self.client.request(
                    method, path, params=params, json=json_body, content=content, headers=headers
                )
            except _NOT_SENT_ERRORS as exc:
                failures += 1
                if failures > self.policy.max_retries:
                    raise self._transport_error(method, path, exc, failures, sent=False) from None
                self.wait(self.policy.backoff(failures - 1, self.rand), f"{type(exc).__name__}, retrying")
                continue
            except _UNKNOWN_OUTCOME_ERRORS as exc:
                if not idempotent:
                    raise self._unknown_outcome(method, path, type(exc).__name__) from None
                failures += 1
                if failures > self.policy.max_retries:
                    raise self._transport_error(method, path, exc, failures, sent=True) from None
                self.wait(self.policy.backoff(failures - 1, self.rand), f"{type(exc).__name__}, retrying")
                continue
            except httpx.HTTPError as exc:
                raise BrevoError(0, "request_error", self._scrub(str(exc)), method=method, path=path) from None

            bucket.update(response.headers, self.monotonic())
            status = response.status_code
            if status < 300 or status in accept:
                return response
            if status == 429:
                self.stats.rate_limited += 1
                limited += 1
                if limited > self.policy.max_rate_limit_retries:
                    raise self._status_error(response, method, path, f"still rate limited after {limited - 1} waits")
                reset = bucket.seconds_until_reset(self.monotonic())
                if reset is None:
                    delay = max(1.0, self.policy.backoff(limited, self.rand))
                else:
                    delay = reset + self.rand() * self.policy.rate_limit_jitter
                self._rate_limit_wait(delay, method, path, "429 Too Many Requests")
                bucket.remaining = None
                continue
            if status in RETRYABLE_STATUSES:
                if not idempotent:
                    raise self._unknown_outcome(method, path, f"HTTP {status}", response)
                failures += 1
                if failures > self.policy.max_retries:
                    raise self._status_error(response, method, path, f"gave up after {self.policy.max_retries} retries")
                self.wait(self.policy.backoff(failures - 1, self.rand), f"HTTP {status}, retrying")
                continue
            raise self._status_error(response, method, path)

    def _take_shared_place(self, method: str, path: str) -> None:
        """Wait until the account's shared windows have room for this request, and take it.

        Waits past ``max_wait_seconds`` raise :class:`BrevoRateLimitedError` (the load defers), as a
        used-up window reported by Brevo's headers does. The jitter is a tenth of the wait at most, so
        workers woken by the same freed place do not all ask again at the same instant.
        """
        if self.shared is None:
            return
        bucket = rate_limit_bucket(path)
        while True:
            wait = self.shared.acquire(bucket)
            if wait is None:
                self.stats.shared_unavailable += 1
                return
            if wait <= 0:
                return
            self.stats.shared_waits += 1
            delay = wait + self.rand() * min(self.policy.rate_limit_jitter, wait / 10)
            # Sub-second waits are the normal pace of a busy account: not worth a log line each.
            self._rate_limit_wait(
                delay, method, path, f"shared {bucket} rate limit", level=logging.INFO if delay >= 1 else logging.DEBUG
            )

    def _rate_limit_wait(self, seconds: float, method: str, path: str, why: str, *, level: int = logging.INFO) -> None:
        """Wait for a rate-limit window, unless that is longer than the policy allows (then raise)."""
        if seconds > self.policy.max_wait_seconds:
            bucket = rate_limit_bucket(path)
            self.log.warning(
                "Brevo: the %s rate limit resets in %.0f s, over max_wait_seconds %.0f: stopping here",
                bucket,
                seconds,
                self.policy.max_wait_seconds,
            )
            raise BrevoRateLimitedError(seconds, method=method, path=path, bucket=bucket)
        self.wait(seconds, why, level=level)

    def _reset_jitter(self, bucket: RateLimitBucket) -> float:
        if bucket.required_wait(self.monotonic()) <= 0:
            return 0.0
        return self.rand() * self.policy.rate_limit_jitter

    def _scrub(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "***")
        return text

    def _status_error(self, response: httpx.Response, method: str, path: str, note: str | None = None) -> BrevoError:
        code, message, metadata = parse_error_body(response)
        message = self._scrub(message)
        if note:
            message = f"{message} ({note})"
        return BrevoError(response.status_code, code, message, method=method, path=path, metadata=metadata)

    def _transport_error(self, method: str, path: str, exc: Exception, tries: int, *, sent: bool) -> BrevoError:
        what = "could not reach Brevo" if not sent else "no answer from Brevo"
        detail = self._scrub(str(exc)) or type(exc).__name__
        return BrevoError(
            0,
            "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error",
            f"{what} after {tries} attempts: {type(exc).__name__}: {detail}",
            method=method,
            path=path,
        )

    def _unknown_outcome(
        self, method: str, path: str, failure: str, response: httpx.Response | None = None
    ) -> BrevoOutcomeUnknownError:
        status, code, metadata = 0, "outcome_unknown", {}
        extra = ""
        if response is not None:
            status = response.status_code
            rcode, rmessage, metadata = parse_error_body(response)
            code = rcode or code
            extra = f"; Brevo said: {self._scrub(rmessage)}"
        return BrevoOutcomeUnknownError(
            status,
            code,
            f"outcome unknown: {failure} on a call that is not safe to repeat, so it was not retried; "
            f"check Brevo before trying again{extra}",
            method=method,
            path=path,
            metadata=metadata,
        )

"""BrevoHook: the one place that talks HTTP to Brevo.

Bulk upserts go through ``POST /contacts/import`` (tens of thousands of contacts per request);
single-contact calls exist for the small cases. Every call goes through one request loop
(:mod:`._brevo_http`) that reads Brevo's rate-limit headers, waits out 429s, backs off on 5xx
and timeouts, and repeats only the calls whose repetition is harmless.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import math
import random as _random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook

from airflow_provider_contactsync.core.errors import BrevoError, ConfigurationError
from airflow_provider_contactsync.hooks._brevo_http import (
    DEFAULT_BASE_URL,
    BrevoHttp,
    BrevoOutcomeUnknownError,
    BrevoRateLimitedError,
    BrevoStats,
    RetryPolicy,
    resolve_base_url,
)
from airflow_provider_contactsync.hooks._brevo_import import DEFAULT_MAX_BODY_BYTES, iter_import_bodies
from airflow_provider_contactsync.hooks._process_pace import ProcessPace
from airflow_provider_contactsync.hooks._shared_limit import SharedLimitConfig, SharedRateLimiter, connect_redis

__all__ = [
    "BrevoHook",
    "BrevoOutcomeUnknownError",
    "BrevoRateLimitedError",
    "BrevoStats",
    "RetryPolicy",
    "resolve_base_url",
]

DEFAULT_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_MAX_RETRIES = 5
LIST_CHUNK = 150  # Brevo's maximum per list add/remove call
DEFAULT_BATCH_SIZE = 100
PROCESSES_PAGE = 50  # GET /processes limit maximum

_RUNNING = {"queued", "in_process", "processing", "pending", "running"}
_DONE = {"completed"}
_FAILED = {"failed", "cancelled", "canceled", "error"}

# Domain identifier names (and Brevo's own) -> Brevo's identifierType.
_IDENTIFIER_TYPES = {
    "EMAIL": "email_id",
    "SMS": "phone_id",
    "EXT_ID": "ext_id",
    "ID": "contact_id",
    "WHATSAPP": "whatsapp_id",
    "LANDLINE_NUMBER": "landline_number_id",
}
_BREVO_IDENTIFIER_TYPES = set(_IDENTIFIER_TYPES.values())


def _identifier_type(value: str | None) -> str | None:
    if value is None:
        return None
    if value in _BREVO_IDENTIFIER_TYPES:
        return value
    try:
        return _IDENTIFIER_TYPES[value.upper()]
    except KeyError:
        raise ValueError(
            f"unknown identifier type {value!r}; use one of {sorted(_IDENTIFIER_TYPES)} "
            f"or {sorted(_BREVO_IDENTIFIER_TYPES)}"
        ) from None


def _brevo_datetime(value: _dt.datetime) -> str:
    """Brevo's filter format ``YYYY-MM-DDTHH:mm:ss.SSSZ`` in UTC; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    value = value.astimezone(_dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class BrevoHook(BaseHook):
    """Talk to the Brevo contacts API (or the contactsync sandbox) over a keep-alive httpx client.

    The connection's password is the API key; its host optionally overrides the base URL
    (``http://127.0.0.1:8787/v3`` for the sandbox; scheme, port and ``/v3`` optional). Extras
    ``timeout``, ``max_retries``, ``max_wait_seconds`` and ``poll_interval`` tune the request loop;
    ``shared_rate_limit`` shares Brevo's per-account limits with every other process through Redis
    (:mod:`._shared_limit`).

    :param brevo_conn_id: Airflow connection id.
    :param timeout: overrides the connection's ``timeout`` extra (seconds per request).
    :param max_retries: overrides the connection's ``max_retries`` extra.
    :param sleep: injectable sleep; tests pass a fake clock so waits are checked, not waited.
    :param monotonic: injectable monotonic clock; must advance with ``sleep``. An injected clock also
        drives the shared rate limit (otherwise it runs on Redis's clock, the same for every worker).
    :param rand: injectable ``[0, 1)`` random source for jitter.
    :param transport: injectable httpx transport (``httpx.MockTransport`` in unit tests).
    """

    conn_name_attr = "brevo_conn_id"
    default_conn_name = "brevo_default"
    conn_type = "brevo"
    hook_name = "Brevo"

    def __init__(
        self,
        brevo_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = _random.random,
        transport: httpx.BaseTransport | None = None,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.brevo_conn_id = brevo_conn_id
        self._timeout_override = timeout
        self._max_retries_override = max_retries
        self._sleep = sleep
        self._monotonic = monotonic
        self._rand = rand
        self._transport = transport
        self._http: BrevoHttp | None = None
        self.base_url: str | None = None
        self.stats = BrevoStats()
        self._poll_interval = DEFAULT_POLL_INTERVAL
        self._process_listing = True  # falls back to per-id polling if the listing is unsupported
        self._pace: ProcessPace | None = None  # built with the connection (its poll_interval is the ceiling)
        self.last_import_received_at: _dt.datetime | None = None
        """Brevo's clock (the ``Date`` header, else ours) when it accepted the last import body: the
        instant after which the import's contacts are modified (see :meth:`count_contacts`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(brevo_conn_id={self.brevo_conn_id!r}, base_url={self.base_url!r})"

    # -- connection ---------------------------------------------------------------------------

    @property
    def http(self) -> BrevoHttp:
        """The request loop, built on first use from the Airflow connection."""
        if self._http is None:
            self._http = self._build_http()
        return self._http

    def _build_http(self) -> BrevoHttp:
        conn = self.get_connection(self.brevo_conn_id)
        api_key = conn.password
        if not api_key:
            raise BrevoError(
                0,
                "missing_api_key",
                f"connection {self.brevo_conn_id!r} has no password; put the Brevo API key there",
            )
        extras = conn.extra_dejson or {}
        self._poll_interval = _number(extras.get("poll_interval"), float) or DEFAULT_POLL_INTERVAL
        timeout = self._timeout_override or _number(extras.get("timeout"), float) or DEFAULT_TIMEOUT
        max_retries = self._max_retries_override
        if max_retries is None:
            max_retries = _number(extras.get("max_retries"), int)
        if max_retries is None:
            max_retries = DEFAULT_MAX_RETRIES
        max_wait = _number(extras.get("max_wait_seconds"), float)
        self.base_url = resolve_base_url(conn.host, conn.port) if conn.host else DEFAULT_BASE_URL
        shared = self._shared_limiter(extras.get("shared_rate_limit"), self.base_url, api_key)
        client = httpx.Client(
            base_url=self.base_url,
            headers={"api-key": api_key, "accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=self._transport,
        )
        return BrevoHttp(
            client,
            secret=api_key,
            policy=RetryPolicy(max_retries=max_retries, max_wait_seconds=max_wait if max_wait is not None else 300.0),
            stats=self.stats,
            sleep=self._sleep,
            monotonic=self._monotonic,
            rand=self._rand,
            log=logging.getLogger(f"{__name__}.http"),
            shared=shared,
        )

    def _shared_limiter(self, extra: Any, base_url: str, api_key: str) -> SharedRateLimiter | None:
        """The ``shared_rate_limit`` extra's limiter, or ``None`` (each process on its own, as before)."""
        where = f"Brevo connection {self.brevo_conn_id!r}, extra shared_rate_limit"
        try:
            config = SharedLimitConfig.from_extra(extra)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        if config is None:
            return None
        return SharedRateLimiter(
            config,
            account_id=config.account_id(base_url, api_key),
            connect=functools.partial(connect_redis, config.redis_conn_id, where=where),
            clock=None if self._monotonic is time.monotonic else self._monotonic,
            monotonic=self._monotonic,
            log=logging.getLogger(f"{__name__}.shared_limit"),
            where=where,
        )

    def get_conn(self) -> httpx.Client:
        """The cached keep-alive httpx client (base URL and ``api-key`` header set)."""
        return self.http.client

    def close(self) -> None:
        """Close the HTTP client; the next call opens a new one."""
        if self._http is not None:
            self._http.client.close()
            if self._http.shared is not None:
                self._http.shared.close()
            self._http = None

    def __enter__(self) -> BrevoHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and URL with ``GET /account``; Airflow's "Test" button calls this."""
        try:
            account = self.http.request("GET", "/account", idempotent=True).json()
        except BrevoError as err:
            return False, str(err)
        except Exception as err:  # noqa: BLE001 - the UI needs a message, not a traceback
            return False, f"{type(err).__name__}: {err}"
        who = account.get("email") or account.get("companyName") or "account"
        return True, f"Connected to Brevo ({who}) at {self.base_url}"

    # -- reading ------------------------------------------------------------------------------

    def get_attributes(self) -> list[dict[str, Any]]:
        """All contact attributes of the account; the mapping is checked against them before any write."""
        return list(self.http.request("GET", "/contacts/attributes", idempotent=True).json().get("attributes") or [])

    def get_lists(self) -> list[dict[str, Any]]:
        """All contact lists (paged by 50, Brevo's maximum)."""
        lists: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.request(
                "GET",
                "/contacts/lists",
                idempotent=True,
                params={"limit": 50, "offset": offset, "sort": "asc"},
            ).json()
            batch = page.get("lists") or []
            lists.extend(batch)
            offset += len(batch)
            if len(batch) < 50 or offset >= int(page.get("count") or 0):
                return lists

    def iter_contacts(
        self,
        *,
        modified_since: _dt.datetime | None = None,
        created_since: _dt.datetime | None = None,
        list_id: int | None = None,
        segment_id: int | None = None,
        page_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Yield contacts page by page, oldest first (``sort=asc`` keeps offsets stable while new
        contacts are created behind us).

        :param modified_since: only contacts modified after this instant (naive = UTC).
        :param created_since: only contacts created after this instant (naive = UTC).
        :param list_id: only contacts of this list.
        :param segment_id: only contacts of this segment (not with ``list_id``).
        :param page_size: contacts per request, at most 1000.
        """
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        params: dict[str, Any] = {"limit": page_size, "sort": "asc"}
        if modified_since is not None:
            params["modifiedSince"] = _brevo_datetime(modified_since)
        if created_since is not None:
            params["createdSince"] = _brevo_datetime(created_since)
        if list_id is not None:
            params["listIds"] = list_id
        if segment_id is not None:
            params["segmentId"] = segment_id
        offset = 0
        while True:
            page = self.http.request("GET", "/contacts", idempotent=True, params={**params, "offset": offset}).json()
            contacts = page.get("contacts") or []
            yield from contacts
            offset += len(contacts)
            count = page.get("count")
            if len(contacts) < page_size or (count is not None and offset >= int(count)):
                return

    def count_contacts(
        self,
        *,
        created_since: _dt.datetime | None = None,
        modified_since: _dt.datetime | None = None,
        list_id: int | None = None,
        segment_id: int | None = None,
    ) -> int:
        """How many contacts (of a list or segment) were created (or modified) after an instant: one request."""
        params: dict[str, Any] = {"limit": 1, "offset": 0}
        if list_id is not None:
            params["listIds"] = list_id
        if segment_id is not None:
            params["segmentId"] = segment_id
        if created_since is not None:
            params["createdSince"] = _brevo_datetime(created_since)
        if modified_since is not None:
            params["modifiedSince"] = _brevo_datetime(modified_since)
        return int(self.http.request("GET", "/contacts", idempotent=True, params=params).json().get("count") or 0)

    def newest_contact(self) -> tuple[int, int | None]:
        """How many contacts the account holds, and the id of the newest (None when empty): one request.

        Contacts created later have higher ids, which tells them apart from those that were there
        before, to the contact (timestamps only say it to the second).
        """
        page = self.http.request(
            "GET", "/contacts", idempotent=True, params={"limit": 1, "offset": 0, "sort": "desc"}
        ).json()
        newest = (page.get("contacts") or [{}])[0].get("id")
        return int(page.get("count") or 0), int(newest) if newest is not None else None

    def get_contact(self, identifier: str | int, identifier_type: str | None = None) -> dict[str, Any] | None:
        """One contact, or ``None`` when Brevo does not know it.

        :param identifier: email, phone, ext id or Brevo id.
        :param identifier_type: ``EMAIL``/``SMS``/``EXT_ID``/``ID`` (or Brevo's ``email_id``, ...);
            needed for anything but email and id.
        """
        response = self.http.request(
            "GET",
            self._contact_path(identifier),
            idempotent=True,
            params=self._identifier_params(identifier_type),
            accept=frozenset({404}),
        )
        return None if response.status_code == 404 else response.json()

    # -- single-contact writes ----------------------------------------------------------------

    def create_contact(
        self,
        email: str | None = None,
        *,
        ext_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        list_ids: Sequence[int] | None = None,
        email_blacklisted: bool | None = None,
        sms_blacklisted: bool | None = None,
        update_enabled: bool = False,
    ) -> int | None:
        """Create one contact (``POST /contacts``); returns its id, or ``None`` when an existing
        contact was updated instead (``update_enabled``).

        Without ``update_enabled`` the call is not idempotent: if the connection drops or Brevo
        answers 5xx, it raises :class:`BrevoOutcomeUnknownError` instead of risking a duplicate.

        :param update_enabled: update the contact if it exists (an upsert, safe to repeat).
        """
        body = _drop_none(
            {
                "email": email,
                "ext_id": ext_id,
                "attributes": dict(attributes) if attributes else None,
                "listIds": list(list_ids) if list_ids else None,
                "emailBlacklisted": email_blacklisted,
                "smsBlacklisted": sms_blacklisted,
                "updateEnabled": update_enabled,
            }
        )
        response = self.http.request("POST", "/contacts", idempotent=update_enabled, json_body=body)
        if response.status_code == 201 and response.content:
            return response.json().get("id")
        return None

    def update_contact(
        self,
        identifier: str | int,
        identifier_type: str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        ext_id: str | None = None,
        list_ids: Sequence[int] | None = None,
        unlink_list_ids: Sequence[int] | None = None,
        email_blacklisted: bool | None = None,
        sms_blacklisted: bool | None = None,
    ) -> None:
        """Update one existing contact (``PUT /contacts/{identifier}``); 404 if it does not exist.

        :param identifier_type: see :meth:`get_contact`.
        """
        body = _drop_none(
            {
                "attributes": dict(attributes) if attributes else None,
                "ext_id": ext_id,
                "listIds": list(list_ids) if list_ids else None,
                "unlinkListIds": list(unlink_list_ids) if unlink_list_ids else None,
                "emailBlacklisted": email_blacklisted,
                "smsBlacklisted": sms_blacklisted,
            }
        )
        self.http.request(
            "PUT",
            self._contact_path(identifier),
            idempotent=True,
            params=self._identifier_params(identifier_type),
            json_body=body,
        )

    def delete_contact(
        self, identifier: str | int, identifier_type: str | None = None, *, missing_ok: bool = False
    ) -> bool:
        """Delete one contact. Returns ``False`` if it did not exist and ``missing_ok``.

        :param missing_ok: treat "not found" as done (a deletion sync re-run is then harmless).
        """
        response = self.http.request(
            "DELETE",
            self._contact_path(identifier),
            idempotent=True,
            params=self._identifier_params(identifier_type),
            accept=frozenset({404}) if missing_ok else frozenset(),
        )
        return response.status_code != 404

    # -- multi-contact writes -----------------------------------------------------------------

    def update_contacts_batch(
        self, contacts: Sequence[Mapping[str, Any]], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> int:
        """Update existing contacts with ``POST /contacts/batch``, ``batch_size`` per request.

        Brevo applies a batch all-or-nothing: one unknown contact fails the whole request with
        404. That error is re-raised naming the contacts (by their position in ``contacts``), the
        chunk that was refused and how many contacts earlier chunks did update.

        :param contacts: items ``{email|id|sms|ext_id, attributes, listIds, unlinkListIds, ...}``.
        :param batch_size: contacts per request (Brevo documents no maximum; 100 is conservative).
        :returns: number of contacts updated.
        """
        contacts = list(contacts)
        updated = 0
        for start, chunk in _chunks(contacts, batch_size):
            try:
                self.http.request(
                    "POST",
                    "/contacts/batch",
                    idempotent=True,
                    json_body={"contacts": [dict(c) for c in chunk]},
                )
            except BrevoError as err:
                if err.status == 404:
                    raise self._batch_not_found(err, contacts, start, len(chunk), updated) from None
                raise
            updated += len(chunk)
        return updated

    def _batch_not_found(
        self, err: BrevoError, contacts: Sequence[Mapping[str, Any]], start: int, size: int, updated: int
    ) -> BrevoError:
        local = [int(n) for n in re.findall(r"\d+", err.message.split(":", 1)[-1])] if "index" in err.message else []
        missing = [start + i for i in local if 0 <= i < size]
        who = [_contact_label(contacts[i]) for i in missing]
        named = ", ".join(f"#{i} ({_contact_label(contacts[i])})" for i in missing) or "unknown contacts"
        return BrevoError(
            404,
            err.code,
            f"batch update of contacts #{start}-#{start + size - 1} refused whole by Brevo: no contact found "
            f"for {named}; nothing in this batch was updated ({updated} contacts in earlier batches were). "
            f"Brevo said: {err.message}",
            method=err.method,
            path=err.path,
            metadata={
                **err.metadata,
                "missing_indexes": missing,
                "missing_contacts": who,
                "batch_start": start,
                "batch_size": size,
                "updated_before": updated,
            },
        )

    def add_to_list(
        self,
        list_id: int,
        *,
        emails: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        ext_ids: Sequence[str] | None = None,
    ) -> dict[str, list[Any]]:
        """Add existing contacts to a list, 150 per request (Brevo's maximum).

        Give exactly one of ``emails``, ``ids``, ``ext_ids``. Returns the merged
        ``{"success": [...], "failure": [...]}`` of all chunks.
        """
        return self._list_membership("add", list_id, emails=emails, ids=ids, ext_ids=ext_ids)

    def remove_from_list(
        self,
        list_id: int,
        *,
        emails: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        ext_ids: Sequence[str] | None = None,
    ) -> dict[str, list[Any]]:
        """Remove contacts from a list, 150 per request. Same arguments as :meth:`add_to_list`."""
        return self._list_membership("remove", list_id, emails=emails, ids=ids, ext_ids=ext_ids)

    def _list_membership(
        self,
        action: str,
        list_id: int,
        *,
        emails: Sequence[str] | None,
        ids: Sequence[int] | None,
        ext_ids: Sequence[str] | None,
    ) -> dict[str, list[Any]]:
        given = {k: v for k, v in {"emails": emails, "ids": ids, "extIds": ext_ids}.items() if v is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of emails, ids or ext_ids")
        key, values = next(iter(given.items()))
        values = list(values)
        result: dict[str, list[Any]] = {"success": [], "failure": []}
        path = f"/contacts/lists/{int(list_id)}/contacts/{action}"
        for _, chunk in _chunks(values, LIST_CHUNK):
            response = self.http.request("POST", path, idempotent=True, json_body={key: list(chunk)})
            payload = response.json() if response.content else {}
            answer = payload.get("contacts", payload) if isinstance(payload, dict) else {}
            result["success"].extend(answer.get("success") or [])
            result["failure"].extend(answer.get("failure") or [])
        return result

    # -- bulk import --------------------------------------------------------------------------

    def import_contacts(
        self,
        contacts: Iterable[Mapping[str, Any]],
        *,
        list_ids: Sequence[int],
        update_existing: bool = True,
        empty_attributes: bool = False,
        email_blacklist: bool = False,
        sms_blacklist: bool = False,
        disable_notification: bool = True,
        notify_url: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_contacts_per_body: int | None = None,
    ) -> list[int]:
        """Bulk upsert through ``POST /contacts/import``; returns the ids of the import processes.

        The iterable is consumed lazily and cut into bodies each under ``max_body_bytes`` of
        serialised JSON, so one request carries tens of thousands of contacts. Imports run
        asynchronously at Brevo: follow them with :meth:`wait_for_processes`.

        :param contacts: items ``{"email": ..., "attributes": {...}}``; SMS / EXT_ID identifiers go
            in ``attributes`` (top-level ``sms`` / ``ext_id`` are moved there).
        :param list_ids: lists the contacts are added to (Brevo requires at least one).
        :param update_existing: upsert (safe to repeat after a failure) rather than create-only.
        :param empty_attributes: let empty values erase existing attribute values.
        :param disable_notification: on by default: a scheduled sync should not email the
            account owner after every import.
        :param max_body_bytes: body size limit (Brevo: 10 MB max, 8 MB advised).
        :param max_contacts_per_body: optional cap on contacts per body.
        """
        if not list_ids:
            raise ValueError("import_contacts needs at least one list id (Brevo requires listIds)")
        envelope = _drop_none(
            {
                "listIds": [int(i) for i in list_ids],
                "updateExistingContacts": update_existing,
                "emptyContactsAttributes": empty_attributes,
                "emailBlacklist": email_blacklist,
                "smsBlacklist": sms_blacklist,
                "disableNotification": disable_notification,
                "notifyUrl": notify_url,
            }
        )
        process_ids: list[int] = []
        bodies = iter_import_bodies(
            contacts, envelope, max_body_bytes=max_body_bytes, max_contacts=max_contacts_per_body
        )
        for body in bodies:
            response = self.http.request("POST", "/contacts/import", idempotent=update_existing, content=body.content)
            process_id = response.json().get("processId")
            if process_id is None:
                raise BrevoError(
                    response.status_code,
                    None,
                    "import accepted without a processId",
                    method="POST",
                    path="/contacts/import",
                )
            process_ids.append(int(process_id))
            self.pace.submitted(int(process_id), self._monotonic(), len(body.content))
            self.last_import_received_at = _response_time(response)
            self.stats.import_bodies += 1
            self.stats.imported_contacts += body.count
            self.log.info(
                "Brevo import: body %d, %d contacts, %d bytes -> process %s",
                len(process_ids),
                body.count,
                len(body.content),
                process_id,
            )
        return process_ids

    # -- exports ------------------------------------------------------------------------------

    def request_contact_export(self, contact_filter: Mapping[str, Any], attributes: Sequence[str]) -> int:
        """Start Brevo's CSV export of the contacts ``contact_filter`` selects (``POST /contacts/export``).

        Not idempotent (each call starts one more export, and /contacts/export has a small budget).
        :return: the process id; :meth:`wait_for_processes` then gives the document with ``export_url``.
        """
        body = {
            "customContactFilter": dict(contact_filter),
            "exportAttributes": list(attributes),
            "disableNotification": True,
        }
        answer = self.http.request("POST", "/contacts/export", idempotent=False, json_body=body).json()
        return int(answer["processId"])

    def download_export(self, url: str, target: Any, *, chunk_size: int = 1 << 20) -> int:
        """Stream an export's file (a process's ``export_url``) into the binary file ``target``; bytes written.

        The URL is a signed download link, on another host at Brevo: the API key is not sent with it.
        """
        written = 0
        timeout = httpx.Timeout(self.http.client.timeout.read or DEFAULT_TIMEOUT, connect=30.0)
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, transport=self._transport) as client,
            client.stream("GET", url) as answer,
        ):
            if answer.status_code != 200:
                raise BrevoError(
                    answer.status_code,
                    "export_download_failed",
                    f"downloading the export file answered HTTP {answer.status_code}",
                    method="GET",
                    path="export_url",
                )
            for block in answer.iter_bytes(chunk_size):
                target.write(block)
                written += len(block)
        return written

    def get_segments(self) -> list[dict[str, Any]]:
        """All segments of the account (paged by 50)."""
        segments: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.request(
                "GET", "/contacts/segments", idempotent=True, params={"limit": 50, "offset": offset}
            ).json()
            batch = page.get("segments") or []
            segments.extend(batch)
            offset += len(batch)
            if len(batch) < 50 or offset >= int(page.get("count") or 0):
                return segments

    # -- processes ----------------------------------------------------------------------------

    @property
    def pace(self) -> ProcessPace:
        """When to poll import processes first (:mod:`._process_pace`), capped by ``poll_interval``."""
        if self._pace is None:
            _ = self.http  # resolves the connection, and with it the poll_interval extra
            self._pace = ProcessPace(ceiling=self._poll_interval)
        return self._pace

    def get_process(self, process_id: int) -> dict[str, Any]:
        """One background process document (``GET /processes/{id}``)."""
        return self.http.request("GET", f"/processes/{int(process_id)}", idempotent=True).json()

    def wait_for_processes(
        self,
        process_ids: Sequence[int],
        *,
        timeout: float = 6 * 3600,
        first_interval: float | None = None,
        max_interval: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Wait until every process has finished; return their final documents in the given order.

        ``/processes`` has a tiny budget (100 requests/hour on the general tier), so polling is
        paced: the interval starts at ``first_interval`` and doubles up to ``max_interval``; when
        the rate-limit headers say that schedule would use up the remaining budget before the
        window resets, the interval is stretched to spread what is left over the window. When
        several processes are pending, one ``GET /processes`` listing per tick covers them all.

        :param timeout: seconds before giving up (the processes keep running at Brevo).
        :raises BrevoError: a process failed or was cancelled, or the timeout passed.
        """
        ids = [int(i) for i in process_ids]
        final: dict[int, dict[str, Any]] = {}
        deadline = self._monotonic() + timeout
        if first_interval is None:
            first_interval = self.pace.first_wait(ids, self._monotonic())
        if first_interval is None:  # not our imports (an export, another task's processes)
            first_interval = self._poll_interval
        interval = first_interval
        self._wait(first_interval, "first process poll")
        while True:
            pending = [i for i in dict.fromkeys(ids) if i not in final]
            for doc in self._poll_processes(pending):
                status = str(doc.get("status") or "").lower()
                pid = int(doc["id"])
                if status in _DONE:
                    final[pid] = doc
                elif status in _FAILED:
                    raise BrevoError(
                        200,
                        f"process_{status}",
                        f"Brevo process {pid} ({doc.get('name') or 'process'}) {status}: "
                        f"{doc.get('error') or 'no error message'}",
                        method="GET",
                        path=f"/processes/{pid}",
                        metadata={"process": doc, "completed": [final[i] for i in ids if i in final]},
                    )
                elif status not in _RUNNING:
                    self.log.warning("Brevo process %s has unexpected status %r; still waiting", pid, status)
            if all(i in final for i in ids):
                self.pace.finished(ids, self._monotonic())
                return [final[i] for i in ids]
            interval = min(interval * 2, max_interval)
            now = self._monotonic()
            bucket = self.http.bucket("/processes")
            delay = interval
            left = bucket.seconds_until_reset(now)
            if bucket.remaining is not None and left is not None:
                if _polls_within(left, interval, max_interval) > bucket.remaining:
                    # The doubling schedule would run the budget dry before the window resets.
                    delay = max(interval, bucket.fair_interval(now))
            if now + delay > deadline:
                still = [i for i in ids if i not in final]
                raise BrevoError(
                    0,
                    "process_timeout",
                    f"Brevo processes {still} still running after {timeout:.0f} s",
                    method="GET",
                    path="/processes",
                    metadata={"pending": still},
                )
            self._wait(delay, f"{len(ids) - len(final)} process(es) running")

    def _poll_processes(self, pending: list[int]) -> list[dict[str, Any]]:
        """Documents of ``pending`` processes, with as few ``/processes`` requests as possible."""
        if len(pending) == 1:
            return [self.get_process(pending[0])]
        wanted = set(pending)
        found: list[dict[str, Any]] = []
        oldest = min(wanted)
        offset = 0
        # Newest first: our processes are recent, so the first page(s) normally hold them all.
        for _ in range(math.ceil(len(wanted) / PROCESSES_PAGE) + 1):
            if not self._process_listing:
                break
            try:
                page = self.http.request(
                    "GET",
                    "/processes",
                    idempotent=True,
                    params={"limit": PROCESSES_PAGE, "offset": offset, "sort": "desc"},
                ).json()
            except BrevoError as err:
                if err.status not in (404, 405, 501):
                    raise
                self.log.info("GET /processes listing unavailable (%s); polling processes one by one", err.status)
                self._process_listing = False
                break
            docs = page.get("processes") or []
            for doc in docs:
                if doc.get("id") is not None and int(doc["id"]) in wanted:
                    wanted.discard(int(doc["id"]))
                    found.append(doc)
            offset += len(docs)
            if not wanted or len(docs) < PROCESSES_PAGE or min(int(d["id"]) for d in docs) < oldest:
                break
        found.extend(self.get_process(pid) for pid in sorted(wanted))
        return found

    # -- helpers ------------------------------------------------------------------------------

    def _wait(self, seconds: float, why: str) -> None:
        self.http.wait(seconds, why)

    @staticmethod
    def _contact_path(identifier: str | int) -> str:
        return f"/contacts/{quote(str(identifier), safe='')}"

    @staticmethod
    def _identifier_params(identifier_type: str | None) -> dict[str, str] | None:
        brevo_type = _identifier_type(identifier_type)
        return {"identifierType": brevo_type} if brevo_type else None


def _response_time(response: httpx.Response) -> _dt.datetime:
    """When Brevo answered, by its own ``Date`` header (whole seconds, rounded down), else by our clock."""
    from email.utils import parsedate_to_datetime

    header = response.headers.get("date")
    if header:
        try:
            stamp = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            stamp = None
        if stamp is not None:
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.timezone.utc)
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _polls_within(seconds: float, interval: float, cap: float) -> int:
    """How many polls the doubling schedule (``interval`` doubling up to ``cap``) makes in ``seconds``."""
    polls, elapsed = 0, 0.0
    while elapsed < seconds:
        if interval >= cap:
            return polls + math.ceil((seconds - elapsed) / cap)
        elapsed += interval
        polls += 1
        interval = min(interval * 2, cap)
    return polls


def _number(value: Any, kind: type) -> Any:
    if value in (None, ""):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _contact_label(contact: Mapping[str, Any]) -> str:
    for key in ("email", "id", "sms", "ext_id"):
        if contact.get(key) not in (None, ""):
            return f"{key}={contact[key]}"
    return "no identifier"

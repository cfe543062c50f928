"""What an export contains: the contacts Brevo gives for its filter, typed, after the cursor and ``where``.

Two ways to read, one result (docs/exports.md#reading):

- ``export``: ``POST /contacts/export`` (a list or a segment, with Brevo's own subscribed /
  unsubscribed / unsubscribed-from-list filter), wait for the process, stream its CSV to a temporary
  file and read it back row by row. One call per run whatever the size; the only way to get
  "unsubscribed from this list".
- ``pages``: ``GET /contacts`` 1,000 a call (``modifiedSince`` for incremental runs), the
  subscribed/unsubscribed filter applied here. Cheaper when few contacts match.

Every contact comes out as one mapping of Brevo field names (CONTACT_ID, EMAIL, SMS, EXT_ID,
ADDED_TIME, MODIFIED_TIME, EMAIL_BLACKLISTED, SMS_BLACKLISTED and the attributes) to typed values:
numbers and booleans as the account declares them, dates as text, time stamps as ISO 8601 UTC.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.export_models import SYSTEM_FIELDS, ExportContent
from airflow_provider_contactsync.exports.condition import Condition, attributes_of

_ACTIONS = {
    "any": "allContacts",
    "subscribed": "subscribed",
    "unsubscribed": "unsubscribed",
    "unsubscribed_from_list": "unsubscribedPerList",
}
_NOT_ATTRIBUTES = frozenset(
    ("CONTACT_ID", "EMAIL", "ADDED_TIME", "MODIFIED_TIME", "EMAIL_BLACKLISTED", "SMS_BLACKLISTED")
)


@dataclass(frozen=True)
class ExportCursor:
    """Where the last delivered export stopped: the newest MODIFIED_TIME it delivered and every contact
    delivered at that instant (Brevo's time stamps are to the millisecond: two contacts can share one,
    and one modified in that millisecond after the read must still come next time)."""

    time: str
    ids: frozenset[int] = frozenset()

    def is_new(self, modified: str, contact_id: int) -> bool:
        return modified > self.time or (modified == self.time and contact_id not in self.ids)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "ids": sorted(self.ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ExportCursor | None:
        if not data or not data.get("time"):
            return None
        return cls(str(data["time"]), frozenset(int(i) for i in data.get("ids") or ()))

    def after(self, modified: str, contact_id: int) -> ExportCursor:
        """The cursor once this contact is delivered too."""
        if modified > self.time:
            return ExportCursor(modified, frozenset((contact_id,)))
        if modified == self.time:
            return ExportCursor(self.time, self.ids | {contact_id})
        return self


@dataclass
class ReadStats:
    """How the run read, and what each contact read became (the history shows these)."""

    method: str = ""
    read: int = 0
    kept: int = 0
    before_cursor: int = 0
    status_filtered: int = 0
    where_filtered: int = 0
    brevo_calls: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "read": self.read,
            "kept": self.kept,
            "not_modified_since_cursor": self.before_cursor,
            "other_status": self.status_filtered,
            "where_false": self.where_filtered,
        }


def attribute_types(attributes: list[dict[str, Any]]) -> dict[str, str]:
    """Attribute name -> Brevo type (text, float, boolean, date, ...) from ``GET /contacts/attributes``."""
    return {str(a.get("name", "")).upper(): str(a.get("type") or a.get("category") or "text") for a in attributes}


def check_attributes(content: ExportContent, types: Mapping[str, str]) -> None:
    """Every attribute the export reads exists in the account, else a ConfigurationError naming it."""
    missing = [name for name in attributes_of(content) if name not in SYSTEM_FIELDS and name not in types]
    if missing:
        raise ConfigurationError(
            f"the Brevo account has no attribute {', '.join(missing)} (named in content.fields or content.where); "
            f"its attributes: {', '.join(sorted(types)) or 'none'}",
            key_path="content.fields",
        )


def choose_method(content: ExportContent, cursor: ExportCursor | None, count: int | None) -> str:
    """``export`` or ``pages``, as :class:`ExportContent.read` says (see the module docstring)."""
    if content.read != "auto":
        return content.read
    if content.status == "unsubscribed_from_list":
        return "export"
    if content.contacts == "all":
        return "pages"
    if content.incremental and cursor is not None:
        return "pages"
    return "pages" if count is not None and count <= content.pages_up_to else "export"


def export_filter(content: ExportContent) -> dict[str, Any]:
    """``customContactFilter`` of ``POST /contacts/export`` for the content."""
    out: dict[str, Any] = {"actionForContacts": _ACTIONS[content.status]}
    if content.list_id is not None:
        out["listId"] = content.list_id
    if content.segment_id is not None:
        out["segmentId"] = content.segment_id
    return out


class ContactReader:
    """Reads one run's contacts from Brevo through a :class:`~..hooks.brevo.BrevoHook`.

    :param hook: the Brevo hook.
    :param content: the definition's content block.
    :param types: the account's attribute types (:func:`attribute_types`).
    :param cursor: the last successful export's cursor (incremental only; None reads everything).
    :param condition: the compiled ``where``, or None.
    """

    def __init__(
        self,
        hook: Any,
        content: ExportContent,
        types: Mapping[str, str],
        *,
        cursor: ExportCursor | None = None,
        condition: Condition | None = None,
        work_dir: str | None = None,
    ) -> None:
        self.hook = hook
        self.content = content
        self.types = dict(types)
        self.cursor = cursor if content.incremental else None
        self.condition = condition
        self.work_dir = work_dir
        self.stats = ReadStats()
        self.last: ExportCursor | None = cursor  # the cursor once this run's contacts are delivered

    def count(self) -> int | None:
        """How many contacts the group holds (one request), for choosing the method."""
        content = self.content
        if content.read != "auto" or content.contacts == "all" or content.status == "unsubscribed_from_list":
            return None
        return self.hook.count_contacts(list_id=content.list_id, segment_id=content.segment_id)

    def contacts(self, method: str) -> Iterator[dict[str, Any]]:
        """The contacts to export, in Brevo's order, each a typed mapping of field names."""
        self.stats.method = method
        source = self._from_export() if method == "export" else self._from_pages()
        for contact in source:
            self.stats.read += 1
            if not self._keeps(contact):
                continue
            self.stats.kept += 1
            modified, contact_id = contact["MODIFIED_TIME"] or "", contact["CONTACT_ID"]
            self.last = (self.last or ExportCursor("")).after(modified, contact_id)
            yield contact

    def _keeps(self, contact: Mapping[str, Any]) -> bool:
        if self.cursor is not None and not self.cursor.is_new(contact["MODIFIED_TIME"] or "", contact["CONTACT_ID"]):
            self.stats.before_cursor += 1
            return False
        if not self._status_matches(contact):
            self.stats.status_filtered += 1
            return False
        if self.condition is not None and not self.condition.keeps(contact):
            self.stats.where_filtered += 1
            return False
        return True

    def _status_matches(self, contact: Mapping[str, Any]) -> bool:
        status = self.content.status
        if status == "subscribed":
            return not contact["EMAIL_BLACKLISTED"]
        if status == "unsubscribed":
            return bool(contact["EMAIL_BLACKLISTED"])
        return True  # any; unsubscribed_from_list was applied by Brevo's export

    # -- pages ----------------------------------------------------------------------------------

    def _from_pages(self) -> Iterator[dict[str, Any]]:
        since = None
        if self.cursor is not None:
            since = dt.datetime.fromisoformat(self.cursor.time)
        for item in self.hook.iter_contacts(
            modified_since=since, list_id=self.content.list_id, segment_id=self.content.segment_id
        ):
            yield self._from_json(item)

    def _from_json(self, item: Mapping[str, Any]) -> dict[str, Any]:
        attributes = item.get("attributes") or {}
        contact: dict[str, Any] = {
            "CONTACT_ID": int(item["id"]),
            "EMAIL": item.get("email"),
            "SMS": attributes.get("SMS"),
            "EXT_ID": attributes.get("EXT_ID"),
            "ADDED_TIME": _utc_text(item.get("createdAt")),
            "MODIFIED_TIME": _utc_text(item.get("modifiedAt")),
            "EMAIL_BLACKLISTED": bool(item.get("emailBlacklisted")),
            "SMS_BLACKLISTED": bool(item.get("smsBlacklisted")),
        }
        for name in attributes_of(self.content):
            if name not in contact:
                contact[name] = self._typed(name, attributes.get(name))
        return contact

    # -- export ---------------------------------------------------------------------------------

    def _from_export(self) -> Iterator[dict[str, Any]]:
        wanted = [name for name in attributes_of(self.content) if name not in _NOT_ATTRIBUTES]
        process_id = self.hook.request_contact_export(export_filter(self.content), wanted)
        (document,) = self.hook.wait_for_processes([process_id])
        url = document.get("export_url")
        if not url:
            raise ConfigurationError(f"Brevo export process {process_id} completed without an export_url")
        handle, path = tempfile.mkstemp(prefix="brevo-export-", suffix=".csv", dir=self.work_dir)
        try:
            with os.fdopen(handle, "wb") as stream:
                self.hook.download_export(url, stream)
            yield from self._read_csv(path)
        finally:
            os.unlink(path)

    def _read_csv(self, path: str) -> Iterator[dict[str, Any]]:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, delimiter=";")
            header = [name.strip().upper() for name in next(reader, [])]
            missing = [name for name in ("CONTACT_ID", "MODIFIED_TIME", "EMAIL_BLACKLISTED") if name not in header]
            if missing:
                raise ConfigurationError(
                    f"Brevo's export file lacks the column(s) {', '.join(missing)}; its header: {', '.join(header)}"
                )
            names = attributes_of(self.content)
            for line_number, values in enumerate(reader, start=2):
                raw = dict(zip(header, values, strict=False))
                try:
                    contact: dict[str, Any] = {
                        "CONTACT_ID": int(raw["CONTACT_ID"]),
                        "EMAIL": raw.get("EMAIL") or None,
                        "SMS": raw.get("SMS") or None,
                        "EXT_ID": raw.get("EXT_ID") or None,
                        "ADDED_TIME": _utc_text(raw.get("ADDED_TIME")),
                        "MODIFIED_TIME": _utc_text(raw.get("MODIFIED_TIME")),
                        "EMAIL_BLACKLISTED": raw.get("EMAIL_BLACKLISTED", "").lower() == "true",
                        "SMS_BLACKLISTED": raw.get("SMS_BLACKLISTED", "").lower() == "true",
                    }
                except ValueError as exc:
                    raise ConfigurationError(f"Brevo's export file, line {line_number}: {exc}") from None
                for name in names:
                    if name not in contact:
                        contact[name] = self._typed(name, raw.get(name) or None)
                yield contact

    def _typed(self, name: str, value: Any) -> Any:
        """A value as the account's attribute type says (CSV gives text; JSON already typed)."""
        if value is None or value == "":
            return None
        kind = self.types.get(name, "text")
        if kind == "float" and isinstance(value, str):
            try:
                number = float(value.replace(",", "."))
            except ValueError:
                return value
            return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        if kind == "boolean" and isinstance(value, str):
            return value.strip().lower() in ("true", "yes", "1")
        return value


def _utc_text(value: Any) -> str | None:
    """Brevo's time stamp as ISO 8601 in UTC with milliseconds (one form for both ways of reading)."""
    if not value:
        return None
    stamp = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")

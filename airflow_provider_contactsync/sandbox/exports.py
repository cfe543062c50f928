"""Contact exports (``POST /contacts/export``): which contacts, which columns, and the CSV file.

The CSV is ``;`` separated, one contact a line in contact id order: ``CONTACT_ID;EMAIL``, the
``exportAttributes`` in the order asked (any case; each once), then ``ADDED_TIME;MODIFIED_TIME;
EMAIL_BLACKLISTED;SMS_BLACKLISTED`` unless ``exportMandatoryAttributes`` is false (one of those four
asked among the attributes stays where it was asked). Values are shown as ``GET /contacts`` shows
them: a category's label, multiple-choice options joined with ``,``, booleans ``true``/``false``,
dates ``YYYY-MM-DD``, times ``2024-01-15T10:30:00.000+00:00`` (the account's time zone is UTC).

Which contacts (``customContactFilter``), with ``listId`` or ``segmentId``:

- ``allContacts``: the list's members, or the segment's;
- ``subscribed`` / ``unsubscribed``: those of them not blacklisted / blacklisted for emails (by any
  means: the API, an import, a campaign's unsubscribe link);
- ``unsubscribedPerList`` (``listId`` only): the contacts who unsubscribed from that list alone
  (``POST /_sandbox/lists/{id}/unsubscribe``) and did not join it again.

``actionForEmailCampaigns: unsubscribed`` exports the contacts who unsubscribed through that
campaign's link, ``actionForSmsCampaigns: unsubscribed`` the contacts blacklisted for SMS; the
sandbox sends no campaigns, so the other campaign actions export no contact.

The file is written row by row from one SQLite snapshot, each value rendered by SQLite and the
quoting done by the ``csv`` module: memory stays flat whatever the size, and a million contacts
take seconds.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from . import errors, segments
from .store import Store, load_attributes
from .validation import db_int

CONTACT_ACTIONS = ("allContacts", "subscribed", "unsubscribed", "unsubscribedPerList")
EMAIL_CAMPAIGN_NEEDS_ID = ("openers", "nonOpeners", "clickers", "nonClickers", "unsubscribed")
EMAIL_CAMPAIGN_ACTIONS = (*EMAIL_CAMPAIGN_NEEDS_ID, "hardBounces", "softBounces")
SMS_CAMPAIGN_ACTIONS = ("hardBounces", "softBounces", "unsubscribed")
MANDATORY = ("ADDED_TIME", "MODIFIED_TIME", "EMAIL_BLACKLISTED", "SMS_BLACKLISTED")
FIRST = ("CONTACT_ID", "EMAIL")
BATCH_ROWS = 500
"""Rows fetched and written at a time: the export's memory, whatever its size."""

_ISO = "strftime('%Y-%m-%dT%H:%M:%f+00:00', {0} / 1000.0, 'unixepoch')"
"""Milliseconds as :func:`~.store.iso` writes them (SQLite rounds the seconds to the millisecond)."""
_FIXED = {
    "CONTACT_ID": "c.id",
    "EMAIL": "c.email",
    "SMS": "c.sms",
    "EXT_ID": "c.ext_id",
    "ADDED_TIME": _ISO.format("c.created_at"),
    "MODIFIED_TIME": _ISO.format("c.modified_at"),
    "EMAIL_BLACKLISTED": "CASE WHEN c.email_blacklisted THEN 'true' ELSE 'false' END",
    "SMS_BLACKLISTED": "CASE WHEN c.sms_blacklisted THEN 'true' ELSE 'false' END",
}
"""Columns that are not attribute values (fixed SQL, no client text)."""


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_request(db: sqlite3.Connection, body: dict[str, Any]) -> None:
    """Refuse (400) an export request Brevo would refuse, before a process is queued."""
    filt = body.get("customContactFilter")
    if filt is None:
        raise errors.missing("customContactFilter is required")
    if not isinstance(filt, dict):
        raise errors.invalid("customContactFilter should be an object")
    action = filt.get("actionForContacts")
    email_action = filt.get("actionForEmailCampaigns")
    sms_action = filt.get("actionForSmsCampaigns")
    if action is None and email_action is None and sms_action is None:
        raise errors.missing("actionForContacts is required")
    if action is not None:
        if action not in CONTACT_ACTIONS:
            raise errors.invalid("actionForContacts is invalid")
        list_id, segment_id = filt.get("listId"), filt.get("segmentId")
        if list_id is None and segment_id is None:
            raise errors.missing("listId or segmentId is required with actionForContacts")
        if list_id is not None and segment_id is not None:
            raise errors.invalid("Either listId or segmentId can be passed, not both")
        if segment_id is not None:
            if segments.find(db, segment_id) is None:
                raise errors.invalid("Segment ID does not exist")
            if action == "unsubscribedPerList":
                raise errors.invalid("unsubscribedPerList is for a list: pass listId, not segmentId")
        elif not _int(list_id) or db.execute("SELECT 1 FROM lists WHERE id=?", (db_int(list_id),)).fetchone() is None:
            raise errors.invalid("List ID does not exist")
    elif email_action is not None:
        if email_action not in EMAIL_CAMPAIGN_ACTIONS:
            raise errors.invalid("actionForEmailCampaigns is invalid")
        campaign = filt.get("emailCampaignId")
        if campaign is not None and not _int(campaign):
            raise errors.invalid("emailCampaignId should be an integer")
        if campaign is None and email_action in EMAIL_CAMPAIGN_NEEDS_ID:
            raise errors.missing(f"emailCampaignId is required with actionForEmailCampaigns {email_action}")
    else:
        if sms_action not in SMS_CAMPAIGN_ACTIONS:
            raise errors.invalid("actionForSmsCampaigns is invalid")
        if filt.get("smsCampaignId") is not None and not _int(filt["smsCampaignId"]):
            raise errors.invalid("smsCampaignId should be an integer")
    mandatory = body.get("exportMandatoryAttributes", True)
    if not isinstance(mandatory, bool):
        raise errors.invalid("exportMandatoryAttributes should be boolean")
    wanted = body.get("exportAttributes")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted)):
        raise errors.invalid("exportAttributes should be an array of strings")
    if not mandatory and not wanted:
        raise errors.missing("exportAttributes is required when exportMandatoryAttributes is false")
    known = load_attributes(db)
    unknown = [a for a in dict.fromkeys(a.strip().upper() for a in wanted or []) if a not in known and a not in _FIXED]
    if unknown:
        raise errors.invalid(
            f"exportAttributes: {', '.join(unknown)} not found"
            " (the attributes must be present in your contact database)"
        )
    for flag in ("disableNotification", "exportDateInUTC"):
        if flag in body and not isinstance(body[flag], bool):
            raise errors.invalid(f"{flag} should be boolean")
    if body.get("notifyUrl") is not None and not isinstance(body["notifyUrl"], str):
        raise errors.invalid("notifyUrl should be a URL")


def selection(db: sqlite3.Connection, filt: dict[str, Any]) -> tuple[str, list[Any]]:
    """``FROM ... WHERE ... ORDER BY`` choosing the contacts (alias ``c``), and its parameters; 400
    ``Segment ID does not exist`` when the segment was deleted since the request."""
    action = filt.get("actionForContacts")
    if action is not None:
        if filt.get("segmentId") is not None:
            where, params = segments.members_sql(db, filt["segmentId"])
            source, order = f"FROM contacts c WHERE ({where})", "c.id"
        elif action == "unsubscribedPerList":
            return (
                "FROM list_unsubscriptions u JOIN contacts c ON c.id = u.contact_id WHERE u.list_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM list_members m WHERE m.list_id = u.list_id AND m.contact_id = u.contact_id)"
                " ORDER BY u.contact_id",
                [db_int(filt["listId"])],
            )
        else:
            source = "FROM list_members m JOIN contacts c ON c.id = m.contact_id WHERE m.list_id = ?"
            params, order = [db_int(filt["listId"])], "m.contact_id"
        if action == "subscribed":
            source += " AND c.email_blacklisted = 0"
        elif action == "unsubscribed":
            source += " AND c.email_blacklisted = 1"
        return f"{source} ORDER BY {order}", params
    if filt.get("actionForEmailCampaigns") == "unsubscribed":
        return (
            "FROM contacts c WHERE c.id IN (SELECT contact_id FROM unsubscriptions WHERE campaign_id = ?)"
            " ORDER BY c.id",
            [db_int(filt["emailCampaignId"])],
        )
    if filt.get("actionForEmailCampaigns") is None and filt.get("actionForSmsCampaigns") == "unsubscribed":
        return "FROM contacts c WHERE c.sms_blacklisted = 1 ORDER BY c.id", []
    return "FROM contacts c WHERE 0", []


def columns(db: sqlite3.Connection, payload: dict[str, Any]) -> tuple[list[str], list[str], list[Any]]:
    """The header, an SQL expression for each column, and the expressions' parameters."""
    asked = [a.strip().upper() for a in payload.get("exportAttributes") or []]
    header = [*FIRST, *(a for a in dict.fromkeys(asked) if a not in FIRST)]
    if payload.get("exportMandatoryAttributes", True) is not False:
        header += [m for m in MANDATORY if m not in header]
    attrs = load_attributes(db)
    exprs: list[str] = []
    params: list[Any] = []
    for name in header:
        attr = attrs.get(name)
        path = segments.json_path(name)
        if name in _FIXED:
            exprs.append(_FIXED[name])
        elif attr is None or path is None:  # deleted since the request: an empty column
            exprs.append("NULL")
        elif attr["type"] == "boolean":
            exprs.append("CASE json_type(c.attributes, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END")
            params.append(path)
        elif attr["type"] == "multiple-choice":
            exprs.append("(SELECT group_concat(o.value, ',') FROM json_each(c.attributes, ?) o)")
            params.append(path)
        elif attr["type"] == "category":
            labels = {str(item["value"]): item["label"] for item in attr["enumeration"] or []}
            exprs.append("json_extract(?, printf('$.\"%s\"', json_extract(c.attributes, ?)))")
            params.extend([json.dumps(labels), path])
        else:
            exprs.append("json_extract(c.attributes, ?)")
            params.append(path)
    return header, exprs, params


class Stopped(Exception):
    """The sandbox is stopping: the export was abandoned (it runs again at the next start)."""


def write_export(
    store: Store, payload: dict[str, Any], path: Path, stop: threading.Event | None = None
) -> tuple[int, int]:
    """Write the export's CSV to ``path`` from one snapshot of the store; returns (rows, bytes).

    Raises :class:`~.errors.ApiError` when the filter no longer names anything that exists (a segment
    deleted since the request), :class:`Stopped` when ``stop`` is set meanwhile; ``path`` is removed
    then.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    filt = payload.get("customContactFilter") or {}
    rows = 0
    try:
        with store.snapshot() as db:
            source, source_params = selection(db, filt)
            header, exprs, column_params = columns(db, payload)
            cursor = db.execute(f"SELECT {', '.join(exprs)} {source}", [*column_params, *source_params])
            with path.open("w", encoding="utf-8", newline="", buffering=1 << 16) as out:
                writer = csv.writer(out, delimiter=";", lineterminator="\n")
                writer.writerow(header)
                while batch := cursor.fetchmany(BATCH_ROWS):
                    if stop is not None and stop.is_set():
                        raise Stopped
                    writer.writerows(batch)
                    rows += len(batch)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return rows, path.stat().st_size

"""Double opt-in: ``POST /contacts/doubleOptinConfirmation`` and the click that confirms it.

Brevo emails the DOI template to the address and creates (or updates) the contact only when the
person clicks the link in it; until then the account does not change. The sandbox keeps each
request as a pending confirmation (``GET /_sandbox/doi``); ``POST /_sandbox/doi/{token}/confirm``
is the click: the contact gets the request's attributes, joins ``includeListIds`` and leaves
``excludeListIds``, and the answer carries the ``redirectionUrl`` the person would land on.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from . import contacts, errors
from .store import iso, list_exists, load_attributes, now_ms
from .validation import normalize_email


def _ids(body: dict[str, Any], key: str, *, required: bool) -> list[int]:
    value = body.get(key)
    if value is None:
        if required:
            raise errors.missing(f"{key} is required")
        return []
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise errors.invalid(f"{key} should be an array of integers")
    if required and not value:
        raise errors.invalid(f"{key} should not be empty")
    return value


def _attribute_value_ok(value: Any) -> bool:
    """The spec's oneOf: number, string, boolean, or array of strings."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return isinstance(value, (str, int, bool))


def parse_request(body: dict[str, Any], template_ids: Sequence[int]) -> dict[str, Any]:
    """The validated request (400 ``missing_parameter`` / ``invalid_parameter`` otherwise)."""
    for key in ("email", "includeListIds", "redirectionUrl", "templateId"):
        if body.get(key) is None:
            raise errors.missing(f"{key} is required")
    if not isinstance(body["email"], str):
        raise errors.invalid("email should be a string")
    email = normalize_email(body["email"])
    if email is None:
        raise errors.invalid("Invalid email address")
    include = _ids(body, "includeListIds", required=True)
    exclude = _ids(body, "excludeListIds", required=False)
    url = body["redirectionUrl"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.invalid("redirectionUrl should be an http(s) URL")
    template = body["templateId"]
    if not isinstance(template, int) or isinstance(template, bool):
        raise errors.invalid("templateId should be an integer")
    attributes = body.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise errors.invalid("attributes should be an object")
    for name, value in attributes.items():
        if not _attribute_value_ok(value):
            raise errors.invalid(f"attributes.{name} should be a number, a string, a boolean or an array of strings")
    consent = body.get("contactPixelTrackingConsent")
    if consent is not None and not isinstance(consent, bool):
        raise errors.invalid("contactPixelTrackingConsent should be boolean")
    if template not in template_ids:
        raise errors.invalid("Template ID does not exist")
    return {
        "email": email,
        "templateId": template,
        "includeListIds": include,
        "excludeListIds": exclude,
        "attributes": attributes,
        "redirectionUrl": url,
    }


def submit(db: sqlite3.Connection, request: dict[str, Any]) -> bool:
    """Keep ``request`` as a pending confirmation; whether a contact with its email exists already
    (Brevo answers 204 then, 201 for a new one). 400 for a list that does not exist."""
    missing = [i for i in request["includeListIds"] + request["excludeListIds"] if not list_exists(db, i)]
    if missing:
        raise errors.invalid(f"List ID(s) not found: {','.join(map(str, dict.fromkeys(missing)))}")
    db.execute(
        "INSERT INTO doi_requests VALUES (?,?,?,?,?,?,?,?)",
        (
            secrets.token_urlsafe(16),
            request["email"],
            request["templateId"],
            json.dumps(request["includeListIds"]),
            json.dumps(request["excludeListIds"]),
            json.dumps(request["attributes"]),
            request["redirectionUrl"],
            now_ms(),
        ),
    )
    return contacts.find(db, "email", request["email"]) is not None


def pending(db: sqlite3.Connection, email: str | None = None) -> list[dict[str, Any]]:
    """Confirmations not clicked yet, oldest first (only ``email``'s when given)."""
    sql = "SELECT * FROM doi_requests"
    params: tuple[Any, ...] = ()
    if email is not None:
        sql += " WHERE email=?"
        params = (normalize_email(email) or email.strip().lower(),)
    return [
        {
            "token": row["token"],
            "email": row["email"],
            "templateId": row["template_id"],
            "includeListIds": json.loads(row["include_list_ids"]),
            "excludeListIds": json.loads(row["exclude_list_ids"]),
            "attributes": json.loads(row["attributes"]),
            "redirectionUrl": row["redirection_url"],
            "requested_at": iso(row["requested_at"]),
        }
        for row in db.execute(sql + " ORDER BY requested_at, token", params)
    ]


def confirm(db: sqlite3.Connection, token: str) -> dict[str, Any]:
    """The person clicked the link: create or update the contact; 404 for a token that is not pending.

    Attributes follow the API's rules (unknown ones and values that do not fit are dropped, an empty
    value erases); lists deleted since the request are skipped; a list in both ``includeListIds``
    and ``excludeListIds`` is left. The blacklist flags are not changed.
    """
    row = db.execute("SELECT * FROM doi_requests WHERE token=?", (token,)).fetchone()
    if row is None:
        raise errors.not_found("No pending double opt-in confirmation for this token")
    draft = contacts.Draft()
    contacts.parse_attributes(json.loads(row["attributes"]), load_attributes(db), draft, strict=False)
    draft.email = row["email"]
    exclude = [i for i in json.loads(row["exclude_list_ids"]) if list_exists(db, i)]
    draft.list_ids = [i for i in json.loads(row["include_list_ids"]) if list_exists(db, i) and i not in exclude]
    existing = contacts.find(db, "email", row["email"])
    if existing is None:
        contact_id = contacts.insert(db, draft)
    else:
        draft.unlink_list_ids = exclude
        contacts.update(db, existing, draft)
        contact_id = existing["id"]
    db.execute("DELETE FROM doi_requests WHERE token=?", (token,))
    return {"redirectionUrl": row["redirection_url"], "contactId": contact_id, "created": existing is None}

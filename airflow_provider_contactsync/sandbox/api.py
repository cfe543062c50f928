"""The Brevo API v3 endpoints the sandbox serves: routing, request validation, answers.

Handlers take a :class:`Request` and return a :class:`Response`, or raise
:class:`~.errors.ApiError`; the HTTP layer (``server.py``) owns sockets, auth, limits and faults.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from . import contacts, doi, errors, exports, segments
from .imports import ProcessWorker
from .jsonbody import parse_json
from .settings import Settings
from .store import (
    Store,
    insert_attribute,
    iso,
    list_exists,
    load_attributes,
    now_ms,
    render_contacts,
    render_process,
    render_unsubscriptions,
    touch_members,
)
from .validation import ATTRIBUTE_CATEGORIES, ATTRIBUTE_TYPES, INT64_MAX, db_int, digits, normalize_email


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (400 ``invalid_parameter`` otherwise, as Brevo answers); see
        :func:`~.jsonbody.parse_json` for the bounds."""
        if not self.body.strip():
            raise errors.missing("Request body is missing")
        value = parse_json(self.body)
        if not isinstance(value, dict):
            raise errors.invalid("Input must be a json object")
        return value

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def int_arg(self, name: str, default: int, *, maximum: int = INT64_MAX) -> int:
        raw = self.arg(name)
        if raw is None or raw == "":
            return default
        value = digits(raw.removeprefix("-"))
        if value is None:
            raise errors.invalid(f"{name} should be an integer")
        if raw.startswith("-") and value:
            raise errors.out_of_range(f"{name} should be greater than or equal to 0")
        if value > maximum:
            raise errors.out_of_range(f"{name} should be less than or equal to {maximum}")
        return value

    def sort_arg(self) -> str:
        value = self.arg("sort") or "desc"
        if value not in ("asc", "desc"):
            raise errors.invalid("sort should be asc or desc")
        return value

    def since_arg(self, name: str) -> int | None:
        raw = self.arg(name)
        if raw is None or raw == "":
            return None
        return parse_since(name, raw)


@dataclass
class Response:
    status: int
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def parse_since(name: str, raw: str) -> int:
    """Milliseconds from an ISO 8601 date-time (UTC when no offset is given)."""
    text = raw.strip().replace(" ", "+")  # an unencoded '+' of the offset arrives as a space
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp() * 1000)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range by its offset
        raise errors.invalid(f"{name} should be a date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)") from None


def _int_param(req: Request, name: str, label: str) -> int | None:
    """A path id; ``None`` when it is beyond int64 (it names nothing: the caller answers 404)."""
    value = digits(req.params[name])
    if value is None:
        raise errors.invalid(f"{label} should be an integer")
    return db_int(value)


def _ids_arg(req: Request, name: str) -> list[int | None]:
    """Comma-separated ids from the query; ``None`` stands for one beyond int64 (matches nothing)."""
    out: list[int | None] = []
    for value in req.query.get(name, []):
        for part in value.split(","):
            if part.strip() == "":
                continue
            number = digits(part.strip())
            if number is None:
                raise errors.invalid(f"{name} should be an array of integers")
            out.append(db_int(number))
    return out


def _folder_exists(db: sqlite3.Connection, folder_id: Any) -> bool:
    if not isinstance(folder_id, int) or isinstance(folder_id, bool):
        return False
    return db.execute("SELECT 1 FROM folders WHERE id=?", (db_int(folder_id),)).fetchone() is not None


Handler = Callable[[Request], Response]


class Api:
    """Route table and handlers over one :class:`Store`."""

    def __init__(self, store: Store, worker: ProcessWorker, settings: Settings, base_url: Callable[[], str]):
        self.store = store
        self.worker = worker
        self.settings = settings
        self.base_url = base_url
        p = r"([^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Handler, tuple[str, ...]]] = []
        for method, pattern, handler, names in [
            ("GET", "/account", self.get_account, ()),
            ("GET", "/contacts", self.get_contacts, ()),
            ("POST", "/contacts", self.create_contact, ()),
            ("GET", "/contacts/attributes", self.get_attributes, ()),
            ("POST", f"/contacts/attributes/{p}/{p}", self.create_attribute, ("category", "name")),
            ("PUT", f"/contacts/attributes/{p}/{p}", self.update_attribute, ("category", "name")),
            ("DELETE", f"/contacts/attributes/{p}/{p}", self.delete_attribute, ("category", "name")),
            ("POST", "/contacts/batch", self.update_batch, ()),
            ("POST", "/contacts/doubleOptinConfirmation", self.create_doi_contact, ()),
            ("POST", "/contacts/import", self.import_contacts, ()),
            ("POST", "/contacts/export", self.export_contacts, ()),
            ("GET", "/contacts/folders", self.get_folders, ()),
            ("POST", "/contacts/folders", self.create_folder, ()),
            ("GET", f"/contacts/folders/{p}", self.get_folder, ("folderId",)),
            ("PUT", f"/contacts/folders/{p}", self.update_folder, ("folderId",)),
            ("DELETE", f"/contacts/folders/{p}", self.delete_folder, ("folderId",)),
            ("GET", f"/contacts/folders/{p}/lists", self.get_folder_lists, ("folderId",)),
            ("GET", "/contacts/segments", self.get_segments, ()),
            ("GET", "/contacts/lists", self.get_lists, ()),
            ("POST", "/contacts/lists", self.create_list, ()),
            ("GET", f"/contacts/lists/{p}", self.get_list, ("listId",)),
            ("PUT", f"/contacts/lists/{p}", self.update_list, ("listId",)),
            ("DELETE", f"/contacts/lists/{p}", self.delete_list, ("listId",)),
            ("GET", f"/contacts/lists/{p}/contacts", self.get_list_contacts, ("listId",)),
            ("POST", f"/contacts/lists/{p}/contacts/add", self.add_to_list, ("listId",)),
            ("POST", f"/contacts/lists/{p}/contacts/remove", self.remove_from_list, ("listId",)),
            ("GET", f"/contacts/{p}", self.get_contact, ("identifier",)),
            ("PUT", f"/contacts/{p}", self.update_contact, ("identifier",)),
            ("DELETE", f"/contacts/{p}", self.delete_contact, ("identifier",)),
            ("GET", "/processes", self.get_processes, ()),
            ("GET", f"/processes/{p}", self.get_process, ("processId",)),
        ]:
            self.routes.append((method, re.compile(f"/v3{pattern}/?"), handler, names))

    def dispatch(self, req: Request) -> Response:
        """Route ``req``; HEAD is answered as GET (the HTTP layer leaves out the body). A known path
        with another method is 405 ``method_not_allowed`` (with ``Allow``), an unknown one 404."""
        wanted = "GET" if req.method == "HEAD" else req.method
        allowed: list[str] = []
        for method, pattern, handler, names in self.routes:
            match = pattern.fullmatch(req.path)
            if not match:
                continue
            if method != wanted:
                allowed.append(method)
                continue
            req.params = {n: unquote(v) for n, v in zip(names, match.groups(), strict=False)}
            return handler(req)
        if allowed:
            if "GET" in allowed:
                allowed.append("HEAD")
            raise errors.ApiError(
                405,
                "method_not_allowed",
                f"{req.method} Method is not allowed on this path",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise errors.not_found("Invalid URL")

    # --- account -----------------------------------------------------------------------------------

    def get_account(self, req: Request) -> Response:
        return Response(
            200,
            {
                "organization_id": "sandbox",
                "user_id": 1,
                "enterprise": False,
                "email": "sandbox@example.com",
                "firstName": "Brevo",
                "lastName": "Sandbox",
                "companyName": "contactsync sandbox",
                "address": {
                    "city": "Paris",
                    "country": "France",
                    "street": "1 rue du Test",
                    "zipCode": "75001",
                },
                "dateTimePreferences": {"timezone": "UTC", "timeFormat": "24", "dateFormat": "yyyy-mm-dd"},
                "plan": [{"type": "free", "creditsType": "sendLimit", "credits": 300}],
                "relay": {
                    "enabled": False,
                    "data": {"userName": "sandbox@example.com", "relay": "127.0.0.1", "port": 587},
                },
            },
        )

    # --- contacts ----------------------------------------------------------------------------------

    def get_contacts(self, req: Request) -> Response:
        limit = req.int_arg("limit", 50, maximum=1000)
        offset = req.int_arg("offset", 0)
        sort = req.sort_arg()
        modified = req.since_arg("modifiedSince")
        created = req.since_arg("createdSince")
        list_ids = _ids_arg(req, "listIds")
        ids = _ids_arg(req, "ids")
        segment = req.arg("segmentId")
        if list_ids and segment:
            raise errors.invalid("Either listIds or segmentId can be passed, not both")
        where, params = [], []
        if segment:  # the segment's rules as they are now (segments are dynamic)
            segment_id = digits(segment)
            if segment_id is None:
                raise errors.invalid("segmentId should be an integer")
            with self.store.reading() as db:
                condition, condition_params = segments.members_sql(db, db_int(segment_id))
            where.append(f"({condition})")
            params.extend(condition_params)
        if modified is not None:
            where.append("c.modified_at >= ?")
            params.append(modified)
        if created is not None:
            where.append("c.created_at >= ?")
            params.append(created)
        if list_ids:  # json_each: no limit on the number of ids (SQLite caps bound parameters)
            where.append(
                "c.id IN (SELECT contact_id FROM list_members WHERE list_id IN (SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(list_ids))
        if ids:
            where.append("c.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(ids))
        return Response(200, self._contacts_page(where, params, sort, limit, offset))

    def _contacts_page(self, where: list[str], params: list[Any], sort: str, limit: int, offset: int) -> dict:
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if sort == "desc" else "ASC"
        with self.store.reading() as db:
            count = db.execute(f"SELECT COUNT(*) FROM contacts c{clause}", params).fetchone()[0]
            rows = db.execute(
                f"SELECT c.* FROM contacts c{clause} ORDER BY c.created_at {order}, c.id {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return {"contacts": render_contacts(db, rows), "count": count}

    def create_contact(self, req: Request) -> Response:
        body = req.json()
        with self.store.transaction() as db:
            new_id = contacts.create_contact(db, body)
        return Response(201, {"id": new_id}) if new_id is not None else Response(204)

    def _identifier_type(self, req: Request) -> str | None:
        value = req.arg("identifierType")
        allowed = ("email_id", "contact_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id")
        if value is not None and value not in allowed:
            raise errors.invalid(f"identifierType should be one of {', '.join(allowed)}")
        return value

    def get_contact(self, req: Request) -> Response:
        kind = self._identifier_type(req)
        for name in ("startDate", "endDate"):
            raw = req.arg(name)
            if raw and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                raise errors.invalid(f"{name} should be a date (YYYY-MM-DD)")
        if bool(req.arg("startDate")) != bool(req.arg("endDate")):
            raise errors.missing("startDate and endDate go together")
        with self.store.reading() as db:
            row = contacts.lookup(db, req.params["identifier"], kind)
            contact = render_contacts(db, [row])[0]
            contact["statistics"] = {"unsubscriptions": render_unsubscriptions(db, row["id"])}
        return Response(200, contact)

    def update_contact(self, req: Request) -> Response:
        kind = self._identifier_type(req)
        body = req.json()
        with self.store.transaction() as db:
            row = contacts.lookup(db, req.params["identifier"], kind)
            draft = contacts.parse_body(body, load_attributes(db), for_update=True)
            contacts.update(db, row, draft)
        return Response(204)

    def delete_contact(self, req: Request) -> Response:
        kind = self._identifier_type(req)
        with self.store.transaction() as db:
            row = contacts.lookup(db, req.params["identifier"], kind)
            db.execute("DELETE FROM list_members WHERE contact_id=?", (row["id"],))
            db.execute("DELETE FROM unsubscriptions WHERE contact_id=?", (row["id"],))
            db.execute("DELETE FROM list_unsubscriptions WHERE contact_id=?", (row["id"],))
            db.execute("DELETE FROM contacts WHERE id=?", (row["id"],))
        return Response(204)

    def update_batch(self, req: Request) -> Response:
        body = req.json()
        with self.store.transaction() as db:
            contacts.update_batch(db, body, self.settings.max_batch_contacts)
        return Response(204)

    def create_doi_contact(self, req: Request) -> Response:
        """201 when the confirmation goes to a new contact, 204 when the contact exists; nothing
        changes until the confirmation is clicked (see :mod:`.doi`)."""
        request = doi.parse_request(req.json(), self.settings.doi_template_ids)
        with self.store.transaction() as db:
            exists = doi.submit(db, request)
        return Response(204 if exists else 201)

    # --- attributes --------------------------------------------------------------------------------

    def get_attributes(self, req: Request) -> Response:
        with self.store.reading() as db:
            attrs = load_attributes(db)
        out = []
        for attr in attrs.values():
            item: dict[str, Any] = {"name": attr["name"], "category": attr["category"]}
            # Brevo lists category attributes as type "text" with their enumeration (see the spec).
            item["type"] = "text" if attr["type"] == "category" else attr["type"]
            if attr["enumeration"] is not None:
                item["enumeration"] = attr["enumeration"]
            if attr["options"] is not None:
                item["multiCategoryOptions"] = attr["options"]
            if attr["value"] is not None:
                item["calculatedValue"] = attr["value"]
            out.append(item)
        return Response(200, {"attributes": out})

    @staticmethod
    def _attr_path(req: Request, categories: tuple[str, ...] = ATTRIBUTE_CATEGORIES) -> tuple[str, str]:
        category = req.params["category"]
        if category not in categories:
            raise errors.invalid(f"attributeCategory should be one of {', '.join(categories)}")
        name = req.params["name"].strip().upper()
        if not re.fullmatch(r"[A-Z0-9_][A-Z0-9_\-]{0,49}", name):
            raise errors.invalid("Attribute name should use letters, digits, '_' or '-' (at most 50)")
        return category, name

    @staticmethod
    def _enumeration(body: dict[str, Any]) -> list[dict[str, Any]] | None:
        enum = body.get("enumeration")
        if enum is None:
            return None
        if not isinstance(enum, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("value"), int)
            and not isinstance(e.get("value"), bool)
            and isinstance(e.get("label"), str)
            and 0 < len(e["label"]) <= 200
            for e in enum
        ):
            raise errors.invalid("enumeration should be an array of {value: integer, label: string}")
        if len({e["value"] for e in enum}) != len(enum):
            raise errors.invalid("enumeration values should be unique")
        return [{"value": e["value"], "label": e["label"]} for e in enum]

    @staticmethod
    def _options(body: dict[str, Any]) -> list[str] | None:
        options = body.get("multiCategoryOptions")
        if options is None:
            return None
        if not isinstance(options, list) or not all(isinstance(o, str) and 0 < len(o) <= 200 for o in options):
            raise errors.invalid("multiCategoryOptions should be an array of strings")
        return list(dict.fromkeys(options))

    def create_attribute(self, req: Request) -> Response:
        category, name = self._attr_path(req)
        body = req.json()
        type_ = body.get("type")
        if category in ("calculated", "global"):
            if not isinstance(body.get("value"), str) or not body["value"]:
                raise errors.missing("value is required for calculated and global attributes")
            type_ = type_ or "text"
        elif category == "category":
            type_ = type_ or "category"
        else:
            type_ = type_ or "text"
        if type_ not in ATTRIBUTE_TYPES:
            raise errors.invalid(f"type should be one of {', '.join(ATTRIBUTE_TYPES)}")
        if (type_ == "category") != (category == "category"):
            raise errors.invalid("Type category is only available with the category category")
        if type_ in ("multiple-choice", "user") and category != "normal":
            raise errors.invalid(f"Type {type_} is only available with the normal category")
        if type_ == "id" and category != "transactional":
            raise errors.invalid("Type id is only available with the transactional category")
        enumeration = self._enumeration(body)
        if category == "category" and not enumeration:
            raise errors.missing("enumeration is required for category attributes")
        options = self._options(body)
        if type_ == "multiple-choice" and not options:
            raise errors.missing("multiCategoryOptions is required for multiple-choice attributes")
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM attributes WHERE name=?", (name,)).fetchone():
                raise errors.invalid("Attribute name already exists")
            insert_attribute(
                db,
                name,
                category,
                type_,
                enumeration=enumeration,
                options=options if type_ == "multiple-choice" else None,
                value=body.get("value"),
            )
        return Response(201)

    def update_attribute(self, req: Request) -> Response:
        category, name = self._attr_path(req, ("category", "calculated", "global", "normal"))
        body = req.json()
        enumeration = self._enumeration(body)
        options = self._options(body)
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM attributes WHERE name=? AND category=?", (name, category)).fetchone()
            if row is None:
                raise errors.not_found("Attribute not found")
            if enumeration is not None:
                if category != "category":
                    raise errors.invalid("enumeration is only available for category attributes")
                db.execute("UPDATE attributes SET enumeration=? WHERE name=?", (json.dumps(enumeration), name))
            if options is not None:
                if row["type"] != "multiple-choice":
                    raise errors.invalid("multiCategoryOptions is only available for multiple-choice attributes")
                merged = list(dict.fromkeys([*json.loads(row["options"] or "[]"), *options]))
                db.execute("UPDATE attributes SET options=? WHERE name=?", (json.dumps(merged), name))
            if body.get("value") is not None:
                if category not in ("calculated", "global"):
                    raise errors.invalid("value is only available for calculated and global attributes")
                db.execute("UPDATE attributes SET value=? WHERE name=?", (str(body["value"]), name))
        return Response(204)

    def delete_attribute(self, req: Request) -> Response:
        category, name = self._attr_path(req)
        with self.store.transaction() as db:
            cur = db.execute("DELETE FROM attributes WHERE name=? AND category=?", (name, category))
            if cur.rowcount == 0:
                raise errors.not_found("Attribute not found")
            db.execute("UPDATE contacts SET attributes = json_remove(attributes, ?)", ("$." + name,))
        return Response(204)

    # --- import / export / processes ---------------------------------------------------------------

    def import_contacts(self, req: Request) -> Response:
        if len(req.body) > self.settings.max_import_bytes:
            raise errors.out_of_range("Request body size exceeds the 10 MB limit; use fileUrl for bigger imports")
        body = req.json()
        sources = [k for k in ("jsonBody", "fileBody", "fileUrl") if body.get(k) is not None]
        if not sources:
            raise errors.missing("One of fileUrl, fileBody or jsonBody is required")
        if len(sources) > 1:
            raise errors.invalid("Pass only one of fileUrl, fileBody or jsonBody")
        if sources[0] == "fileUrl":
            raise errors.invalid("fileUrl is not supported by the sandbox: use fileBody or jsonBody")
        if "jsonBody" in body and (
            not isinstance(body["jsonBody"], list) or not all(isinstance(r, dict) for r in body["jsonBody"])
        ):
            raise errors.invalid("jsonBody should be an array of objects")
        if "fileBody" in body and not isinstance(body["fileBody"], str):
            raise errors.invalid("fileBody should be a string")
        for flag in (
            "updateExistingContacts",
            "emptyContactsAttributes",
            "emailBlacklist",
            "smsBlacklist",
            "disableNotification",
        ):
            if flag in body and not isinstance(body[flag], bool):
                raise errors.invalid(f"{flag} should be boolean")
        list_ids = body.get("listIds")
        new_list = body.get("newList")
        if list_ids is not None and (
            not isinstance(list_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in list_ids)
        ):
            raise errors.invalid("listIds should be an array of integers")
        if not list_ids and not new_list:
            raise errors.missing("listIds is required when newList is not passed")
        with self.store.reading() as db:
            missing = [i for i in list_ids or [] if not list_exists(db, i)]
            if missing:
                raise errors.invalid(f"List ID(s) not found: {','.join(map(str, missing))}")
            if new_list is not None:
                if (
                    not isinstance(new_list, dict)
                    or not isinstance(new_list.get("listName"), str)
                    or not new_list["listName"].strip()
                ):
                    raise errors.missing("newList.listName is required")
                folder = new_list.get("folderId")
                if folder is not None and not _folder_exists(db, folder):
                    raise errors.invalid("newList.folderId does not exist")
        if body.get("notifyUrl") is not None and not isinstance(body["notifyUrl"], str):
            raise errors.invalid("notifyUrl should be a URL")
        pid = self.worker.submit("IMPORTUSER", body, raw=req.body)
        return Response(202, {"processId": pid})

    def export_contacts(self, req: Request) -> Response:
        """202 with the process that writes the CSV (see :mod:`.exports`); 400 for a request Brevo refuses."""
        body = req.json()
        with self.store.reading() as db:
            exports.check_request(db, body)
        pid = self.worker.submit("SEARCH_EXPORT_USERS", body)
        return Response(202, {"processId": pid})

    def get_processes(self, req: Request) -> Response:
        limit = req.int_arg("limit", 10, maximum=50)
        offset = req.int_arg("offset", 0)
        order = "DESC" if req.sort_arg() == "desc" else "ASC"
        base = self.base_url()
        with self.store.reading() as db:
            count = db.execute("SELECT COUNT(*) FROM processes").fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM processes ORDER BY id {order} LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Response(200, {"count": count, "processes": [render_process(r, base) for r in rows]})

    def get_process(self, req: Request) -> Response:
        process_id = digits(req.params["processId"])
        if process_id is None:
            raise errors.invalid("processId is invalid")
        with self.store.reading() as db:
            row = db.execute("SELECT * FROM processes WHERE id=?", (db_int(process_id),)).fetchone()
        if row is None:
            raise errors.ApiError(404, "invalid_parameter", "processId is invalid")
        return Response(200, render_process(row, self.base_url()))

    # --- segments ----------------------------------------------------------------------------------

    def get_segments(self, req: Request) -> Response:
        """The account's segments (defined through ``POST /_sandbox/segments``), by creation."""
        limit = req.int_arg("limit", 10, maximum=50)
        offset = req.int_arg("offset", 0)
        order = "DESC" if req.sort_arg() == "desc" else "ASC"
        with self.store.reading() as db:
            count = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM segments ORDER BY id {order} LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Response(200, {"segments": [segments.render(r) for r in rows], "count": count})

    # --- folders -----------------------------------------------------------------------------------

    @staticmethod
    def _folder_json(db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        total, blacklisted = db.execute(
            "SELECT COUNT(DISTINCT m.contact_id),"
            " COUNT(DISTINCT CASE WHEN c.email_blacklisted=1 THEN c.id END)"
            " FROM lists l JOIN list_members m ON m.list_id = l.id JOIN contacts c ON c.id = m.contact_id"
            " WHERE l.folder_id=?",
            (row["id"],),
        ).fetchone()
        return {
            "id": row["id"],
            "name": row["name"],
            "totalBlacklisted": blacklisted,
            "totalSubscribers": total,
            "uniqueSubscribers": total,
        }

    def get_folders(self, req: Request) -> Response:
        limit = req.int_arg("limit", 10, maximum=50)
        offset = req.int_arg("offset", 0)
        order = "DESC" if req.sort_arg() == "desc" else "ASC"
        with self.store.reading() as db:
            count = db.execute("SELECT COUNT(*) FROM folders").fetchone()[0]
            rows = db.execute(f"SELECT * FROM folders ORDER BY id {order} LIMIT ? OFFSET ?", (limit, offset))
            return Response(200, {"count": count, "folders": [self._folder_json(db, r) for r in rows.fetchall()]})

    @staticmethod
    def _name(body: dict[str, Any], key: str = "name") -> str:
        name = body.get(key)
        if name is None:
            raise errors.missing(f"{key} is required")
        if not isinstance(name, str) or not name.strip():
            raise errors.invalid(f"{key} should be a non-empty string")
        return name.strip()

    def create_folder(self, req: Request) -> Response:
        name = self._name(req.json())
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO folders(name, created_at) VALUES (?,?)", (name, now_ms()))
        return Response(201, {"id": cur.lastrowid})

    def _folder_row(self, db: sqlite3.Connection, req: Request) -> sqlite3.Row:
        folder_id = _int_param(req, "folderId", "folderId")
        row = db.execute("SELECT * FROM folders WHERE id=?", (folder_id,)).fetchone()
        if row is None:
            raise errors.not_found("Folder ID does not exist")
        return row

    def get_folder(self, req: Request) -> Response:
        with self.store.reading() as db:
            return Response(200, self._folder_json(db, self._folder_row(db, req)))

    def update_folder(self, req: Request) -> Response:
        name = self._name(req.json())
        with self.store.transaction() as db:
            row = self._folder_row(db, req)
            db.execute("UPDATE folders SET name=? WHERE id=?", (name, row["id"]))
        return Response(204)

    def delete_folder(self, req: Request) -> Response:
        with self.store.transaction() as db:
            row = self._folder_row(db, req)
            where = "list_id IN (SELECT id FROM lists WHERE folder_id=?)"
            touch_members(db, where, (row["id"],), now_ms())
            db.execute(f"DELETE FROM list_members WHERE {where}", (row["id"],))
            db.execute(f"DELETE FROM list_unsubscriptions WHERE {where}", (row["id"],))
            db.execute("DELETE FROM lists WHERE folder_id=?", (row["id"],))
            db.execute("DELETE FROM folders WHERE id=?", (row["id"],))
        return Response(204)

    def get_folder_lists(self, req: Request) -> Response:
        limit = req.int_arg("limit", 10, maximum=50)
        offset = req.int_arg("offset", 0)
        order = "DESC" if req.sort_arg() == "desc" else "ASC"
        with self.store.reading() as db:
            folder = self._folder_row(db, req)
            count = db.execute("SELECT COUNT(*) FROM lists WHERE folder_id=?", (folder["id"],)).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM lists WHERE folder_id=? ORDER BY id {order} LIMIT ? OFFSET ?",
                (folder["id"], limit, offset),
            ).fetchall()
            return Response(200, {"count": count, "lists": [self._list_json(db, r) for r in rows]})

    # --- lists -------------------------------------------------------------------------------------

    @staticmethod
    def _list_json(db: sqlite3.Connection, row: sqlite3.Row, details: bool = False) -> dict[str, Any]:
        total, blacklisted = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(c.email_blacklisted), 0) FROM list_members m"
            " JOIN contacts c ON c.id = m.contact_id WHERE m.list_id=?",
            (row["id"],),
        ).fetchone()
        out = {
            "id": row["id"],
            "name": row["name"],
            "totalBlacklisted": blacklisted,
            "totalSubscribers": total,
            "uniqueSubscribers": total,
            "folderId": row["folder_id"],
        }
        if details:
            out.update({"createdAt": iso(row["created_at"]), "dynamicList": False})
        return out

    def _list_row(self, db: sqlite3.Connection, req: Request) -> sqlite3.Row:
        list_id = _int_param(req, "listId", "listId")
        row = db.execute("SELECT * FROM lists WHERE id=?", (list_id,)).fetchone()
        if row is None:
            raise errors.not_found("List ID does not exist")
        return row

    def get_lists(self, req: Request) -> Response:
        limit = req.int_arg("limit", 10, maximum=50)
        offset = req.int_arg("offset", 0)
        order = "DESC" if req.sort_arg() == "desc" else "ASC"
        with self.store.reading() as db:
            count = db.execute("SELECT COUNT(*) FROM lists").fetchone()[0]
            rows = db.execute(f"SELECT * FROM lists ORDER BY id {order} LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            return Response(200, {"count": count, "lists": [self._list_json(db, r) for r in rows]})

    def create_list(self, req: Request) -> Response:
        body = req.json()
        name = self._name(body)
        folder_id = body.get("folderId")
        if folder_id is None:
            raise errors.missing("folderId is required")
        if not isinstance(folder_id, int) or isinstance(folder_id, bool):
            raise errors.invalid("folderId should be an integer")
        with self.store.transaction() as db:
            if not _folder_exists(db, folder_id):
                raise errors.invalid("Folder ID does not exist")
            cur = db.execute(
                "INSERT INTO lists(name, folder_id, created_at) VALUES (?,?,?)", (name, folder_id, now_ms())
            )
        return Response(201, {"id": cur.lastrowid})

    def get_list(self, req: Request) -> Response:
        for name in ("startDate", "endDate"):
            raw = req.arg(name)
            if raw:
                parse_since(name, raw)
        with self.store.reading() as db:
            return Response(200, self._list_json(db, self._list_row(db, req), details=True))

    def update_list(self, req: Request) -> Response:
        body = req.json()
        if body.get("name") is None and body.get("folderId") is None:
            raise errors.missing("name or folderId is required")
        if body.get("name") is not None and body.get("folderId") is not None:
            raise errors.invalid("Either name or folderId can be updated at a time")
        with self.store.transaction() as db:
            row = self._list_row(db, req)
            if body.get("name") is not None:
                db.execute("UPDATE lists SET name=? WHERE id=?", (self._name(body), row["id"]))
            else:
                folder_id = body["folderId"]
                if not _folder_exists(db, folder_id):
                    raise errors.invalid("Folder ID does not exist")
                db.execute("UPDATE lists SET folder_id=? WHERE id=?", (folder_id, row["id"]))
        return Response(204)

    def delete_list(self, req: Request) -> Response:
        with self.store.transaction() as db:
            row = self._list_row(db, req)
            touch_members(db, "list_id=?", (row["id"],), now_ms())
            db.execute("DELETE FROM list_members WHERE list_id=?", (row["id"],))
            db.execute("DELETE FROM list_unsubscriptions WHERE list_id=?", (row["id"],))
            db.execute("DELETE FROM lists WHERE id=?", (row["id"],))
        return Response(204)

    def get_list_contacts(self, req: Request) -> Response:
        limit = req.int_arg("limit", 50, maximum=500)
        offset = req.int_arg("offset", 0)
        sort = req.sort_arg()
        modified = req.since_arg("modifiedSince")
        with self.store.reading() as db:
            row = self._list_row(db, req)
        where = ["c.id IN (SELECT contact_id FROM list_members WHERE list_id = ?)"]
        params: list[Any] = [row["id"]]
        if modified is not None:
            where.append("c.modified_at >= ?")
            params.append(modified)
        return Response(200, self._contacts_page(where, params, sort, limit, offset))

    def _members_body(self, req: Request, allow_all: bool) -> tuple[str, list[Any]]:
        body = req.json()
        given = [k for k in ("emails", "ids", "extIds") if body.get(k) is not None]
        if allow_all and body.get("all") is True and not given:
            return "all", []
        if not given:
            raise errors.missing("One of emails, ids or extIds is required" + (" (or all: true)" if allow_all else ""))
        if len(given) > 1:
            raise errors.invalid("Pass only one of emails, ids or extIds")
        key = given[0]
        values = body[key]
        if not isinstance(values, list) or not values:
            raise errors.invalid(f"{key} should be a non-empty array")
        if len(values) > 150:
            raise errors.out_of_range(f"{key}: at most 150 contacts per call")
        if key == "ids" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise errors.invalid("ids should be an array of integers")
        if key != "ids" and not all(isinstance(v, str) for v in values):
            raise errors.invalid(f"{key} should be an array of strings")
        return key, values

    def _member_ids(self, db: sqlite3.Connection, key: str, values: list[Any]) -> list[tuple[Any, int | None]]:
        column = {"emails": "email", "ids": "id", "extIds": "ext_id"}[key]
        out = []
        for value in values:
            lookup = (normalize_email(value) or value.lower()) if key == "emails" else value
            row = contacts.find(db, column, lookup)
            out.append((value, row["id"] if row else None))
        return out

    def add_to_list(self, req: Request) -> Response:
        key, values = self._members_body(req, allow_all=False)
        success, failure = [], []
        with self.store.transaction() as db:
            row = self._list_row(db, req)
            stamp = now_ms()
            for value, cid in self._member_ids(db, key, values):
                if (
                    cid is None
                    or db.execute(
                        "SELECT 1 FROM list_members WHERE list_id=? AND contact_id=?", (row["id"], cid)
                    ).fetchone()
                ):
                    failure.append(value)
                    continue
                db.execute("INSERT INTO list_members VALUES (?,?)", (row["id"], cid))
                db.execute("UPDATE contacts SET modified_at=? WHERE id=?", (stamp, cid))
                success.append(value)
        return Response(201, {"contacts": {"success": success, "failure": failure}})

    def remove_from_list(self, req: Request) -> Response:
        key, values = self._members_body(req, allow_all=True)
        success, failure = [], []
        with self.store.transaction() as db:
            row = self._list_row(db, req)
            stamp = now_ms()
            if key == "all":
                ids = [r[0] for r in db.execute("SELECT contact_id FROM list_members WHERE list_id=?", (row["id"],))]
                db.execute("DELETE FROM list_members WHERE list_id=?", (row["id"],))
                db.executemany("UPDATE contacts SET modified_at=? WHERE id=?", [(stamp, i) for i in ids])
                pid = db.execute(
                    "INSERT INTO processes(name, status, info, created_at, completed_at) VALUES"
                    " ('LIST_EXPORT', 'completed', NULL, ?, ?)",
                    (stamp, stamp),
                ).lastrowid
                return Response(201, {"contacts": {"processId": pid, "total": len(ids)}})
            for value, cid in self._member_ids(db, key, values):
                cur = db.execute("DELETE FROM list_members WHERE list_id=? AND contact_id=?", (row["id"], cid))
                if cid is None or cur.rowcount == 0:
                    failure.append(value)
                    continue
                db.execute("UPDATE contacts SET modified_at=? WHERE id=?", (stamp, cid))
                success.append(value)
        return Response(201, {"contacts": {"success": success, "failure": failure}})

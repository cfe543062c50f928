"""The endpoints: SOAP login, and the REST API under ``/services/data/vXX.X/`` that simple-salesforce
(and so the Airflow ``SalesforceHook``) calls.

Pure request -> response functions over the store; the HTTP layer (``server.py``) adds faults, the
call counters and the wire. Every refusal is raised as :class:`~.errors.ApiError` and answered in
Salesforce's shape.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
import secrets
import sqlite3
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from . import errors, records, soql
from .errors import ApiError
from .schema import BY_PREFIX, OBJECTS, SObject, normalize_id
from .settings import Settings
from .store import CURSOR_PREFIX, JOB_PREFIX, ORG_ID, USER_ID, Store, new_id
from .values import parse_datetime, render_datetime, to_csv

MIN_VERSION, MAX_VERSION = 20.0, 66.0
"""API versions answered under /services/data/ (others are 404, as an unknown version is)."""
JSON_TYPE = "application/json;charset=UTF-8"
CSV_TYPE = "text/csv"
XML_TYPE = "text/xml;charset=UTF-8"
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}

_DATA = re.compile(r"/services/data/v(\d{2}\.\d)(/.*)?")
_SOAP = re.compile(r"/services/Soap/u/(\d{2}\.\d)(/.*)?")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Credentials:
    """The one user of the sandbox org; a login sends ``password + security_token`` as its password."""

    username: str
    password: str
    security_token: str


@dataclass(frozen=True)
class Route:
    kind: str
    """The name calls are counted under (``query``, ``query_more``, ``create``, ``bulk2_results``...)."""
    handler: Callable[..., Response] | None
    args: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()


def _json_body(req: Request) -> Any:
    if not req.body.strip():
        raise errors.json_parser("No content to map due to end-of-input")

    def no_constants(name: str) -> Any:
        raise ValueError(f"Unexpected token ({name})")

    try:
        return json.loads(req.body.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.json_parser(f"Unexpected character in the request body: {exc}") from None


class DailyLimit:
    """REST calls in the current 24-hour window, refused past ``Settings.daily_api_limit``."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self.used = 0

    def hit(self) -> dict[str, str]:
        """Count one call; the ``Sforce-Limit-Info`` header, or 403 REQUEST_LIMIT_EXCEEDED."""
        with self._lock:
            now = self.clock()
            if self._started is None or now - self._started >= 86_400:
                self._started, self.used = now, 0
            limit = self.settings.daily_api_limit
            if self.used >= limit:
                raise errors.fail(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.used += 1
            return {"Sforce-Limit-Info": f"api-usage={self.used}/{limit}"}

    def reset(self) -> None:
        with self._lock:
            self._started, self.used = None, 0


class Api:
    """Dispatches requests to the org in ``store``.

    :param base_url: ``https://host:port`` as clients reach the server (login answers it as serverUrl).
    :param clock: seconds since the epoch (tests may pass a fake one).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        credentials: Credentials,
        base_url: Callable[[], str],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.settings = settings
        self.credentials = credentials
        self.base_url = base_url
        self.clock = clock
        self.limit = DailyLimit(settings, clock)

    def now(self) -> int:
        return int(self.clock())

    # --- routing -----------------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[Route, str | None]:
        """The route of a request and its API version (None outside /services/data/vXX.X)."""
        if path in ("/login", "/login/") or _SOAP.fullmatch(path):
            return Route("login", self._login, methods=("POST",)), None
        if path.rstrip("/") == "/services/data":
            return Route("versions", self._versions, methods=("GET",)), None
        match = _DATA.fullmatch(path)
        if not match or not MIN_VERSION <= float(match[1]) <= MAX_VERSION:
            return Route("other", None), None
        version = match[1]
        parts = [p for p in (match[2] or "").split("/") if p]
        return self._data_route(method, parts), version

    def _data_route(self, method: str, parts: list[str]) -> Route:
        n = len(parts)
        head = parts[0] if parts else ""
        if n == 0:
            return Route("resources", self._resources, methods=("GET",))
        if parts == ["limits"]:
            return Route("limits", self._limits, methods=("GET",))
        if head == "sobjects":
            if n == 1:
                return Route("describe_global", self._describe_global, methods=("GET",))
            sobject = OBJECTS.get(parts[1].lower())
            if sobject is None:
                return Route("other", None)
            if n == 2:
                kind = "create" if method == "POST" else "sobject"
                return Route(kind, self._sobject_root, (sobject,), ("GET", "POST"))
            if n == 3 and parts[2] == "describe":
                return Route("describe", self._describe, (sobject,), ("GET",))
            if n == 3 and parts[2] in ("updated", "deleted"):
                return Route(parts[2], self._changed, (sobject, parts[2]), ("GET",))
            if n == 3:
                kind = {"GET": "retrieve", "PATCH": "update", "DELETE": "delete"}.get(method, "retrieve")
                return Route(kind, self._record, (sobject, parts[2]), ("GET", "PATCH", "DELETE"))
        if head in ("query", "queryAll") and n <= 2:
            include_deleted = head == "queryAll"
            if n == 1:
                return Route("query_all" if include_deleted else "query", self._query, (include_deleted,), ("GET",))
            return Route("query_more", self._query_more, (parts[1],), ("GET",))
        if parts == ["composite", "sobjects"]:
            kind = {"POST": "composite_create", "PATCH": "composite_update", "DELETE": "composite_delete"}
            return Route(kind.get(method, "composite"), self._composite, methods=("POST", "PATCH", "DELETE"))
        if parts[:2] == ["jobs", "query"]:
            if n == 2:
                kind = "bulk2_create_job" if method == "POST" else "bulk2_list_jobs"
                return Route(kind, self._jobs, methods=("GET", "POST"))
            if n == 3:
                kind = {"PATCH": "bulk2_abort_job", "DELETE": "bulk2_delete_job"}.get(method, "bulk2_job")
                return Route(kind, self._job, (parts[2],), ("GET", "PATCH", "DELETE"))
            if n == 4 and parts[3] == "results":
                return Route("bulk2_results", self._job_results, (parts[2],), ("GET",))
        return Route("other", None)

    def dispatch(self, req: Request) -> Response:
        route, version = self.route(req.method, req.path)
        if route.handler is None:
            raise errors.not_found()
        method = "GET" if req.method == "HEAD" else req.method
        if method not in route.methods:
            raise errors.fail(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{req.method}' not allowed. Allowed are {','.join(route.methods)}",
            )
        if version is None:
            return route.handler(req)
        self._authenticate(req)
        limit_headers = self.limit.hit()
        response = route.handler(req, version, *route.args)
        response.headers = {**limit_headers, **response.headers}
        return response

    # --- sessions ----------------------------------------------------------------------------------

    def _authenticate(self, req: Request) -> None:
        header = req.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "oauth") or not token:
            raise errors.invalid_session()
        now = self.clock()
        with self.store.transaction() as db:
            row = db.execute("SELECT expires_at FROM sessions WHERE id=?", (token,)).fetchone()
            if row is None or row[0] <= now:
                raise errors.invalid_session()
            if row[0] - now < self.settings.session_seconds / 2:  # extended on use, like an idle timeout
                db.execute("UPDATE sessions SET expires_at=? WHERE id=?", (now + self.settings.session_seconds, token))

    def new_session(self) -> str:
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(72)}"
        now = self.clock()
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO sessions(id, created_at, expires_at) VALUES (?,?,?)",
                (token, now, now + self.settings.session_seconds),
            )
        return token

    def expire_sessions(self) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions")

    # --- login -------------------------------------------------------------------------------------

    def _login(self, req: Request) -> Response:
        """SOAP ``login`` (partner API), the call simple-salesforce makes with username, password and token.

        simple-salesforce posts to ``https://{domain}.salesforce.com/services/Soap/u/{version}``; the
        sandbox's domain ``127.0.0.1:<port>/login?`` turns that into ``/login`` plus a query string.
        """
        version = "59.0"
        match = _SOAP.fullmatch(req.path) or re.search(r"/services/Soap/u/(\d{2}\.\d)", "&".join(req.query))
        if match:
            version = match[1]
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError:
            return _soap_fault("soapenv:Client", "Premature end of file.", None)
        found: dict[str, str] = {}
        for element in root.iter():
            local = element.tag.rsplit("}", 1)[-1]
            if local in ("username", "password") and local not in found:
                found[local] = element.text or ""
        creds = self.credentials
        username, password = found.get("username", ""), found.get("password", "")
        if username.lower() != creds.username.lower() or not secrets.compare_digest(
            password.encode(), (creds.password + creds.security_token).encode()
        ):
            if username.lower() == creds.username.lower() and secrets.compare_digest(
                password.encode(), creds.password.encode()
            ):
                return _soap_fault(
                    "sf:LOGIN_MUST_USE_SECURITY_TOKEN",
                    "Invalid username, password, security token; or user locked out. Are you at a new location? "
                    "When accessing Salesforce--either via a desktop client or the API--from outside of your "
                    "company's trusted networks, you must add a security token to your password to log in.",
                    "LOGIN_MUST_USE_SECURITY_TOKEN",
                )
            return _soap_fault(
                "sf:INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.",
                "INVALID_LOGIN",
            )
        session = self.new_session()
        base = self.base_url()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{base}/services/Soap/m/{version}/{ORG_ID[:15]}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{base}/services/Soap/u/{version}/{ORG_ID[:15]}</serverUrl>"
            f"<sessionId>{escape(session)}</sessionId><userId>{USER_ID}</userId>"
            "<userInfo><accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
            f"<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><organizationId>{ORG_ID}</organizationId>"
            "<organizationMultiCurrency>false</organizationMultiCurrency>"
            "<organizationName>contactsync sandbox</organizationName>"
            f"<sessionSecondsValid>{int(self.settings.session_seconds)}</sessionSecondsValid>"
            f"<userEmail>{escape(creds.username)}</userEmail><userFullName>Sandbox User</userFullName>"
            f"<userId>{USER_ID}</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale>"
            f"<userName>{escape(creds.username)}</userName><userTimeZone>Etc/UTC</userTimeZone>"
            "<userType>Standard</userType></userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, body, content_type=XML_TYPE)

    # --- small resources ---------------------------------------------------------------------------

    def _versions(self, req: Request) -> Response:
        versions = [f"{v}.0" for v in range(int(MIN_VERSION), int(MAX_VERSION) + 1)]
        return Response(200, [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in versions])

    def _resources(self, req: Request, version: str) -> Response:
        base = f"/services/data/v{version}"
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return Response(200, {name: f"{base}/{name}" for name in names})

    def _limits(self, req: Request, version: str) -> Response:
        limit = self.settings.daily_api_limit
        with self.store.reading() as db:
            jobs = db.execute("SELECT COUNT(*) FROM bulk_jobs").fetchone()[0]
        return Response(
            200,
            {
                "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - self.limit.used)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(0, 10000 - jobs)},
            },
        )

    def _describe_global(self, req: Request, version: str) -> Response:
        return Response(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [o.summary(version) for o in OBJECTS.values()],
            },
        )

    def _describe(self, req: Request, version: str, sobject: SObject) -> Response:
        return Response(200, sobject.describe(version))

    # --- records -----------------------------------------------------------------------------------

    def _sobject_root(self, req: Request, version: str, sobject: SObject) -> Response:
        if req.method == "POST":
            values = records.prepare(sobject, _json_body(req), "create")
            with self.store.transaction() as db:
                record_id = records.insert(db, sobject, values, self.now())
            return Response(201, {"id": record_id, "success": True, "errors": []})
        with self.store.reading() as db:
            rows = db.execute(
                f'SELECT * FROM "{sobject.table}" WHERE "IsDeleted"=0 ORDER BY "LastModifiedDate" DESC, rid DESC '
                "LIMIT 5"
            ).fetchall()
        recent = [records.render(sobject, r, [sobject.field("Id"), sobject.field("Name")], version) for r in rows]
        return Response(200, {"objectDescribe": sobject.summary(version), "recentItems": recent})

    def _record(self, req: Request, version: str, sobject: SObject, record_id: str) -> Response:
        if req.method in ("GET", "HEAD"):
            wanted = req.param("fields")
            fields = list(sobject.fields)
            if wanted:
                fields = []
                for name in wanted.split(","):
                    f = sobject.field(name.strip())
                    if f is None:
                        raise errors.fail(
                            400, "INVALID_FIELD", f"No such column '{name.strip()}' on entity '{sobject.name}'"
                        )
                    fields.append(f)
            with self.store.reading() as db:
                row = records.fetch(db, sobject, record_id)
                return Response(200, records.render(sobject, row, fields, version))
        if req.method == "PATCH":
            values = records.prepare(sobject, _json_body(req), "update")
            with self.store.transaction() as db:
                row = records.fetch(db, sobject, record_id)
                records.update(db, sobject, row, values, self.now())
            return Response(204)
        with self.store.transaction() as db:
            row = records.fetch(db, sobject, record_id)
            records.delete(db, sobject, row, self.now())
        return Response(204)

    def _changed(self, req: Request, version: str, sobject: SObject, which: str) -> Response:
        """``sobjects/<Object>/updated`` and ``.../deleted`` (``?start=&end=``, ISO date-times)."""
        bounds = {}
        for name in ("start", "end"):
            text = req.param(name)
            seconds = parse_datetime(text) if text else None
            if seconds is None:
                raise errors.fail(400, "MISSING_ARGUMENT", f"{name} should be an ISO 8601 date-time")
            bounds[name] = seconds
        with self.store.reading() as db:
            if which == "updated":
                rows = db.execute(
                    f'SELECT "Id" FROM "{sobject.table}" WHERE "IsDeleted"=0 AND "SystemModstamp" BETWEEN ? AND ? '
                    "ORDER BY rid",
                    (bounds["start"], bounds["end"]),
                ).fetchall()
                body: dict[str, Any] = {"ids": [r[0] for r in rows]}
            else:
                rows = db.execute(
                    f'SELECT "Id", deleted_at FROM "{sobject.table}" '
                    'WHERE "IsDeleted"=1 AND deleted_at BETWEEN ? AND ? ORDER BY deleted_at, rid',
                    (bounds["start"], bounds["end"]),
                ).fetchall()
                earliest = db.execute(f'SELECT MIN(deleted_at) FROM "{sobject.table}"').fetchone()[0]
                body = {
                    "deletedRecords": [{"id": r[0], "deletedDate": render_datetime(r[1])} for r in rows],
                    "earliestDateAvailable": render_datetime(earliest if earliest is not None else bounds["start"]),
                }
        body["latestDateCovered"] = render_datetime(min(bounds["end"], self.now()))
        return Response(200, body)

    # --- SOQL --------------------------------------------------------------------------------------

    def _batch_size(self, req: Request) -> int:
        size = self.settings.page_size
        options = req.headers.get("Sforce-Query-Options") or ""
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        if match:
            size = min(size, max(200, int(match[1])))
        return size

    def _query(self, req: Request, version: str, include_deleted: bool) -> Response:
        query = soql.parse(req.param("q") or "")
        batch = self._batch_size(req)
        with self.store.transaction() as db:
            if query.is_count:
                sql, params = query.count_sql(include_deleted)
                total = db.execute(sql, params).fetchone()[0]
                return Response(200, {"totalSize": total, "done": True, "records": []})
            sql, params = query.select_sql(include_deleted)
            rids = [r[0] for r in db.execute(sql, params)]
            assert query.fields is not None
            page = _load(db, query.sobject, query.fields, rids[:batch], version)
            body: dict[str, Any] = {"totalSize": len(rids), "done": len(rids) <= batch}
            if len(rids) > batch:
                now = self.clock()
                db.execute("DELETE FROM cursors WHERE touched_at < ?", (now - self.settings.cursor_seconds,))
                cursor = new_id(db, CURSOR_PREFIX)
                db.execute(
                    "INSERT INTO cursors(id, object, fields, rids, total, include_deleted, touched_at) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (
                        cursor,
                        query.sobject.name,
                        json.dumps([f.name for f in query.fields]),
                        json.dumps(rids),
                        len(rids),
                        int(include_deleted),
                        now,
                    ),
                )
                body["nextRecordsUrl"] = (
                    f"/services/data/v{version}/{'queryAll' if include_deleted else 'query'}/{cursor}-{batch}"
                )
            body["records"] = page
        return Response(200, body)

    def _query_more(self, req: Request, version: str, locator: str) -> Response:
        cursor, _, offset_text = locator.rpartition("-")
        now = self.clock()
        invalid = errors.fail(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if not cursor or not offset_text.isdigit():
            raise invalid
        offset = int(offset_text)
        batch = self._batch_size(req)
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM cursors WHERE id=?", (cursor,)).fetchone()
            if row is None or row["touched_at"] < now - self.settings.cursor_seconds or offset > row["total"]:
                raise invalid
            db.execute("UPDATE cursors SET touched_at=? WHERE id=?", (now, cursor))
            sobject = OBJECTS[row["object"].lower()]
            fields = [sobject.by_lower[name.lower()] for name in json.loads(row["fields"])]
            rids = json.loads(row["rids"])
            page = _load(db, sobject, fields, rids[offset : offset + batch], version)
            end = offset + batch
            body: dict[str, Any] = {"totalSize": row["total"], "done": end >= row["total"]}
            if end < row["total"]:
                endpoint = "queryAll" if row["include_deleted"] else "query"
                body["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{cursor}-{end}"
            body["records"] = page
        return Response(200, body)

    # --- composite ---------------------------------------------------------------------------------

    def _composite(self, req: Request, version: str) -> Response:
        """``composite/sobjects``: create (POST), update (PATCH) or delete (DELETE ``?ids=``) up to
        ``composite_max_records`` records of any objects in one call; ``allOrNone`` false by default."""
        most = self.settings.composite_max_records
        if req.method == "DELETE":
            ids = [i for i in (req.param("ids") or "").split(",") if i]
            all_or_none = (req.param("allOrNone") or "false").lower() == "true"
            items: list[Any] = ids
        else:
            data = _json_body(req)
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise errors.json_parser("The body should be an object with a records array")
            all_or_none = data.get("allOrNone", False)
            if not isinstance(all_or_none, bool):
                raise errors.json_parser("allOrNone should be a boolean")
            items = data["records"]
        if not items:
            raise errors.fail(400, "MISSING_ARGUMENT", "No records or ids specified")
        if len(items) > most:
            raise errors.fail(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {most} records into this call",
            )
        results: list[dict[str, Any]] = []
        failed = False
        with self.store.transaction() as db:
            db.execute("SAVEPOINT composite")
            for item in items:
                db.execute("SAVEPOINT item")
                try:
                    results.append(self._composite_one(db, req.method, item))
                    db.execute("RELEASE item")
                except ApiError as exc:
                    db.execute("ROLLBACK TO item")
                    db.execute("RELEASE item")
                    failed = True
                    result: dict[str, Any] = {"success": False, "errors": [p.composite() for p in exc.problems]}
                    if req.method != "POST":
                        result = {"id": _item_id(item), **result}
                    results.append(result)
            if failed and all_or_none:
                db.execute("ROLLBACK TO composite")
                rolled_back = {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the request was using "
                    "AllOrNone header",
                    "fields": [],
                }
                for result in results:
                    if result["success"]:
                        result.update({"success": False, "errors": [rolled_back]})
                        if req.method == "POST":
                            result.pop("id", None)
            db.execute("RELEASE composite")
        return Response(200, results)

    def _composite_one(self, db: sqlite3.Connection, method: str, item: Any) -> dict[str, Any]:
        now = self.now()
        if method == "DELETE":
            normalized = normalize_id(item)
            sobject = BY_PREFIX.get(normalized[:3]) if normalized else None
            if sobject is None:
                raise errors.fail(400, "MALFORMED_ID", f"malformed id {item}", [])
            try:
                row = records.fetch(db, sobject, normalized or item)
            except ApiError as exc:
                if exc.code == "NOT_FOUND":
                    raise errors.fail(404, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []) from None
                raise
            records.delete(db, sobject, row, now)
            return {"id": row["Id"], "success": True, "errors": []}
        if not isinstance(item, dict):
            raise errors.json_parser("Each record should be a JSON object")
        attributes = item.get("attributes")
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        sobject = OBJECTS.get(type_name.lower()) if isinstance(type_name, str) else None
        if sobject is None:
            raise errors.fail(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.", [])
        if method == "POST":
            values = records.prepare(sobject, item, "create")
            return {"id": records.insert(db, sobject, values, now), "success": True, "errors": []}
        body = {k: v for k, v in item.items() if k.lower() != "id"}
        record_id = _item_id(item)
        if not record_id:
            raise errors.fail(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
        values = records.prepare(sobject, body, "update")
        row = records.fetch(db, sobject, record_id)
        records.update(db, sobject, row, values, now)
        return {"id": row["Id"], "success": True, "errors": []}

    # --- Bulk API 2.0 query jobs -------------------------------------------------------------------

    def _job_info(self, row: sqlite3.Row, full: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": row["id"],
            "operation": row["operation"],
            "object": row["object"],
            "createdById": USER_ID,
            "createdDate": render_datetime(row["created_at"]),
            "systemModstamp": render_datetime(row["created_at"]),
            "state": self._job_state(row),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(row["api_version"]),
            "lineEnding": row["line_ending"],
            "columnDelimiter": row["column_delimiter"],
        }
        if full:
            info.update(
                {
                    "jobType": "V2Query",
                    "numberRecordsProcessed": row["total"] if info["state"] == "JobComplete" else 0,
                    "retries": 0,
                    "totalProcessingTime": 0,
                    "isPkChunkingSupported": True,
                }
            )
        return info

    def _job_state(self, row: sqlite3.Row) -> str:
        if row["state"] != "UploadComplete":
            return str(row["state"])
        elapsed = self.clock() - row["created_mono"]
        wait = self.settings.bulk_job_seconds
        if elapsed >= wait:
            return "JobComplete"
        return "UploadComplete" if elapsed < wait / 2 else "InProgress"

    def _jobs(self, req: Request, version: str) -> Response:
        if req.method != "POST":
            with self.store.reading() as db:
                rows = db.execute("SELECT * FROM bulk_jobs ORDER BY created_at, id").fetchall()
            return Response(
                200, {"done": True, "records": [self._job_info(r, False) for r in rows], "nextRecordsUrl": None}
            )
        data = _json_body(req)
        if not isinstance(data, dict):
            raise errors.json_parser("The body should be a JSON object")
        operation = data.get("operation")
        if operation not in ("query", "queryAll"):
            raise errors.fail(400, "INVALIDJOB", f"Invalid operation {operation!r}: use query or queryAll")
        delimiter = data.get("columnDelimiter") or "COMMA"
        line_ending = data.get("lineEnding") or "LF"
        if delimiter not in DELIMITERS or line_ending not in LINE_ENDINGS:
            raise errors.fail(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
        if (data.get("contentType") or "CSV") != "CSV":
            raise errors.fail(400, "INVALIDJOB", "Only contentType CSV is supported")
        query = soql.parse(data.get("query") or "")
        if query.is_count:
            raise errors.fail(400, "INVALIDJOB", "Aggregate queries are not supported by Bulk API 2.0 query jobs")
        assert query.fields is not None
        fields = query.fields
        sep = DELIMITERS[delimiter]
        with self.store.transaction() as db:
            sql, params = query.select_sql(operation == "queryAll")
            rids = [r[0] for r in db.execute(sql, params)]
            job_id = new_id(db, JOB_PREFIX)
            lines = []
            for pos, row in enumerate(_rows(db, query.sobject, rids)):
                lines.append((job_id, pos, _csv_line([to_csv(f, row[f.name]) for f in fields], sep)))
            db.executemany("INSERT INTO bulk_rows(job_id, pos, line) VALUES (?,?,?)", lines)
            db.execute(
                "INSERT INTO bulk_jobs(id, object, operation, query, column_delimiter, line_ending, api_version, "
                "state, header, total, created_at, created_mono) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    query.sobject.name,
                    operation,
                    query.text,
                    delimiter,
                    line_ending,
                    version,
                    "UploadComplete",
                    _csv_line([f.name for f in fields], sep),
                    len(rids),
                    self.now(),
                    self.clock(),
                ),
            )
            row = db.execute("SELECT * FROM bulk_jobs WHERE id=?", (job_id,)).fetchone()
            info = self._job_info(row, False)
            info["state"] = "UploadComplete"
        return Response(200, info)

    def _job_row(self, db: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM bulk_jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise errors.not_found(f"Job with ID {job_id} not found")
        return row

    def _job(self, req: Request, version: str, job_id: str) -> Response:
        if req.method == "DELETE":
            with self.store.transaction() as db:
                row = self._job_row(db, job_id)
                if self._job_state(row) not in ("JobComplete", "Aborted", "Failed"):
                    raise errors.fail(400, "API_ERROR", "Cannot delete a job that is not complete, aborted or failed")
                db.execute("DELETE FROM bulk_rows WHERE job_id=?", (job_id,))
                db.execute("DELETE FROM bulk_jobs WHERE id=?", (job_id,))
            return Response(204)
        if req.method == "PATCH":
            data = _json_body(req)
            if not isinstance(data, dict) or data.get("state") != "Aborted":
                raise errors.fail(400, "INVALIDJOB", "A query job can only be set to state Aborted")
            with self.store.transaction() as db:
                row = self._job_row(db, job_id)
                if self._job_state(row) in ("JobComplete", "Aborted", "Failed"):
                    raise errors.fail(400, "INVALIDJOB", f"Cannot abort a job in state {self._job_state(row)}")
                db.execute("UPDATE bulk_jobs SET state='Aborted' WHERE id=?", (job_id,))
                return Response(200, self._job_info(self._job_row(db, job_id), False))
        with self.store.reading() as db:
            return Response(200, self._job_info(self._job_row(db, job_id), True))

    def _job_results(self, req: Request, version: str, job_id: str) -> Response:
        """A page of results as CSV, with ``Sforce-Locator`` (the next page, or ``null``) and
        ``Sforce-NumberOfRecords``; ``maxRecords`` bounds the page (default: every remaining row)."""
        max_text = req.param("maxRecords")
        if max_text is not None and (not max_text.isdigit() or int(max_text) < 1):
            raise errors.fail(400, "INVALIDJOB", f"Invalid maxRecords: {max_text}")
        locator = req.param("locator")
        offset = 0
        if locator and locator != "null":
            try:
                offset = int(base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)).decode("ascii"))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise errors.fail(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from None
        with self.store.reading() as db:
            row = self._job_row(db, job_id)
            state = self._job_state(row)
            if state != "JobComplete":
                raise errors.fail(400, "INVALIDJOB", f"Job {job_id} is in state {state}, not JobComplete")
            total = row["total"]
            if offset > total:
                raise errors.fail(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
            size = int(max_text) if max_text else total - offset
            lines = [
                r[0]
                for r in db.execute(
                    "SELECT line FROM bulk_rows WHERE job_id=? AND pos>=? AND pos<? ORDER BY pos",
                    (job_id, offset, offset + size),
                )
            ]
            ending = LINE_ENDINGS[row["line_ending"]]
            text = ending.join([row["header"], *lines]) + ending
        end = offset + len(lines)
        next_locator = base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=") if end < total else "null"
        return Response(
            200,
            text,
            {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(lines))},
            content_type=CSV_TYPE,
        )


def _item_id(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key, value in item.items():
            if key.lower() == "id" and isinstance(value, str):
                return value
    return None


def _rows(db: sqlite3.Connection, sobject: SObject, rids: list[int]) -> list[sqlite3.Row]:
    """Rows by ``rid``, in the order of ``rids``."""
    by_rid: dict[int, sqlite3.Row] = {}
    for start in range(0, len(rids), 900):
        chunk = rids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(f'SELECT * FROM "{sobject.table}" WHERE rid IN ({marks})', chunk):
            by_rid[row["rid"]] = row
    return [by_rid[rid] for rid in rids if rid in by_rid]


def _load(db: sqlite3.Connection, sobject: SObject, fields: Any, rids: list[int], version: str) -> list[dict[str, Any]]:
    return [records.render(sobject, row, fields, version) for row in _rows(db, sobject, rids)]


def _csv_line(cells: list[str], sep: str) -> str:
    """One Bulk 2.0 CSV line: every value quoted, as Salesforce writes its query results."""
    out = io.StringIO()
    csv.writer(out, delimiter=sep, quoting=csv.QUOTE_ALL, lineterminator="").writerow(cells)
    return out.getvalue()


def _soap_fault(faultcode: str, message: str, code: str | None) -> Response:
    """A SOAP fault, HTTP 500, as the partner API answers a refused login."""
    detail = ""
    if code:
        detail = (
            '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
            f"<sf:exceptionCode>{code}</sf:exceptionCode>"
            f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
            "</sf:LoginFault></detail>"
        )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{escape((code + ': ' if code else '') + message)}</faultstring>{detail}"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(500, body, content_type=XML_TYPE)

"""The HTTPS side: a stdlib ``ThreadingHTTPServer`` in a background thread, and :class:`SalesforceSandbox`.

Order per request: count the call -> fault (delay, drop before, status) -> session -> daily limit ->
handler -> drop after. TLS handshakes happen in the connection's own thread, so a client that never
finishes one holds up nobody. Whatever a client sends, it gets a Salesforce-shaped answer and the
server keeps serving: a sandbox bug is a logged 500 ``UNKNOWN_EXCEPTION``, never a lost thread.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import errors, records
from .api import Api, Credentials, Request, Response
from .errors import ApiError
from .faults import Faults, default_body
from .schema import OBJECTS, SObject
from .settings import Settings
from .store import Store
from .tls import CertificateAuthority, default_authority

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "sandbox@contactsync.test"
DEFAULT_PASSWORD = "sandbox-password"
DEFAULT_SECURITY_TOKEN = "SANDBOXTOKEN0000"
DEFAULT_VERSION = "59.0"
CONTROL_HEADER = "X-Sandbox-Password"
"""``/_sandbox/`` control endpoints take the sandbox user's password in this header."""


class _Dropped(Exception):
    """The connection was closed on purpose without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        self.timeout = self.server.sandbox.settings.read_timeout
        super().setup()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answers to malformed requests, in Salesforce's error shape."""
        self.close_connection = True
        self._send(Response(int(code), [{"message": message or "Bad request", "errorCode": "BAD_REQUEST"}]))

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_GET

    def _send(self, response: Response) -> None:
        payload = response.encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise errors.fail(411, "BAD_REQUEST", "Send the body with a Content-Length")
        text = self.headers.get("Content-Length") or "0"
        if not text.strip().isdigit():
            raise errors.fail(400, "BAD_REQUEST", "Content-Length should be a non-negative integer")
        length = int(text)
        if length > self.server.sandbox.settings.max_body_bytes:
            raise errors.fail(413, "BAD_REQUEST", "Request entity too large")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise errors.fail(400, "BAD_REQUEST", "The body ended before Content-Length bytes")
        return body

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped

    def _handle(self) -> None:
        sandbox = self.server.sandbox
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        status: int | None = None
        fault: str | None = None
        kind = "control" if path.startswith("/_sandbox/") else sandbox.api.route(self.command, path)[0].kind
        logged = False

        def log_now() -> None:
            # before the answer goes out: a client that got it finds its request in requests()
            nonlocal logged
            if kind != "control" and not logged:
                logged = True
                sandbox._log_request(self.command, path, query, kind, status, fault, time.monotonic() - started)

        try:
            try:
                body = self._read_body()
            except ApiError as exc:
                self.close_connection = True
                status = exc.status
                log_now()
                self._send(Response(exc.status, exc.body()))
                return
            if kind == "control":
                response = sandbox._control(self.command, path, query, self.headers, body)
                status = response.status
                self._send(response)
                return
            sandbox._count(kind)
            rule = sandbox.faults.pick(self.command, path)
            delay = sandbox.settings.slow_ms + (rule.ms if rule and rule.action == "delay" else 0)
            if delay:
                sandbox._stopping.wait(delay / 1000)
            if rule and rule.action == "drop_before":
                fault = "drop_before"
                self._drop()
            if rule and rule.action == "status":
                fault = f"status:{rule.status}"
                status = rule.status
                log_now()
                self._send(Response(rule.status, rule.body if rule.body is not None else default_body(rule.status)))
                return
            req = Request(self.command, path, query, self.headers, body)
            try:
                response = sandbox.api.dispatch(req)
            except ApiError as exc:
                response = Response(exc.status, exc.body(), dict(exc.headers))
            except Exception:  # a sandbox bug: answer like a server error, keep serving
                log.exception("salesforce sandbox failed on %s %s", self.command, path)
                response = Response(500, default_body(500))
            status = response.status
            if rule and rule.action == "drop_after":
                fault = "drop_after"
                log_now()
                self._drop()
            log_now()
            self._send(response)
        except _Dropped:
            pass
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        finally:
            log_now()  # dropped connections, and anything that left before answering


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    sandbox: SalesforceSandbox
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: the TLS handshake happens here, not in the accept loop."""
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.sandbox.settings.read_timeout)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("salesforce sandbox connection from %s failed", client_address)


class SalesforceSandbox:
    """A local Salesforce org (Contact, Lead, Account; Cases for delete checks) over SQLite, served
    over HTTPS on ``host:port`` to simple-salesforce and the Airflow ``SalesforceHook`` unmodified.

    :param db_path: SQLite file; state persists across restarts.
    :param host: interface to listen on (and the address clients are told to use).
    :param port: TCP port; 0 picks a free one.
    :param username: the org's one user; ``password`` and ``security_token`` log it in.
    :param version: API version of :meth:`airflow_connection` (the server answers v20.0-v66.0).
    :param tls: serve HTTPS (simple-salesforce speaks nothing else); False for plain HTTP (curl, debugging).
    :param tls_dir: where the CA lives (kept across restarts); default: one shared temporary CA per process.
    :param clock: seconds since the epoch, for timestamps and expiries (tests may pass a fake one).
    :param settings: :class:`~.settings.Settings` fields (``page_size``, ``daily_api_limit``...).
    """

    def __init__(
        self,
        db_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        security_token: str = DEFAULT_SECURITY_TOKEN,
        version: str = DEFAULT_VERSION,
        tls: bool = True,
        tls_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        if not security_token:
            raise ValueError("security_token must not be empty (the SalesforceHook needs one to log in)")
        self.db_path = str(db_path)
        self.host = host
        self.port = port
        self.credentials = Credentials(username, password, security_token)
        self.version = version
        self.tls = tls
        self.clock = clock
        self.settings = Settings()
        self.settings.update(**settings)
        self.faults = Faults()
        self._authority: CertificateAuthority | None = None
        if tls:
            self._authority = CertificateAuthority(tls_dir) if tls_dir else default_authority()
        self._cert_files: tuple[Path, Path] | None = None
        self._calls: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)
        self._log_ids = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.store: Store
        self.api: Api

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SalesforceSandbox:
        self._stopping.clear()
        self.store = Store(self.db_path)
        self.api = Api(self.store, self.settings, self.credentials, lambda: self.base_url, self.clock)
        server = _Server((self.host, self.port), _Handler)
        server.sandbox = self
        if self._authority is not None:
            hosts = tuple(dict.fromkeys((self.advertised_host, "127.0.0.1", "localhost")))
            self._cert_files = self._authority.issue(hosts)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._cert_files)
            server.ssl_context = context
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="salesforce-sandbox-https", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._cert_files:
            for path in self._cert_files:
                path.unlink(missing_ok=True)
            self._cert_files = None
        self.store.close()

    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- how clients reach it ----------------------------------------------------------------------

    @property
    def advertised_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``: the instance URL (the REST API is under /services/data/vXX.X/)."""
        return f"{'https' if self.tls else 'http'}://{self.advertised_host}:{self.port}"

    @property
    def domain(self) -> str:
        """The ``domain`` that points simple-salesforce's login at the sandbox.

        simple-salesforce logs in at ``https://{domain}.salesforce.com/services/Soap/u/{version}``:
        with ``127.0.0.1:<port>/login?`` that URL is ``https://127.0.0.1:<port>/login?.salesforce.com/...``,
        i.e. the sandbox's ``/login`` with the rest as a query string. The login answer's ``serverUrl``
        then makes every later call go to ``https://127.0.0.1:<port>``.
        """
        return f"{self.advertised_host}:{self.port}/login?"

    @property
    def ca_file(self) -> Path | None:
        """The sandbox CA certificate (PEM), None without TLS."""
        return self._authority.ca_file if self._authority else None

    @property
    def ca_bundle(self) -> Path | None:
        """certifi's CAs plus the sandbox CA: the value for ``REQUESTS_CA_BUNDLE``."""
        return self._authority.bundle_file if self._authority else None

    def simple_salesforce_kwargs(self) -> dict[str, str]:
        """Arguments for ``simple_salesforce.Salesforce(**kwargs)`` (with ``REQUESTS_CA_BUNDLE`` set)."""
        creds = self.credentials
        return {
            "username": creds.username,
            "password": creds.password,
            "security_token": creds.security_token,
            "domain": self.domain,
            "version": self.version,
        }

    def airflow_connection(self) -> str:
        """The JSON of an ``AIRFLOW_CONN_<ID>`` for the Salesforce provider's ``SalesforceHook``."""
        creds = self.credentials
        return json.dumps(
            {
                "conn_type": "salesforce",
                "login": creds.username,
                "password": creds.password,
                "extra": {"security_token": creds.security_token, "domain": self.domain, "version": self.version},
            }
        )

    def environ(self, conn_id: str = "salesforce_default") -> dict[str, str]:
        """Environment for a process that should reach the sandbox through Airflow connection ``conn_id``:
        ``AIRFLOW_CONN_<CONN_ID>`` and ``REQUESTS_CA_BUNDLE``."""
        env = {f"AIRFLOW_CONN_{conn_id.upper()}": self.airflow_connection()}
        if self.ca_bundle:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        return env

    # --- calls, log, faults, settings --------------------------------------------------------------

    def _count(self, kind: str) -> None:
        with self._calls_lock:
            self._calls[kind] += 1

    def calls(self) -> dict[str, int]:
        """API requests received by kind (``login``, ``query``, ``query_more``, ``query_all``, ``describe``,
        ``create``, ``retrieve``, ``update``, ``delete``, ``composite_update``, ``bulk2_create_job``,
        ``bulk2_job``, ``bulk2_results``...), refused and faulted ones included, plus ``total``: every
        kind but ``login`` (the calls Salesforce counts against the daily API limit)."""
        with self._calls_lock:
            out = dict(sorted(self._calls.items()))
        out["total"] = sum(n for kind, n in out.items() if kind != "login")
        return out

    def clear_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    def _log_request(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        kind: str,
        status: int | None,
        fault: str | None,
        seconds: float,
    ) -> None:
        with self._calls_lock:
            self._log_ids += 1
            self._log.append(
                {
                    "id": self._log_ids,
                    "method": method,
                    "path": path,
                    "query": {k: v[-1] if len(v) == 1 else v for k, v in query.items()},
                    "kind": kind,
                    "status": status,
                    "fault": fault,
                    "duration_ms": round(seconds * 1000, 3),
                }
            )

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Logged API requests, oldest first (``status`` None when the connection was dropped first)."""
        with self._calls_lock:
            entries = list(self._log)
        return [e for e in entries if kind is None or e["kind"] == kind]

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule, e.g. ``add_fault(method="GET", path="*/query*", status=503, times=1)``;
        actions: status (default), drop_before, drop_after, delay (``ms``). See :mod:`.faults`."""
        return self.faults.add(**rule)

    def clear_faults(self) -> None:
        self.faults.clear()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings at run time (``daily_api_limit`` counts from zero again)."""
        out = self.settings.update(**settings)
        if "daily_api_limit" in settings:
            self.api.limit.reset()
        return out

    def expire_sessions(self) -> None:
        """End every session: the next call answers 401 ``INVALID_SESSION_ID`` (simple-salesforce logs in again)."""
        self.api.expire_sessions()

    def reset(self) -> None:
        """Back to an empty org: records, Cases, cursors, jobs, call counters, log and daily usage.
        Sessions stay valid and fault rules stay (see :meth:`clear_faults`)."""
        self.store.reset()
        self.api.limit.reset()
        with self._calls_lock:
            self._calls.clear()
            self._log.clear()

    # --- test helpers ------------------------------------------------------------------------------

    def _sobject(self, name: str) -> SObject:
        sobject = OBJECTS.get(name.lower())
        if sobject is None:
            raise ValueError(f"unknown object {name!r}: use one of {', '.join(o.name for o in OBJECTS.values())}")
        return sobject

    def seed(self, sobject: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records directly (no API call counted), in one transaction; their Ids, in order.

        Values are in the API's JSON form and checked like a create, but system fields may be given too:
        ``Id``, ``IsDeleted`` (in the recycle bin), ``CreatedDate``, ``LastModifiedDate`` and
        ``SystemModstamp`` (ISO strings or aware datetimes, kept to the second as Salesforce does; give
        several records one ``SystemModstamp`` to make ties). Missing dates default to each other, then now.
        Raises :class:`~.errors.ApiError` like the API would.
        """
        target = self._sobject(sobject)
        prepared = [records.prepare(target, dict(row), "seed") for row in rows]
        with self.store.transaction() as db:
            return records.insert_many(db, target, prepared, int(self.clock()))

    def records(self, sobject: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record of ``sobject`` (all fields, REST form without ``attributes``), in insertion order."""
        target = self._sobject(sobject)
        where = "" if include_deleted else 'WHERE "IsDeleted"=0'
        with self.store.reading() as db:
            rows = db.execute(f'SELECT * FROM "{target.table}" {where} ORDER BY rid').fetchall()
        out = []
        for row in rows:
            rendered = records.render(target, row, target.fields, self.version)
            rendered.pop("attributes")
            out.append(rendered)
        return out

    def add_case(self, contact_id: str, subject: str | None = None) -> dict[str, str]:
        """Open a Case on a Contact (which then cannot be deleted): ``{Id, CaseNumber, ContactId}``."""
        with self.store.transaction() as db:
            return records.add_case(db, contact_id, subject, int(self.clock()))

    # --- /_sandbox/ control endpoints (for the CLI's users) -----------------------------------------

    def _control(
        self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> Response:
        given = headers.get(CONTROL_HEADER) or ""
        if given != self.credentials.password:
            return Response(
                401, [{"message": f"Send the sandbox password in {CONTROL_HEADER}", "errorCode": "INVALID_SESSION_ID"}]
            )
        name = path.removeprefix("/_sandbox/").strip("/")
        try:
            data: Any = json.loads(body) if body.strip() else None
            if name == "calls" and method == "GET":
                return Response(200, self.calls())
            if name == "calls" and method == "DELETE":
                self.clear_calls()
                return Response(204)
            if name == "requests" and method == "GET":
                return Response(200, self.requests((query.get("kind") or [None])[-1]))
            if name == "reset" and method == "POST":
                self.reset()
                return Response(204)
            if name.startswith("seed/") and method == "POST":
                if not isinstance(data, list):
                    raise ValueError("the body should be a JSON array of records")
                return Response(201, {"ids": self.seed(name.split("/", 1)[1], data)})
            if name.startswith("records/") and method == "GET":
                deleted = (query.get("include_deleted") or ["false"])[-1].lower() in ("1", "true")
                return Response(200, self.records(name.split("/", 1)[1], deleted))
            if name == "cases" and method == "POST":
                if not isinstance(data, dict) or not isinstance(data.get("ContactId"), str):
                    raise ValueError('the body should be {"ContactId": "003..."}')
                return Response(201, self.add_case(data["ContactId"], data.get("Subject")))
            if name == "faults" and method == "GET":
                return Response(200, self.faults.rules())
            if name == "faults" and method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("the body should be a JSON object")
                return Response(201, self.add_fault(**data))
            if name == "faults" and method == "DELETE":
                self.clear_faults()
                return Response(204)
            if name == "config" and method == "GET":
                return Response(200, self.settings.as_dict())
            if name == "config" and method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("the body should be a JSON object")
                return Response(200, self.configure(**data))
            if name == "sessions" and method == "DELETE":
                self.expire_sessions()
                return Response(204)
        except ApiError as exc:
            return Response(exc.status, exc.body())
        except (ValueError, TypeError) as exc:
            return Response(400, [{"message": str(exc), "errorCode": "BAD_REQUEST"}])
        return Response(404, [{"message": f"No control endpoint {method} {path}", "errorCode": "NOT_FOUND"}])

"""The HTTP side: a stdlib ``ThreadingHTTPServer`` in a background thread, and :class:`BrevoSandbox`.

Owning the socket lets the sandbox fail the ways a real network does: close a connection before
or after processing a request, answer slowly, answer 5xx or 429. Order per /v3 request: faults
(delay, drop before, status) -> api-key -> rate limit -> handler -> drop after.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import errors
from .api import Api, Request, Response
from .faults import Faults
from .imports import ProcessWorker
from .limits import RateLimiter, check_api_key
from .settings import Settings
from .store import Store, render_contacts

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
LOG_BODY_MAX = 1024 * 1024


class _Dropped(Exception):
    """The connection was closed on purpose without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _drop(self) -> None:
        self._record()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped

    def _record(self) -> None:
        """Log this /v3 request once, before the client can see the outcome (tests read the log next)."""
        if self._logged or not self._entry:
            return
        self._logged = True
        method, path, query, body, started = self._entry
        self.server.sandbox._log_request(
            method, path, query, body, self._status, self._fault, (time.monotonic() - started) * 1000
        )

    def _send(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        payload = Response(status, body).encode() if not isinstance(body, bytes) else body
        self._status = status
        self._record()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if payload or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        started = time.monotonic()
        self._status: int | None = None
        self._fault: str | None = None
        self._logged = False
        self._entry: tuple[str, str, dict[str, list[str]], bytes, float] | None = None
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.close_connection = True
            self._send(413, {"code": "out_of_range", "message": "Request entity too large"})
            return
        body = self.rfile.read(length) if length else b""
        logged = path.startswith("/v3")
        if logged:
            self._entry = (self.command, path, query, body, started)
        try:
            if path.startswith("/_sandbox/exports/"):
                self._export_file(path)
            elif path.startswith("/_sandbox/"):
                self._control(path, query, body)
            elif logged:
                self._api(path, query, body)
            else:
                self._send(404, {"code": "document_not_found", "message": "Invalid URL"})
        except _Dropped:
            pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record()

    def _api(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sandbox = self.server.sandbox
        faults = sandbox.faults.pick(self.command, path)
        after = False
        for fault in faults:
            if fault.action == "delay" and fault.ms:
                sandbox._stopping.wait(fault.ms / 1000)
        for fault in faults:
            if fault.action == "drop_before":
                self._fault = "drop_before"
                self._drop()
            if fault.action == "status":
                default = {"code": "internal_error", "message": "Sandbox injected fault"}
                if fault.status == 429:
                    default = {"code": "too_many_requests", "message": "The expected rate limit is exceeded."}
                self._fault = f"status:{fault.status}"
                self._send(fault.status, fault.body or default)
                return None
            if fault.action == "drop_after":
                after = True
        try:
            check_api_key(sandbox.api_key, self.headers.get("api-key"))
        except errors.ApiError as exc:
            self._send(exc.status, exc.body(), sandbox.limiter.hit(path)[1])
            return None
        allowed, headers = sandbox.limiter.hit(path)
        if not allowed:
            self._send(429, {"code": "too_many_requests", "message": "The expected rate limit is exceeded."}, headers)
            return None
        req = Request(self.command, path, query, body)
        try:
            response = sandbox.api.dispatch(req)
        except errors.ApiError as exc:
            response = Response(exc.status, exc.body())
        except Exception:  # a sandbox bug: answer like a server error, keep serving
            log.exception("sandbox handler failed on %s %s", self.command, path)
            response = Response(500, {"code": "internal_error", "message": "Sandbox internal error"})
        if after:
            self._status = response.status
            self._fault = "drop_after"
            self._drop()
        self._send(response.status, response.body, headers, response.content_type)
        return None

    def _export_file(self, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        pid = name.removesuffix(".csv")
        text = None
        if pid.isdigit():
            with self.server.sandbox.store.reading() as db:
                row = db.execute("SELECT csv FROM exports WHERE process_id=?", (int(pid),)).fetchone()
                text = row[0] if row else None
        if text is None:
            self._send(404, {"code": "document_not_found", "message": "Export not found"})
        else:
            self._send(200, text.encode(), content_type="text/csv; charset=utf-8")

    def _control(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sandbox = self.server.sandbox
        try:
            check_api_key(sandbox.api_key, self.headers.get("api-key"))
        except errors.ApiError as exc:
            self._send(exc.status, exc.body())
            return
        name = path.removeprefix("/_sandbox/").rstrip("/")
        method = self.command
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            self._send(400, {"code": "invalid_parameter", "message": "Input must be a valid json object"})
            return
        try:
            if name == "requests" and method == "GET":
                self._send(
                    200,
                    {
                        "requests": sandbox.requests(
                            method=(query.get("method") or [None])[-1],
                            path_prefix=(query.get("path_prefix") or [None])[-1],
                        )
                    },
                )
            elif name == "requests" and method == "DELETE":
                sandbox.clear_requests()
                self._send(204)
            elif name == "faults" and method == "GET":
                self._send(200, {"faults": sandbox.faults.rules()})
            elif name == "faults" and method == "POST":
                self._send(201, sandbox.add_fault(**data))
            elif name == "faults" and method == "DELETE":
                sandbox.clear_faults()
                self._send(204)
            elif name == "config" and method == "GET":
                self._send(200, sandbox.settings.as_dict())
            elif name == "config" and method == "POST":
                self._send(200, sandbox.configure(**data))
            elif name == "reset" and method == "POST":
                sandbox.reset()
                self._send(204)
            elif name == "contacts" and method == "GET":
                self._send(200, {"contacts": sandbox.contacts()})
            else:
                self._send(404, {"code": "document_not_found", "message": f"No control endpoint {method} {path}"})
        except (ValueError, TypeError) as exc:
            self._send(400, {"code": "invalid_parameter", "message": str(exc)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: BrevoSandbox


class BrevoSandbox:
    """A local Brevo API v3 (the contacts and processes endpoints) over SQLite.

    :param db_path: SQLite file; state persists across restarts.
    :param api_key: the only key accepted in the ``api-key`` header.
    :param host: interface to listen on.
    :param port: TCP port; 0 picks a free one (see :attr:`url`).
    :param settings: :class:`~.settings.Settings` fields (``contacts_rps``, ``import_delay``,
        ``fault_5xx``, ...) and ``seed`` (a dict or a JSON file path applied at start).
    """

    def __init__(
        self, db_path: str | Path, api_key: str, host: str = "127.0.0.1", port: int = 0, **settings: Any
    ) -> None:
        seed = settings.pop("seed", None)
        if isinstance(seed, (str, Path)):
            seed = json.loads(Path(seed).read_text())
        self.db_path = str(db_path)
        self.api_key = api_key
        self.host = host
        self.port = port
        self.seed: dict[str, Any] | None = seed
        self.settings = Settings()
        self.settings.update(**settings)
        self.faults = Faults(self.settings)
        self.limiter = RateLimiter(self.settings)
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=self.settings.request_log_size)
        self._log_lock = threading.Lock()
        self._log_ids = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.store: Store
        self.worker: ProcessWorker
        self.api: Api

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> BrevoSandbox:
        self._stopping.clear()
        self.store = Store(self.db_path, self.seed)
        self.worker = ProcessWorker(self.store, self.settings)
        self.api = Api(self.store, self.worker, self.settings, lambda: self.base_url)
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sandbox = self
        self.port = self._server.server_address[1]
        self.worker.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="brevo-sandbox-http",
            daemon=True,
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
        self.worker.stop()
        self.store.close()

    def __enter__(self) -> BrevoSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` without the API prefix (control endpoints live under it)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL clients use, like ``https://api.brevo.com/v3``."""
        return f"{self.base_url}/v3"

    # --- request log -------------------------------------------------------------------------------

    def _log_request(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        status: int | None,
        fault: str | None,
        duration_ms: float,
    ) -> None:
        parsed: Any = None
        if body and len(body) <= LOG_BODY_MAX:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
        with self._log_lock:
            self._log_ids += 1
            self._log.append(
                {
                    "id": self._log_ids,
                    "method": method,
                    "path": path,
                    "query": {k: v[-1] if len(v) == 1 else v for k, v in query.items()},
                    "status": status,
                    "fault": fault,
                    "body_size": len(body),
                    "body": parsed,
                    "time": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "duration_ms": round(duration_ms, 3),
                }
            )

    def requests(self, method: str | None = None, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Logged /v3 requests, oldest first (``status`` is None when the connection was dropped first)."""
        with self._log_lock:
            entries = list(self._log)
        return [
            e
            for e in entries
            if (method is None or e["method"] == method.upper())
            and (path_prefix is None or e["path"].startswith(path_prefix))
        ]

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    # --- control -----------------------------------------------------------------------------------

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Add a deterministic fault rule, e.g. ``add_fault(method="POST", path="/v3/contacts/import",
        action="status", status=503, times=1)``; actions: status, drop_before, drop_after, delay."""
        return self.faults.add(**rule)

    def clear_faults(self) -> None:
        self.faults.clear()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings at run time; rate-limit windows restart so new limits apply from now."""
        out = self.settings.update(**settings)
        self.limiter.reset()
        return out

    def reset(self) -> None:
        """Wipe the account back to the defaults and the seed; rate-limit windows restart."""
        self.store.reset()
        self.limiter.reset()

    # --- test helpers ------------------------------------------------------------------------------

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact in Brevo's shape, by id (for assertions)."""
        with self.store.reading() as db:
            rows = db.execute("SELECT * FROM contacts ORDER BY id").fetchall()
            return render_contacts(db, rows)

    def create_attribute(
        self,
        name: str,
        type: str,
        category: str = "normal",  # noqa: A002 - Brevo's word
        enumeration: list[dict[str, Any]] | None = None,
        options: list[str] | None = None,
    ) -> None:
        """Create an attribute through the API's own rules (raises :class:`~.errors.ApiError` if refused)."""
        body: dict[str, Any] = {"type": type}
        if enumeration is not None:
            body["enumeration"] = enumeration
        if options is not None:
            body["multiCategoryOptions"] = options
        req = Request("POST", f"/v3/contacts/attributes/{category}/{name}", {}, json.dumps(body).encode())
        self.api.dispatch(req)

    def create_list(self, name: str, folder_id: int = 1) -> int:
        """Create a list (in the default folder) and return its id."""
        req = Request("POST", "/v3/contacts/lists", {}, json.dumps({"name": name, "folderId": folder_id}).encode())
        return int(self.api.dispatch(req).body["id"])

"""The HTTP side: a stdlib ``ThreadingHTTPServer`` in a background thread, and :class:`BrevoSandbox`.

Owning the socket lets the sandbox fail the ways a real network does: close a connection before
or after processing a request, answer slowly, answer 5xx or 429. Order per /v3 request: faults
(delay, drop before, status) -> api-key -> rate limit -> handler -> drop after.

Whatever a client sends, it gets an answer in Brevo's error shape (``{"code", "message"}``) and the
server keeps serving: malformed request lines, headers and bodies are 400, a request that does not
arrive within ``read_timeout`` seconds 408, a body over ``max_body_bytes`` 413, a method a path
does not have 405; a sandbox bug is a logged 500, never a traceback to the client or a lost thread.
Bodies are framed by ``Content-Length`` or ``Transfer-Encoding: chunked``; an idle keep-alive
connection is closed after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import logging
import os
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import contacts, doi, errors, segments
from .api import Api, Request, Response, parse_since
from .faults import Faults
from .imports import ProcessWorker
from .jsonbody import parse_json
from .limits import RateLimiter, check_api_key
from .settings import Settings
from .store import ADMIN_IP, Store, now_ms, render_contacts, render_unsubscriptions
from .validation import db_int, digits

log = logging.getLogger(__name__)

LOG_BODY_MAX = 1024 * 1024
MAX_REQUEST_LINE = 65536
LINGER_SECONDS = 5.0
LINGER_BYTES = 1024 * 1024
"""A refused request's unread input is drained for at most this long / this much (nginx: 5 s)."""
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Dropped(Exception):
    """The connection was closed on purpose without an answer."""


class _HttpError(Exception):
    """A request the HTTP layer refuses before any handler sees it; ``discard``: the announced body
    size, read and thrown away before closing so that the client gets to read the answer."""

    CODES = {405: "method_not_allowed", 413: "out_of_range", 500: "internal_error"}

    def __init__(self, status: int, message: str, discard: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.code = self.CODES.get(status, "bad_request")
        self.message = message
        self.discard = discard


class _ConnectionReader(io.RawIOBase):
    """The socket's input, with the sandbox's time limits: an idle connection waits at most
    ``idle_timeout`` seconds for its next request; once a request's first bytes arrived, all of it
    (line, headers, body) must arrive within ``read_timeout`` seconds, however slowly it trickles.
    A late read raises ``TimeoutError``."""

    def __init__(self, sock: socket.socket, idle_timeout: float, read_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def next_request(self) -> None:
        self.deadline = None

    @property
    def started(self) -> bool:
        """Whether bytes of the current request arrived (a timeout then deserves a 408)."""
        return self.deadline is not None

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            self._sock.settimeout(self.idle_timeout)
            size = self._sock.recv_into(buffer)
            if size:
                self.deadline = time.monotonic() + self.read_timeout
            return size
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answers to unparsable request lines still get a status line
    # Headers and body are two writes: without TCP_NODELAY, Nagle holds the body until the client's
    # delayed ACK of the headers, 40 ms on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        settings = self.server.sandbox.settings
        self.rfile.close()  # the socket stays open: replaced by a reader with the time limits
        self._reader = _ConnectionReader(self.connection, settings.idle_timeout, settings.read_timeout)
        self.rfile = io.BufferedReader(self._reader, 64 * 1024)

    # --- one request -------------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        """The stdlib's loop step, for any method, with timeouts and no exception left unanswered."""
        self._status: int | None = None
        self._fault: str | None = None
        self._logged = False
        self._responded = False
        self._entry: tuple[str, str, dict[str, list[str]], bytes, float] | None = None
        self.command, self.requestline, self.request_version = "", "", self.default_request_version
        self.close_connection = True
        settings = self.server.sandbox.settings  # /_sandbox/config changes apply from the next request
        self._reader.idle_timeout, self._reader.read_timeout = settings.idle_timeout, settings.read_timeout
        self._reader.next_request()
        try:
            for _ in range(4):  # RFC 9112 2.2: empty lines before a request line are ignored
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
                if self.raw_requestline not in (b"\r\n", b"\n"):
                    break
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "Request line too long")
                return
            if not self.raw_requestline.strip():
                return  # the client closed the connection (or sent only empty lines)
            if self.parse_request():
                self._handle()
        except TimeoutError:
            if self._reader.started and not self._responded:  # an idle keep-alive connection ends silently
                self._last_answer(408, "The request did not arrive within read_timeout")
        except ConnectionError:
            pass
        except Exception:  # a sandbox bug: answer like a server error, keep serving
            log.exception("sandbox failed on %r", self.requestline)
            if not self._responded:
                self._last_answer(500, "Sandbox internal error")
        else:
            return
        self.close_connection = True

    def _last_answer(self, status: int, message: str) -> None:
        """Answer before closing, if the client is still there to read it."""
        try:
            self._refuse(_HttpError(status, message))
        except OSError:
            pass

    def parse_request(self) -> bool:
        words = str(self.raw_requestline, "iso-8859-1").split()
        if len(words) == 2:  # "GET /path": HTTP/0.9, which Brevo's front ends do not speak either
            self.requestline = " ".join(words)
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not supported: send HTTP/1.1")
            return False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        try:  # refuse a body before the client sends it
            self._body_length()
        except _HttpError as exc:
            exc.discard = 0
            self._refuse(exc)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answers to malformed requests (400, 414, 431, 505), in Brevo's error shape."""
        self._refuse(_HttpError(int(code), message or HTTPStatus(code).phrase))

    def _refuse(self, exc: _HttpError) -> None:
        """Answer ``exc`` and close the connection politely (see :meth:`_linger`)."""
        self.close_connection = True
        self._status = exc.status
        self._send(exc.status, {"code": exc.code, "message": exc.message}, {"Connection": "close"})
        self._linger(max(exc.discard, LINGER_BYTES))

    def _linger(self, most: int) -> None:
        """Stop sending (the client sees the answer end), then read and drop what the client is still
        sending: closing a socket with unread input resets the connection, and the client would lose the
        answer. Bounded by ``most`` bytes and ``min(read_timeout, LINGER_SECONDS)`` seconds."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(self._reader.read_timeout, LINGER_SECONDS)
            while most > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.connection.settimeout(left)
                chunk = self.connection.recv(min(most, 1 << 16))
                if not chunk:
                    return
                most -= len(chunk)
        except OSError:  # the client is gone, or kept sending too long: close now
            return

    # --- body framing ------------------------------------------------------------------------------

    def _body_length(self) -> int | None:
        """The announced body size; ``None`` for a chunked body. 400 for a malformed framing, 413 for
        a size over ``max_body_bytes``."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        limit = self.server.sandbox.settings.max_body_bytes
        if encodings:
            if lengths:
                raise _HttpError(400, "Send Content-Length or Transfer-Encoding, not both")
            if [e.strip().lower() for e in ",".join(encodings).split(",")] != ["chunked"]:
                raise _HttpError(400, f"Transfer-Encoding {', '.join(encodings)} is not supported: use chunked")
            return None
        if not lengths:
            return 0
        values = {v.strip() for v in lengths}
        length = digits(values.pop()) if len(values) == 1 else None
        if length is None:
            raise _HttpError(400, f"Content-Length should be one non-negative integer (got {', '.join(lengths)})")
        if length > limit:
            raise _HttpError(413, f"Request entity too large: at most {limit} bytes", discard=length)
        return length

    def _read_body(self) -> bytes:
        """The whole body (``TimeoutError`` when it does not arrive within ``read_timeout``)."""
        length = self._body_length()
        if length is None:
            return self._read_chunked(self.server.sandbox.settings.max_body_bytes)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise _HttpError(400, f"The body ended after {len(body)} of its {length} bytes (Content-Length)")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                raise _HttpError(400, "Malformed chunked body: a chunk size line was expected")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise _HttpError(413, f"Request entity too large: at most {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _HttpError(400, "Malformed chunked body: a chunk ended early")
            parts.append(chunk)
        for _ in range(100):  # trailer fields, ignored
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)
            if not line.endswith(b"\n"):
                break
        raise _HttpError(400, "Malformed chunked body: the trailer section did not end")

    # --- answers -----------------------------------------------------------------------------------

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
        self._responded = True
        self.connection.settimeout(self._reader.read_timeout)  # a client gets as long to take the answer
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
        try:
            parts = urlsplit(self.path)
            path = parts.path
            query = parse_qs(parts.query, keep_blank_values=True)
        except ValueError:  # e.g. "http://[::1" as the request target
            self._refuse(_HttpError(400, "Malformed request target"))
            return
        logged = path.startswith("/v3")
        try:
            body = self._read_body()
        except (_HttpError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                exc = _HttpError(408, "The request body did not arrive within read_timeout")
            if logged:
                self._entry = (self.command, path, query, b"", started)
            self._refuse(exc)
            return
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
        except (ConnectionError, TimeoutError):  # the client left, or did not take the answer
            self.close_connection = True
        except Exception:  # a sandbox bug: answer like a server error, keep serving
            log.exception("sandbox failed on %s %s", self.command, path)
            self.close_connection = True
            if not self._responded:
                self._send(500, {"code": "internal_error", "message": "Sandbox internal error"})
        finally:
            self._record()

    def _api(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sandbox = self.server.sandbox
        faults = sandbox.faults.pick(self.command, path)
        after = False
        for fault in faults:
            if fault.action == "delay" and fault.ms:
                sandbox._stopping.wait(min(fault.ms / 1000, threading.TIMEOUT_MAX))
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
            response = Response(exc.status, exc.body(), headers=exc.headers)
        except Exception:  # a sandbox bug: answer like a server error, keep serving
            log.exception("sandbox handler failed on %s %s", self.command, path)
            response = Response(500, {"code": "internal_error", "message": "Sandbox internal error"})
        if after:
            self._status = response.status
            self._fault = "drop_after"
            self._drop()
        self._send(response.status, response.body, {**headers, **response.headers}, response.content_type)
        return None

    def _export_file(self, path: str) -> None:
        """An export's CSV (``export_url``; no api-key, like Brevo's pre-signed links), streamed from
        its file with ``sendfile``: a 1 GB export costs no memory. HEAD gives the headers only."""
        if self.command not in ("GET", "HEAD"):
            self._send(
                405,
                {"code": "method_not_allowed", "message": f"{self.command} Method is not allowed"},
                {"Allow": "GET, HEAD"},
            )
            return
        name = path.rsplit("/", 1)[-1]
        pid = digits(name.removesuffix(".csv")) if name.endswith(".csv") else None
        store = self.server.sandbox.store
        file = None
        if pid is not None:
            with store.reading() as db:
                found = store.export_file(db, db_int(pid))
            try:
                file = found.open("rb") if found is not None else None
            except FileNotFoundError:  # removed by a reset meanwhile
                file = None
        if file is None:
            self._send(404, {"code": "document_not_found", "message": "Export not found"})
            return
        with file:
            size = os.fstat(file.fileno()).st_size
            self._status = 200
            self._record()
            self._responded = True
            self.connection.settimeout(self._reader.read_timeout)
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Disposition", f'attachment; filename="contacts_export_{pid}.csv"')
            self.end_headers()
            if self.command == "GET" and size:
                self.connection.sendfile(file)

    def _control(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sandbox = self.server.sandbox
        try:
            check_api_key(sandbox.api_key, self.headers.get("api-key"))
        except errors.ApiError as exc:
            self._send(exc.status, exc.body())
            return
        name = path.removeprefix("/_sandbox/").rstrip("/")
        method = "GET" if self.command == "HEAD" else self.command
        try:
            data = parse_json(body) if body.strip() else {}
        except errors.ApiError as exc:
            self._send(exc.status, exc.body())
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
                self._send(201, sandbox.add_fault(**_object(data)))
            elif name == "faults" and method == "DELETE":
                sandbox.clear_faults()
                self._send(204)
            elif name == "config" and method == "GET":
                self._send(200, sandbox.settings.as_dict())
            elif name == "config" and method == "POST":
                self._send(200, sandbox.configure(**_object(data)))
            elif name == "reset" and method == "POST":
                sandbox.reset()
                self._send(204)
            elif name == "contacts" and method == "GET":
                self._send(200, {"contacts": sandbox.contacts()})
            elif (match := _UNSUBSCRIBE.fullmatch(name)) and method == "POST":
                data = _object(data)
                unknown = sorted(set(data) - {"campaignId", "at", "identifierType", "ip"})
                if unknown:
                    raise ValueError(f"unknown field(s): {', '.join(unknown)}")
                self._send(
                    200,
                    sandbox.unsubscribe(
                        unquote(match[1]),
                        campaign_id=1 if data.get("campaignId") is None else data["campaignId"],
                        at=data.get("at"),
                        identifier_type=data.get("identifierType") or (query.get("identifierType") or [None])[-1],
                        ip=data.get("ip") or ADMIN_IP,
                    ),
                )
            elif name == "segments" and method == "GET":
                self._send(200, {"segments": sandbox.segments()})
            elif name == "segments" and method == "POST":
                self._send(201, sandbox.create_segment_from(data))
            elif (match := _SEGMENT.fullmatch(name)) and method in ("PUT", "DELETE"):
                segment_id = db_int(int(match[1]))
                if method == "PUT":
                    self._send(200, sandbox.update_segment_from(segment_id, data))
                else:
                    sandbox.delete_segment(segment_id)
                    self._send(204)
            elif (match := _LIST_UNSUBSCRIBE.fullmatch(name)) and method == "POST":
                self._send(200, sandbox.unsubscribe_from_list_from(db_int(int(match[1])), data))
            elif name == "doi" and method == "GET":
                self._send(200, {"pending": sandbox.pending_doi(email=(query.get("email") or [None])[-1])})
            elif (match := _DOI_CONFIRM.fullmatch(name)) and method == "POST":
                self._send(200, sandbox.confirm_doi(unquote(match[1])))
            else:
                self._send(404, {"code": "document_not_found", "message": f"No control endpoint {method} {path}"})
        except errors.ApiError as exc:
            self._send(exc.status, exc.body())
        except (ValueError, TypeError, OverflowError) as exc:
            self._send(400, {"code": "invalid_parameter", "message": str(exc)})


_UNSUBSCRIBE = re.compile(r"contacts/([^/]+)/unsubscribe")
_DOI_CONFIRM = re.compile(r"doi/([^/]+)/confirm")
_SEGMENT = re.compile(r"segments/([0-9]{1,30})")
_LIST_UNSUBSCRIBE = re.compile(r"lists/([0-9]{1,30})/unsubscribe")


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("the body should be a JSON object")
    return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # listen backlog (the kernel caps it at somaxconn): bursts of clients connect
    sandbox: BrevoSandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log instead of the stdlib's traceback on stderr; the server keeps serving."""
        log.exception("sandbox connection from %s failed", client_address)


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
                parsed = parse_json(body)
            except errors.ApiError:
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

    def unsubscribe(
        self,
        identifier: str | int,
        campaign_id: int = 1,
        at: str | dt.datetime | None = None,
        identifier_type: str | None = None,
        ip: str = ADMIN_IP,
    ) -> dict[str, Any]:
        """Simulate the contact clicking the unsubscribe link of campaign ``campaign_id`` at ``at``
        (an ISO date-time or an aware datetime; default now): ``emailBlacklisted`` becomes true,
        ``modifiedAt`` is now, and a ``userUnsubscription`` event is recorded. Returns the contact in
        Brevo's shape with ``statistics.unsubscriptions``; raises :class:`~.errors.ApiError` (404 for
        an unknown contact, 400 for a bad argument).

        :param identifier: email, contact id, phone, or ext id with ``identifier_type="ext_id"``.
        :param identifier_type: as the API's ``identifierType`` (email_id, contact_id, ext_id, phone_id, ...).
        """
        if not isinstance(campaign_id, int) or isinstance(campaign_id, bool) or not 0 < campaign_id < 2**63:
            raise errors.invalid("campaignId should be a positive integer")
        if identifier_type is not None and not isinstance(identifier_type, str):
            raise errors.invalid("identifierType should be a string")
        if not isinstance(ip, str) or not ip:
            raise errors.invalid("ip should be a non-empty string")
        if at is None:
            event_time = now_ms()
        elif isinstance(at, dt.datetime):
            if at.tzinfo is None:
                raise errors.invalid("at should be an aware datetime")
            event_time = int(at.timestamp() * 1000)
        elif isinstance(at, str):
            event_time = parse_since("at", at)
        else:
            raise errors.invalid("at should be a date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)")
        with self.store.transaction() as db:
            row = contacts.lookup(db, str(identifier), identifier_type)
            contacts.unsubscribe_by_link(db, row, campaign_id, event_time, ip)
            row = db.execute("SELECT * FROM contacts WHERE id=?", (row["id"],)).fetchone()
            contact = render_contacts(db, [row])[0]
            contact["statistics"] = {"unsubscriptions": render_unsubscriptions(db, row["id"])}
        return contact

    def pending_doi(self, email: str | None = None) -> list[dict[str, Any]]:
        """Double opt-in confirmations not clicked yet, oldest first (``email``'s only when given): each
        ``{token, email, templateId, includeListIds, excludeListIds, attributes, redirectionUrl,
        requested_at}``."""
        with self.store.reading() as db:
            return doi.pending(db, email)

    def confirm_doi(self, token: str) -> dict[str, Any]:
        """Simulate the click on a double opt-in link: the contact is created or updated, joins the
        request's ``includeListIds`` and leaves its ``excludeListIds``. Returns ``{redirectionUrl,
        contactId, created}``; raises :class:`~.errors.ApiError` (404 for a token that is not pending)."""
        with self.store.transaction() as db:
            return doi.confirm(db, token)

    def segments(self) -> list[dict[str, Any]]:
        """The segments with their rules, oldest first: ``{id, segmentName, categoryName, updatedAt, rules}``."""
        with self.store.reading() as db:
            rows = db.execute("SELECT * FROM segments ORDER BY id").fetchall()
        return [segments.render(r, with_rules=True) for r in rows]

    def create_segment(self, name: str, rules: Any, category: str | None = None) -> int:
        """Define a segment (rules: see :mod:`.segments`; category "Sandbox" by default) and return its
        id; raises :class:`~.errors.ApiError` (400) for rules naming an unknown attribute or list, or a
        value the attribute cannot hold."""
        body = {"name": name, "rules": rules, **({"category": category} if category is not None else {})}
        return int(self.create_segment_from(body)["id"])

    def create_segment_from(self, body: Any) -> dict[str, Any]:
        """``POST /_sandbox/segments``: ``{"name", "rules", "category"?}`` -> the segment with its rules."""
        with self.store.transaction() as db:
            return segments.create(db, body)

    def update_segment(
        self, segment_id: int, *, name: str | None = None, rules: Any = None, category: str | None = None
    ) -> dict[str, Any]:
        """Change a segment (``updatedAt`` moves); a field left ``None`` is kept; 404 for an unknown id."""
        body = {k: v for k, v in (("name", name), ("rules", rules), ("category", category)) if v is not None}
        return self.update_segment_from(segment_id, body)

    def update_segment_from(self, segment_id: int | None, body: Any) -> dict[str, Any]:
        with self.store.transaction() as db:
            return segments.update(db, segment_id, body)  # type: ignore[arg-type]

    def delete_segment(self, segment_id: int | None) -> None:
        """Delete a segment: its id answers ``Segment ID does not exist`` from then on."""
        with self.store.transaction() as db:
            segments.delete(db, segment_id)  # type: ignore[arg-type]

    def unsubscribe_from_list(
        self,
        list_id: int,
        *,
        emails: list[str] | None = None,
        ids: list[int] | None = None,
        ext_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """Simulate contacts unsubscribing from list ``list_id`` only (Brevo's subscription page): they
        leave the list, stay subscribed to emails, and ``unsubscribedPerList`` exports them. Pass one
        of ``emails``, ``ids``, ``ext_ids``; returns ``{"contacts": {"success": [...], "failure": [...]}}``."""
        body = {k: v for k, v in (("emails", emails), ("ids", ids), ("extIds", ext_ids)) if v is not None}
        return self.unsubscribe_from_list_from(list_id, body)

    def unsubscribe_from_list_from(self, list_id: int | None, body: Any) -> dict[str, Any]:
        """``POST /_sandbox/lists/{id}/unsubscribe``."""
        with self.store.transaction() as db:
            return contacts.unsubscribe_from_list(db, list_id, body)

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

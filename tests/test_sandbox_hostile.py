"""Hostile input (issue 11): whatever a client sends, the sandbox answers in Brevo's error shape, logs no
error, frees the connection's thread and keeps serving.

Malformed HTTP goes through raw sockets; each test checks the status, the ``{"code", "message"}`` body
and that the server still answers afterwards. No test waits on a clock: socket timeouts only bound a
read that would otherwise hang (a failure, not a measurement).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from brevo import Brevo
from brevo.core.api_error import ApiError as SdkApiError
from polling import wait_for

from airflow_provider_contactsync.sandbox import BrevoSandbox

BIG = 2**64  # beyond int64: Brevo's ids and SQLite's integers
INT64_MAX = 2**63 - 1


@pytest.fixture(autouse=True)
def no_sandbox_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may make the sandbox log an error (a traceback, an unhandled exception)."""
    caplog.set_level(logging.WARNING, logger="airflow_provider_contactsync.sandbox")
    yield
    errors = [r for r in caplog.records if r.name.startswith("airflow_provider_contactsync.sandbox")]
    assert [r.levelname for r in errors if r.levelno >= logging.ERROR] == [], caplog.text


# --- raw HTTP ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """A raw TCP connection to the sandbox, read through a buffer (pipelined answers may arrive together)."""

    def __init__(self, sandbox: BrevoSandbox) -> None:
        self.sock = socket.create_connection((sandbox.host, sandbox.port), timeout=20)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, *, head: bool = False) -> Answer:
        """One HTTP/1.1 answer (``head``: the answer to a HEAD, which has no body)."""
        status_line = self.reader.readline().decode("latin-1").rstrip("\r\n")
        assert status_line.startswith("HTTP/1.1 "), f"no answer: {status_line!r}"
        headers = {}
        while (line := self.reader.readline().decode("latin-1").rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers["content-length"])
        body = self.reader.read(length)
        assert len(body) == length, "connection closed in the middle of the answer"
        return Answer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """True once the server closed its side (the handler thread is done with this connection)."""
        try:
            return self.reader.read(1) == b""
        except ConnectionResetError:
            return True


def exchange(sandbox: BrevoSandbox, data: bytes) -> tuple[Answer, bool]:
    """Send ``data`` on a new connection: the answer, and whether the server then closed the connection
    (checked when the answer says ``Connection: close``; a kept-alive connection counts as open)."""
    with Connection(sandbox) as conn:
        conn.send(data)
        answer = conn.answer()
        return answer, answer.headers.get("connection") == "close" and conn.closed_by_server()


def request(sandbox: BrevoSandbox, method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: sandbox", f"api-key: {sandbox.api_key}", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_brevo_error(answer: Answer | httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """``status`` with Brevo's error body: a JSON object with a ``code`` and a non-empty ``message``."""
    raw = answer.body if isinstance(answer, Answer) else answer.content
    headers = answer.headers
    actual = answer.status if isinstance(answer, Answer) else answer.status_code
    assert actual == status, raw
    assert headers["content-type"] == "application/json"
    assert b"Traceback" not in raw
    body = json.loads(raw)
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], str) and isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def still_serving(sandbox: BrevoSandbox) -> bool:
    response = httpx.get(sandbox.url + "/account", headers={"api-key": sandbox.api_key}, timeout=20)
    return response.status_code == 200 and response.json()["organization_id"] == "sandbox"


def api(sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers={"api-key": sandbox.api_key}, timeout=30)


# --- JSON bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "a\\ud800@example.com"}',
        b'{"email": "a@example.com", "attributes": {"FIRSTNAME": "x\\udc00"}}',
        b'{"email": "a@example.com", "attributes": {"\\ud83d": "x"}}',
        b'{"email": "a@example.com", "attributes": {"FIRSTNAME": "\\ud83d\\u0041"}}',
        b'{"email": "a@example.com", "attributes": {"FIRSTNAME": "\xed\xa0\x80"}}',  # a surrogate as raw bytes
    ],
    ids=["escaped-in-email", "escaped-low-in-value", "escaped-in-key", "high-without-low", "raw-utf8-bytes"],
)
def test_lone_surrogate_in_json_is_400(brevo_sandbox: BrevoSandbox, body: bytes) -> None:
    # before: 500 internal_error (SQLite could not encode the string), or stored as is
    with api(brevo_sandbox) as client:
        response = client.post("/contacts", content=body, headers={"content-type": "application/json"})
        assert "valid json" in assert_brevo_error(response, 400, "invalid_parameter")["message"]
        assert brevo_sandbox.contacts() == []
        # a surrogate pair is one character: accepted and read back
        pair = b'{"email": "b@example.com", "attributes": {"FIRSTNAME": "\\ud83d\\ude00 \\\\ud800"}}'
        assert client.post("/contacts", content=pair).status_code == 201
        assert client.get("/contacts/b@example.com").json()["attributes"]["FIRSTNAME"] == "\U0001f600 \\ud800"
    assert still_serving(brevo_sandbox)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
@pytest.mark.parametrize("path", ["/v3/contacts", "/v3/contacts/import", "/_sandbox/config"])
def test_10000_deep_json_is_400(brevo_sandbox: BrevoSandbox, opener: bytes, path: str) -> None:
    # before: RecursionError while logging the request, no answer at all
    closer = b"]" if opener == b"[" else b"}"
    body = opener * 10_000 + b"1" + closer * 10_000
    answer, _ = exchange(brevo_sandbox, request(brevo_sandbox, "POST", path, body))
    assert "nested deeper than 64" in assert_brevo_error(answer, 400, "invalid_parameter")["message"]
    assert still_serving(brevo_sandbox)
    with httpx.Client(base_url=brevo_sandbox.base_url, headers={"api-key": brevo_sandbox.api_key}) as control:
        assert control.get("/_sandbox/requests").status_code == 200  # the request log still encodes


def test_json_nesting_limit_is_64(brevo_sandbox: BrevoSandbox) -> None:
    def body(depth: int) -> bytes:  # the object is one level, "x" adds depth - 1 more
        return b'{"email": "a@example.com", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    with api(brevo_sandbox) as client:
        assert_brevo_error(client.post("/contacts", content=body(65)), 400, "invalid_parameter")
        assert client.post("/contacts", content=body(64)).status_code == 201


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(brevo_sandbox: BrevoSandbox, literal: bytes) -> None:
    brevo_sandbox.create_attribute("SCORE", "float")
    body = b'{"email": "a@example.com", "attributes": {"SCORE": ' + literal + b"}}"
    with api(brevo_sandbox) as client:
        assert_brevo_error(client.post("/contacts", content=body), 400, "invalid_parameter")
    assert brevo_sandbox.contacts() == []


def test_non_finite_numbers_are_dropped_like_other_misfits(brevo_sandbox: BrevoSandbox) -> None:
    """1e400 is valid JSON that Python reads as infinity; "nan" a string float() accepts: neither fits a
    float attribute (stored, they made the contact's JSON unreadable to SQLite and to strict clients)."""
    brevo_sandbox.create_attribute("SCORE", "float")
    brevo_sandbox.create_attribute("ERP_ID", "id", category="transactional")
    with api(brevo_sandbox) as client:
        body = b'{"email": "a@example.com", "attributes": {"FIRSTNAME": "A", "SCORE": 1e400, "ERP_ID": "\xc2\xb2"}}'
        assert client.post("/contacts", content=body).status_code == 201
        assert client.put("/contacts/a@example.com", json={"attributes": {"SCORE": "nan"}}).status_code == 204
        rows = b'{"jsonBody": [{"email": "b@example.com", "attributes": {"SCORE": -1e999}}], "listIds": [2]}'
        pid = client.post("/contacts/import", content=rows).json()["processId"]
        wait_for(lambda: client.get(f"/processes/{pid}").json()["status"] == "completed")
        for email in ("a@example.com", "b@example.com"):
            contact = json.loads(client.get(f"/contacts/{email}").content, parse_constant=_refuse_constant)
            assert "SCORE" not in contact["attributes"] and "ERP_ID" not in contact["attributes"]
        assert client.get("/contacts/33612345678", params={"identifierType": "whatsapp_id"}).status_code == 404


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"the answer holds {name}, which is not JSON")


# --- ids beyond 64 bits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", f"/contacts/{BIG}", "document_not_found"),
        ("GET", f"/contacts/{INT64_MAX + 1}?identifierType=contact_id", "document_not_found"),
        ("PUT", f"/contacts/{BIG}", "document_not_found"),
        ("DELETE", f"/contacts/{BIG}", "document_not_found"),
        ("GET", f"/contacts/lists/{BIG}", "document_not_found"),
        ("GET", f"/contacts/lists/{BIG}/contacts", "document_not_found"),
        ("DELETE", f"/contacts/lists/{BIG}", "document_not_found"),
        ("GET", f"/contacts/folders/{BIG}", "document_not_found"),
        ("GET", f"/contacts/folders/{BIG}/lists", "document_not_found"),
        ("GET", f"/processes/{BIG}", "invalid_parameter"),  # Brevo's code for an unknown process
        ("GET", f"/processes/{INT64_MAX}", "invalid_parameter"),
    ],
)
def test_id_beyond_int64_in_a_path_is_404(brevo_sandbox: BrevoSandbox, method: str, path: str, code: str) -> None:
    # before: 500 internal_error (OverflowError binding the id)
    with api(brevo_sandbox) as client:
        body = {"attributes": {"FIRSTNAME": "x"}} if method == "PUT" else None
        assert_brevo_error(client.request(method, path, json=body), 404, code)
    assert still_serving(brevo_sandbox)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "check"),
    [
        ("GET", f"/contacts?ids={BIG},1", None, 200, lambda b: b == {"contacts": [], "count": 0}),
        ("GET", f"/contacts?listIds={BIG}", None, 200, lambda b: b == {"contacts": [], "count": 0}),
        ("GET", f"/contacts?offset={BIG}", None, 400, lambda b: b["code"] == "out_of_range"),
        ("POST", "/contacts", {"email": "a@example.com", "listIds": [BIG]}, 400, lambda b: str(BIG) in b["message"]),
        ("POST", "/contacts/lists", {"name": "L", "folderId": BIG}, 400, lambda b: b["code"] == "invalid_parameter"),
        ("PUT", "/contacts/lists/2", {"folderId": -BIG}, 400, lambda b: b["code"] == "invalid_parameter"),
        (
            "POST",
            "/contacts/lists/2/contacts/add",
            {"ids": [BIG]},
            201,
            lambda b: b == {"contacts": {"success": [], "failure": [BIG]}},
        ),
        ("POST", "/contacts/batch", {"contacts": [{"id": BIG}]}, 404, lambda b: b["code"] == "document_not_found"),
        (
            "POST",
            "/contacts/import",
            {"jsonBody": [{"email": "a@example.com"}], "listIds": [BIG]},
            400,
            lambda b: b["code"] == "invalid_parameter",
        ),
        (
            "POST",
            "/contacts/export",
            {"customContactFilter": {"actionForContacts": "allContacts", "listId": BIG}},
            400,
            lambda b: b["code"] == "invalid_parameter",
        ),
    ],
)
def test_id_beyond_int64_in_a_query_or_body_names_nothing(
    brevo_sandbox: BrevoSandbox, method: str, path: str, body: Any, status: int, check: Callable[[Any], bool]
) -> None:
    with api(brevo_sandbox) as client:
        response = client.request(method, path, json=body)
        assert response.status_code == status, response.text
        assert check(response.json()), response.text
        if status >= 400:
            assert_brevo_error(response, status)
    assert brevo_sandbox.contacts() == []


@pytest.mark.parametrize("identifier", ["\u00b2", "\u0661\u0662", "\uff11"])
def test_digits_outside_ascii_are_not_ids(brevo_sandbox: BrevoSandbox, identifier: str) -> None:
    # before: "²" (a digit to str.isdigit, not to int) was 500; "١٢" was contact 12
    with api(brevo_sandbox) as client:
        client.post("/contacts", json={"email": "a@example.com"})
        for path in (f"/contacts/{identifier}", f"/contacts/lists/{identifier}", f"/processes/{identifier}"):
            assert_brevo_error(client.get(path), 400, "invalid_parameter")
        response = client.get(f"/contacts/{identifier}", params={"identifierType": "contact_id"})
        assert_brevo_error(response, 400, "invalid_parameter")


def test_sdk_sees_a_404_for_an_id_beyond_int64(brevo_sandbox: BrevoSandbox) -> None:
    client = Brevo(api_key=brevo_sandbox.api_key, base_url=brevo_sandbox.url, max_retries=0)
    with pytest.raises(SdkApiError) as err:
        client.contacts.get_contact_info(str(BIG))
    assert err.value.status_code == 404 and err.value.body["code"] == "document_not_found"
    with pytest.raises(SdkApiError) as err:
        client.contacts.get_list(BIG)
    assert err.value.status_code == 404 and err.value.body["code"] == "document_not_found"


# --- methods ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v3/contacts", "GET, HEAD, POST"),
        ("OPTIONS", "/v3/contacts/lists/2/contacts/add", "POST"),
        ("TRACE", "/v3/contacts/lists/2", "DELETE, GET, HEAD, PUT"),
        ("PURGE", "/v3/processes", "GET, HEAD"),
        ("HEAD", "/v3/contacts/lists/2/contacts/add", "POST"),
    ],
)
def test_unsupported_method_is_405(brevo_sandbox: BrevoSandbox, method: str, path: str, allow: str) -> None:
    # before: OPTIONS, HEAD and unknown methods got the stdlib's 501 with an HTML page
    with Connection(brevo_sandbox) as conn:
        conn.send(request(brevo_sandbox, method, path))
        answer = conn.answer(head=method == "HEAD")
        assert answer.status == 405 and answer.headers["allow"] == allow
        if method != "HEAD":
            assert_brevo_error(answer, 405, "method_not_allowed")
            assert answer.json()["message"] == f"{method} Method is not allowed on this path"
        conn.send(request(brevo_sandbox, "GET", "/v3/account"))  # the connection is still usable
        assert conn.answer().status == 200
    with api(brevo_sandbox) as client:
        assert_brevo_error(client.options("/nothing/here"), 404, "document_not_found")
        # /contacts/import is also /contacts/{identifier}: GET reads the contact "import", as Brevo routes it
        assert client.options("/contacts/import").headers["allow"] == "DELETE, GET, HEAD, POST, PUT"


def test_head_is_get_without_a_body(brevo_sandbox: BrevoSandbox) -> None:
    with Connection(brevo_sandbox) as conn:
        # HEAD then GET on one connection: a body after the HEAD's headers would corrupt the second answer
        conn.send(
            request(brevo_sandbox, "HEAD", "/v3/contacts/lists") + request(brevo_sandbox, "GET", "/v3/contacts/lists")
        )
        head = conn.answer(head=True)
        get = conn.answer()
    assert head.status == get.status == 200
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
    assert head.headers["content-type"] == "application/json" and "x-sib-ratelimit-limit" in head.headers
    assert get.json()["count"] == 1
    response = httpx.head(
        brevo_sandbox.url + "/contacts/nobody@example.com", headers={"api-key": brevo_sandbox.api_key}
    )
    assert response.status_code == 404 and response.content == b""


# --- malformed HTTP ---------------------------------------------------------------------------------

MALFORMED = {
    "negative-content-length": (b"POST /v3/contacts HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
    "content-length-not-a-number": (b"POST /v3/contacts HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400, "bad_request"),
    "two-content-lengths": (
        b"POST /v3/contacts HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        400,
        "bad_request",
    ),
    "content-length-and-chunked": (
        b"POST /v3/contacts HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        400,
        "bad_request",
    ),
    "gzip-transfer-encoding": (
        b"POST /v3/contacts HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
        "bad_request",
    ),
    "malformed-chunk-size": (
        b"POST /v3/contacts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        400,
        "bad_request",
    ),
    "absurd-content-length": (
        b"POST /v3/contacts HTTP/1.1\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n",
        413,
        "out_of_range",
    ),
    "http-0.9-get": (b"GET /v3/contacts\r\n", 400, "bad_request"),
    "http-0.9-post": (b"POST /v3/contacts\r\n", 400, "bad_request"),
    "bad-version": (b"GET /v3/contacts HTTP/1.x\r\n\r\n", 400, "bad_request"),
    "http-2-request-line": (b"GET /v3/contacts HTTP/2.0\r\n\r\n", 505, "bad_request"),
    "request-line-over-64k": (b"GET /v3/contacts?q=" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "bad_request"),
    "header-line-over-64k": (b"GET /v3/contacts HTTP/1.1\r\nX: " + b"x" * 70_000 + b"\r\n\r\n", 431, "bad_request"),
    "too-many-headers": (b"GET /v3/contacts HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "bad_request"),
    "tls-hello-on-http": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 x y z\r\n\r\n", 400, "bad_request"),
    "bad-request-target": (b"GET http://[::1/v3/contacts HTTP/1.1\r\n\r\n", 400, "bad_request"),
}


@pytest.mark.parametrize(("data", "status", "code"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_gets_an_answer_and_the_connection_is_closed(
    brevo_sandbox: BrevoSandbox, data: bytes, status: int, code: str
) -> None:
    # before: no answer (negative Content-Length: ValueError in the handler), a hang (HTTP/0.9), or the
    # stdlib's HTML error page
    answer, closed = exchange(brevo_sandbox, data)
    assert_brevo_error(answer, status, code)
    assert answer.headers["connection"] == "close" and closed
    assert still_serving(brevo_sandbox)


def test_expect_100_continue_with_a_body_too_large_is_refused_before_it_is_sent(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    sandbox = brevo_sandbox_factory(max_body_bytes=1000)
    data = request(sandbox, "POST", "/v3/contacts/import", b"", "Content-Length: 5000", "Expect: 100-continue")
    answer, closed = exchange(sandbox, data)  # the first answer is the refusal, not "100 Continue"
    assert_brevo_error(answer, 413, "out_of_range")
    assert closed and still_serving(sandbox)


def test_body_over_max_body_bytes_is_413_and_the_client_reads_it(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    """The body is read and thrown away before the close: an ordinary client, busy sending, reads the 413
    instead of a connection reset."""
    sandbox = brevo_sandbox_factory(max_body_bytes=10_000)
    body = json.dumps({"jsonBody": [{"email": f"u{i}@example.com"} for i in range(100_000)], "listIds": [2]})
    with api(sandbox) as client:
        response = client.post("/contacts/import", content=body.encode())
    assert "10000 bytes" in assert_brevo_error(response, 413, "out_of_range")["message"]
    assert [e["status"] for e in sandbox.requests()] == [413]
    assert still_serving(sandbox)


def test_chunked_bodies_are_read(brevo_sandbox: BrevoSandbox) -> None:
    # before: the body was ignored (answer "Request body is missing") and its chunks read as a request
    first, second = b'{"emai', b'l": "a@example.com"}'
    body = b"%x;ext=1\r\n%s\r\n%X\r\n%s\r\n0\r\nTrailer: x\r\n\r\n" % (len(first), first, len(second), second)
    data = request(brevo_sandbox, "POST", "/v3/contacts", body, "Transfer-Encoding: chunked")
    answer, _ = exchange(brevo_sandbox, data)
    assert answer.status == 201, answer.body

    def chunks() -> Iterator[bytes]:
        yield b'{"email": '
        yield b'"b@example.com"}'

    with api(brevo_sandbox) as client:  # httpx sends an iterator's content chunked
        assert client.post("/contacts", content=chunks()).status_code == 201
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["a@example.com", "b@example.com"]


def test_empty_lines_before_a_request_line_are_ignored(brevo_sandbox: BrevoSandbox) -> None:
    answer, _ = exchange(brevo_sandbox, b"\r\n" + request(brevo_sandbox, "GET", "/v3/account"))
    assert answer.status == 200


# --- read timeout -----------------------------------------------------------------------------------


def test_short_body_times_out_with_408_and_frees_the_connection(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    # before: the handler thread waited for the missing 93 bytes forever
    sandbox = brevo_sandbox_factory(read_timeout=0.5)
    data = request(sandbox, "POST", "/v3/contacts", b'{"a":1}', "Content-Length: 100")
    answer, closed = exchange(sandbox, data)
    assert_brevo_error(answer, 408, "bad_request")
    assert closed and still_serving(sandbox)
    assert [(e["method"], e["path"], e["status"]) for e in sandbox.requests()] == [
        ("POST", "/v3/contacts", 408),
        ("GET", "/v3/account", 200),
    ]
    assert sandbox.contacts() == []


def test_body_ending_early_is_400(brevo_sandbox: BrevoSandbox) -> None:
    with Connection(brevo_sandbox) as conn:
        conn.send(request(brevo_sandbox, "POST", "/v3/contacts", b'{"a":1}', "Content-Length: 100"))
        conn.sock.shutdown(socket.SHUT_WR)  # the client is done sending: 7 of 100 bytes
        answer = conn.answer()
    assert "7 of its 100 bytes" in assert_brevo_error(answer, 400, "bad_request")["message"]
    assert still_serving(brevo_sandbox)


def test_body_trickling_in_is_cut_at_read_timeout(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    """read_timeout bounds the whole request, not each read: one byte every 50 ms keeps every read short
    but would hold the thread for 10 s."""
    sandbox = brevo_sandbox_factory(read_timeout=0.5)
    stop = threading.Event()
    with Connection(sandbox) as conn:
        conn.send(request(sandbox, "POST", "/v3/contacts", b"", "Content-Length: 200"))

        def trickle() -> None:
            for _ in range(200):
                if stop.wait(0.05):  # a slow client, not a synchronisation
                    return
                try:
                    conn.sock.send(b" ")
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            answer = conn.answer()
        finally:
            stop.set()
            sender.join()
    assert_brevo_error(answer, 408, "bad_request")
    assert still_serving(sandbox)


@pytest.mark.parametrize(
    "data",
    [b"GET /v3/contacts", b"GET /v3/contacts HTTP/1.1\r\nHost: sandbox\r\n"],
    ids=["request-line-never-ends", "headers-never-end"],
)
def test_request_that_never_completes_is_408(brevo_sandbox_factory: Callable[..., BrevoSandbox], data: bytes) -> None:
    sandbox = brevo_sandbox_factory(read_timeout=0.5)
    answer, closed = exchange(sandbox, data)
    assert_brevo_error(answer, 408, "bad_request")
    assert closed and still_serving(sandbox)


def test_idle_keep_alive_connection_is_closed_without_an_answer(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    sandbox = brevo_sandbox_factory(idle_timeout=0.3)
    with Connection(sandbox) as conn:
        conn.send(request(sandbox, "GET", "/v3/account"))
        assert conn.answer().status == 200
        assert conn.closed_by_server()  # nothing more was asked: closed, and no 408 to a client that sent nothing
    with Connection(sandbox) as conn:
        assert conn.closed_by_server()
    assert still_serving(sandbox)


def test_read_timeout_set_at_run_time_applies_to_open_connections(brevo_sandbox: BrevoSandbox) -> None:
    with Connection(brevo_sandbox) as conn:
        conn.send(request(brevo_sandbox, "POST", "/_sandbox/config", b'{"read_timeout": 0.3}'))
        assert conn.answer().json()["read_timeout"] == 0.3
        conn.send(request(brevo_sandbox, "POST", "/v3/contacts", b"{", "Content-Length: 10"))  # 1 of 10 bytes
        assert_brevo_error(conn.answer(), 408, "bad_request")
        assert conn.closed_by_server()
    assert still_serving(brevo_sandbox)


def test_timeouts_are_settings(brevo_sandbox: BrevoSandbox) -> None:
    with httpx.Client(base_url=brevo_sandbox.base_url + "/_sandbox", headers={"api-key": brevo_sandbox.api_key}) as c:
        assert c.get("/config").json()["read_timeout"] == 60.0
        assert c.post("/config", json={"read_timeout": 5, "idle_timeout": 30}).json()["idle_timeout"] == 30.0
        for bad in (b'{"read_timeout": 0}', b'{"idle_timeout": -1}', b'{"slow_ms": 1e30}', b'{"slow_ms": 1e400}'):
            assert_brevo_error(c.post("/config", content=bad), 400, "invalid_parameter")
        assert_brevo_error(c.post("/config", json=[1, 2]), 400, "invalid_parameter")
        assert_brevo_error(c.post("/config", content=b"[" * 10_000), 400, "invalid_parameter")
        fault = b'{"action": "status", "status": 1e400}'  # int(inf): OverflowError, before an unanswered request
        assert_brevo_error(c.post("/faults", content=fault), 400, "invalid_parameter")
        assert c.get("/config").json()["read_timeout"] == 5.0


# --- listen backlog ---------------------------------------------------------------------------------


def test_64_parallel_imports_are_all_accepted(brevo_sandbox: BrevoSandbox) -> None:
    # before: a listen backlog of 5, and 9 to 28 of 50 clients connecting at once got a connection reset
    clients = 64
    start = threading.Barrier(clients)
    answers: list[Any] = []

    def send(n: int) -> None:
        body = {"jsonBody": [{"email": f"c{n}-{i}@example.com"} for i in range(20)], "listIds": [2]}
        try:
            with api(brevo_sandbox) as client:
                start.wait()
                answers.append(client.post("/contacts/import", json=body).status_code)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            answers.append(repr(exc))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [202] * clients
    with api(brevo_sandbox) as client:
        wait_for(lambda: client.get("/contacts", params={"limit": 1}).json()["count"] == clients * 20)


# --- rate-limit fault -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "limit"), [("/processes", "100"), ("/contacts", "10")])
def test_forced_429_resets_within_a_second(
    brevo_sandbox_factory: Callable[..., BrevoSandbox], path: str, limit: str
) -> None:
    # before: /processes answered x-sib-ratelimit-reset: 3600, so a client honouring it waited an hour
    sandbox = brevo_sandbox_factory(rate_429=1.0, contacts_rps=10, contacts_per_hour=36_000, other_per_hour=100)
    with api(sandbox) as client:
        response = client.get(path)
    assert_brevo_error(response, 429, "too_many_requests")
    assert response.headers["x-sib-ratelimit-reset"] == "1"
    assert response.headers["x-sib-ratelimit-remaining"] == "0"
    assert response.headers["x-sib-ratelimit-limit"] == limit


def test_hourly_limit_keeps_its_own_reset(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(other_per_hour=1)
    with api(sandbox) as client:
        assert client.get("/processes").status_code == 200
        limited = client.get("/processes")
    assert_brevo_error(limited, 429, "too_many_requests")
    assert 3000 < int(limited.headers["x-sib-ratelimit-reset"]) <= 3600

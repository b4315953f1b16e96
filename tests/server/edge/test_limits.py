"""Bounds on every part of a request, on a real socket: the request target, the number and size
of the headers, a head that never ends, the structure of a JSON body. Each gets its 4xx (in
the JSON error shape where the app still answers) and the server keeps serving; pathological
documents thrown at the ASGI app directly never make an exception escape it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from pipeserve_nb import BatchPolicy, LoadedModel, ServerConfig, ServerHandle, serve
from pipeserve_nb._models.spec import ModelSpec
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.edge.app import create_app

GOOD = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"inputs": "a"}'


@pytest.fixture
def server(embedder: LoadedModel) -> Iterator[ServerHandle]:
    with serve(embedder, name="limits-test") as handle:
        yield handle


class Connection:
    """One keep-alive HTTP/1.1 connection, read response by response."""

    def __init__(self, handle: ServerHandle) -> None:
        self.sock = socket.create_connection((handle.host, handle.port), timeout=30)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def request(target: str = "/", headers: list[str] | None = None) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: x", "Content-Type: application/json", "Content-Length: 15"]
    return ("\r\n".join(lines + (headers or [])) + "\r\n\r\n").encode() + b'{"inputs": "a"}'


@pytest.mark.parametrize(
    ("name", "data", "status", "kind"),
    [
        ("target over max_url_bytes", request("/?q=" + "a" * 9000), 414, "UriTooLong"),
        ("more than max_headers fields", request(headers=[f"X-H{i}: v" for i in range(101)]), 431, "HeadersTooLarge"),
        ("headers over max_header_bytes", request(headers=["X-Big: " + "v" * 17000]), 431, "HeadersTooLarge"),
        ("JSON deeper than max_json_depth", None, 400, "InvalidInput"),
    ],
)
def test_a_request_over_a_bound_gets_its_4xx_and_the_connection_serves_the_next(
    server: ServerHandle, name: str, data: bytes | None, status: int, kind: str
) -> None:
    if data is None:
        body = b'{"inputs": "a", "parameters": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}"
        data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        data += f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    conn = Connection(server)
    try:
        conn.send(data)
        got, headers, body = conn.response()
        assert got == status and headers["content-type"] == "application/json", name
        assert json.loads(body)["error"]["type"] == kind
        conn.send(GOOD)  # the same keep-alive connection answers the next request
        assert conn.response()[0] == 200
    finally:
        conn.close()


def test_a_head_that_never_ends_is_cut_off_before_it_is_buffered(server: ServerHandle) -> None:
    limit = ServerConfig().max_head_bytes
    conn = Connection(server)
    try:  # one header line, never finished: past the bound the server answers and closes
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"v" * (limit + 4096))
        status, headers, body = conn.response()
        assert conn.closed_by_server()
    finally:
        conn.close()
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body)["error"]["type"] == "HeadersTooLarge"
    assert server.query("still serving") is not None


PATHOLOGICAL: list[tuple[str, bytes]] = [
    ("arrays 5000 deep", b"[" * 5000 + b"]" * 5000),
    ("objects 2000 deep", b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ("parameters 33 deep", b'{"inputs": "a", "parameters": {"p": ' + b"[" * 31 + b"]" * 31 + b"}}"),
    ("an integer of 5000 digits", b'{"inputs": "a", "parameters": {"p": 1' + b"0" * 5000 + b"}}"),
    ("a float past the double range", b'{"inputs": "a", "parameters": {"p": 1e999}}'),
    ("NaN", b'{"inputs": "a", "parameters": {"p": NaN}}'),
    ("Infinity", b'{"inputs": "a", "parameters": {"p": -Infinity}}'),
    ("a lone high surrogate", b'{"inputs": "\\ud800"}'),
    ("a lone low surrogate", b'{"inputs": "x\\udc00y"}'),
    ("reversed surrogates", b'{"inputs": "\\udc00\\ud800"}'),
    ("a raw control character", b'{"inputs": "a\x01b"}'),
    ("an overlong UTF-8 slash", b'{"inputs": "\xc0\xaf"}'),
    ("UTF-16 with a BOM", '\ufeff{"inputs": "a"}'.encode("utf-16")),
    ("UTF-32", '{"inputs": "a"}'.encode("utf-32")),
    ("a UTF-8 BOM", b'\xef\xbb\xbf{"inputs": "a"}'),
    ("a trailing comma", b'{"inputs": ["a",]}'),
    ("a comment", b'{"inputs": "a" /* hi */}'),
    ("single quotes", b"{'inputs': 'a'}"),
    ("two documents", b'{"inputs": "a"} {"inputs": "b"}'),
    ("a 300k-element unknown parameter", b'{"inputs": "a", "parameters": {"q": [' + b"0," * 300_000 + b"0]}}"),
    ("a key of 100k escapes", b'{"' + b"\\u0041" * 100_000 + b'": 1, "inputs": "a"}'),
    ("inputs as an object", b'{"inputs": {"text": "a"}}'),
    ("inputs of nulls", b'{"inputs": [null, null]}'),
    ("inputs of deep lists", b'{"inputs": ' + b"[" * 30 + b'"a"' + b"]" * 30 + b"}"),
    ("an empty key", b'{"": 1, "inputs": "a"}'),
    ("only whitespace", b" \t\r\n "),
    ("a bare string", b'"inputs"'),
    ("a bare number", b"-0.0e-0"),
]


def test_pathological_documents_get_a_4xx_json_error_and_never_escape_the_app() -> None:
    """At the ASGI app directly (no HTTP server to catch anything): every answer is a 4xx in
    the JSON error shape, and a good request right after each is answered."""

    def echo(inputs: list[str], p: object = None) -> list[str]:
        return inputs

    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig())
    with TestClient(create_app(engine), raise_server_exceptions=True) as client:
        for name, body in PATHOLOGICAL:
            for content_type in ("application/json", "application/vnd.api+json; charset=utf-8"):
                response = client.post("/", content=body, headers={"content-type": content_type})
                assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
                error = response.json()["error"]
                assert set(error) == {"type", "message"} and error["message"], name
            assert client.post("/", json={"inputs": "after " + name}).json() == "after " + name

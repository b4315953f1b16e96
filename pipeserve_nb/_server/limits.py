"""Bounds on the parts of a request before its body: the request target, the headers, the whole head.

The body, the number of inputs and their tokens are bounded where they are read
(``app``, ``protocol``, ``admission``). What comes before the body is bounded here, twice:

- ``RequestLimits``, the app's outermost ASGI middleware, answers in the JSON error shape:
  a request target (path and query) over ``max_url_bytes`` gets 414 ``UriTooLong``; more
  than ``max_headers`` header fields, or more than ``max_header_bytes`` of them in all,
  431 ``HeadersTooLarge``. It runs under any ASGI server.
- ``bounded_httptools(max_head_bytes)``, the HTTP protocol pipeserve runs uvicorn with, bounds
  what a head may *buffer*: uvicorn's httptools parser has no head-size limit of its own (only
  its h11 parser does, ``h11_max_incomplete_event_size``), so a client could send headers
  forever. Once more than ``max_head_bytes`` arrived without the head ending, the connection
  gets 431 and is closed: the app never sees a request it could not answer. Under an
  external uvicorn, ``--http pipeserve_nb.asgi:HttpProtocol`` runs the same protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .._wire import error_body
from .errors import web_error_response

__all__ = ["RequestLimits", "bounded_httptools"]


class RequestLimits:
    """ASGI middleware: 414 / 431 for a request target or headers over their bounds."""

    def __init__(self, app: ASGIApp, *, max_url_bytes: int, max_headers: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Any:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if target > self.max_url_bytes:
            return web_error_response(
                414, f"the request target has {target} bytes, over max_url_bytes={self.max_url_bytes}"
            )
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            return web_error_response(
                431, f"the request has {len(headers)} header fields, over max_headers={self.max_headers}"
            )
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            return web_error_response(
                431, f"the headers have {size} bytes, over max_header_bytes={self.max_header_bytes}"
            )
        return None


class _BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the bytes of an unfinished request head."""

    max_head_bytes = 65536

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._in_head, self._head_bytes = True, 0
        super().connection_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        if counting and self._in_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def _refuse_head(self) -> None:
        message = f"the request head passed {self.max_head_bytes} bytes without ending"
        body = orjson.dumps(error_body("HeadersTooLarge", message))
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def bounded_httptools(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose head passes ``max_head_bytes``."""
    return type("BoundedHttpTools", (_BoundedHttpTools,), {"max_head_bytes": max_head_bytes})

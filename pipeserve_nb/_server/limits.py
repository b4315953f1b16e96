"""Bounds on the parts of a request before its body: the request target and the headers.

The body, the number of inputs and their tokens are bounded where they are read
(``app``, ``protocol``, ``admission``). What comes before the body is bounded twice:

- ``RequestLimits``, here, the app's outermost ASGI middleware, answers in the JSON error
  shape: a request target (path and query) over ``max_url_bytes`` gets 414 ``UriTooLong``;
  more than ``max_headers`` header fields, or more than ``max_header_bytes`` of them in all,
  431 ``HeadersTooLarge``. It runs under any ASGI server.
- the HTTP protocol pipeserve runs uvicorn with (``http_protocol``) bounds what a head may
  *buffer*, before the app sees it: a head that passes ``max_head_bytes`` without ending
  gets 431 and the connection is closed.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import web_error_response

__all__ = ["RequestLimits"]


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

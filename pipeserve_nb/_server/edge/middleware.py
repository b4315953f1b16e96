"""The ASGI middleware in front of the routes, outermost first: what a request passes before a handler runs.

1. ``RequestLimits``: a request target (path and query) over ``max_url_bytes`` gets 414
   ``UriTooLong``; more than ``max_headers`` header fields, or more than ``max_header_bytes`` of
   them in all, 431 ``HeadersTooLarge``. It runs under any ASGI server (the HTTP protocol pipeserve
   runs uvicorn with also bounds what an unfinished head may buffer: ``http_protocol``).
2. ``ReplicaHeader`` (on a replica of a Ray Serve deployment): every answer, refusals included,
   names the replica in ``X-Replica``.
3. ``BearerTokenMiddleware`` (with ``ServerConfig.auth_token`` set): a request without
   ``Authorization: Bearer <token>`` gets 401. The token is compared with ``hmac.compare_digest``,
   so the time taken does not reveal how much matched.
4. ``Shedding``: a ``POST /`` that finds the engine without room is refused (503) before the
   router, the request object, the handler and the body read: under overload most requests are
   refused, and a refusal must cost the model's cores as little as it can.

Each is a pure ASGI callable (no ``BaseHTTPMiddleware``): one function call per request.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..._exceptions import RequestFailed
from ..._wire import REPLICA_HEADER, error_body
from ..core.engine import Engine
from ..observe.stats import clock
from .errors import error_response, web_error_response

__all__ = ["RequestLimits", "ReplicaHeader", "BearerTokenMiddleware", "Shedding"]


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


class ReplicaHeader:
    """Adds ``X-Replica: <replica>`` to every HTTP response of ``app``."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self._header = (REPLICA_HEADER.encode("latin-1"), replica.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self._header]}
            await send(message)

        await self.app(scope, receive, send_named)


class BearerTokenMiddleware:
    """Answer 401 to any HTTP request that lacks the bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = b"bearer " + token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            denied = JSONResponse(
                error_body("Unauthorized", "send the server's token as 'Authorization: Bearer <token>'"),
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="pipeserve_nb"'},
            )
            await denied(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        # the scheme is case-insensitive; compare the whole header in constant time
        return hmac.compare_digest(given[:7].lower() + given[7:], self._expected)


class Shedding:
    """Answers ``POST /`` from ``engine.check_room()`` when it raises; passes everything else on."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] == "POST":
            started = clock()
            try:
                self.engine.check_room()
            except RequestFailed as exc:
                response = error_response(exc, self.engine.config.debug)
                await response(scope, receive, send)
                self.engine.stats.record_response(response.status_code, clock() - started)
                return
        await self.app(scope, receive, send)

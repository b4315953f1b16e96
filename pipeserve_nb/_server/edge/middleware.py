"""The ASGI middleware in front of the routes, outermost first: what a request passes before a handler runs.

0. ``Counting``: every answer, refusals included, is counted by status in the server's numbers.
1. ``RequestLimits``: a request target (path and query) over ``max_url_bytes`` gets 414
   ``UriTooLong``; more than ``max_headers`` header fields, or more than ``max_header_bytes`` of
   them in all, 431 ``HeadersTooLarge``. It runs under any ASGI server (the HTTP protocol pipeserve
   runs uvicorn with also bounds what an unfinished head may buffer: ``http_protocol``).
2. ``ReplicaHeader`` (on a replica of a Ray Serve deployment): every answer, refusals included,
   names the replica in ``X-Replica``.
3. ``BearerTokenMiddleware`` (with ``ServerConfig.auth_token`` set): a request without
   ``Authorization: Bearer <token>`` gets 401, but for the try-it page (``GET /``: a static file that
   holds no secret; what it calls needs the token). The token is compared with ``hmac.compare_digest``,
   so the time taken does not reveal how much matched.
4. ``Shedding``: a ``POST /`` (or ``POST /models/{name}``) takes its room in its model's engine here
   (``Engine.reserve``: the one room check it gets), or is refused (503) before the router, the request
   object, the handler and the body read: under overload most requests are refused, and a refusal
   must cost the model's cores as little as it can. The room is held while the body is read; the
   handler uses or releases it.

Each is a pure ASGI callable (no ``BaseHTTPMiddleware``): one function call per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..._exceptions import RequestFailed
from ..._wire import REPLICA_HEADER
from ..core.models import Models
from ..observe.stats import clock
from .errors import CLIENT_CLOSED, error_response, openai_face, refusal
from .page import PAGE_PATH

__all__ = ["Counting", "REPORT", "RESERVATION", "MODEL", "RequestLimits", "ReplicaHeader", "BearerTokenMiddleware"]
__all__ += ["Shedding", "native_model"]

REPORT = "pipeserve.report"
"""The scope key a report route (``/health``, ``/stats``, ``/metrics``, ``/openapi.json``, the try-it page)
sets on a request it serves: its answer describes the server and is not counted as a request."""


RESERVATION = "pipeserve.reservation"
"""The scope key under which ``Shedding`` hands the handler of ``POST /`` its request's room."""

MODEL = "pipeserve.model"
"""The scope key of the model a request was routed to (its name): ``Counting`` counts the answer there."""

MODELS_PATH = "/models/"
"""The native route of a named model: ``POST /models/{name}`` (``POST /`` is the default model's)."""


def native_model(scope: Scope) -> str | None:
    """The model a native ``POST`` names by its path: ``""`` for ``POST /`` (the default), the name for
    ``POST /models/{name}``, None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == "/":
        return ""
    if path.startswith(MODELS_PATH) and len(path) > len(MODELS_PATH):
        return path[len(MODELS_PATH) :]
    return None


class Counting:
    """Counts each answer by status, with its latency, in the server's numbers (``record``).

    Counted: every answer to a request for the model, and every refusal on any route (401, 404,
    405, 413, 414, 431, 503, ...); not counted: the answers of the report routes to the requests
    they served. A client that leaves before its answer counts as 499, whether the handler saw it
    go or the ASGI server cancelled the handler (Ray Serve does); an exception no handler caught
    counts as the 500 that Starlette then sends.
    """

    def __init__(self, app: ASGIApp, record: Callable[[int, float, str | None], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = clock()
        status = 0

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except asyncio.CancelledError:
            self.record(CLIENT_CLOSED, clock() - started, scope.get(MODEL))
            raise
        except Exception:
            self.record(status or 500, clock() - started, scope.get(MODEL))
            raise
        if not scope.get(REPORT):
            self.record(status or 500, clock() - started, scope.get(MODEL))


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
        openai = openai_face(scope["path"])
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if target > self.max_url_bytes:
            return refusal(
                "UriTooLong",
                f"the request target has {target} bytes, over max_url_bytes={self.max_url_bytes}",
                openai=openai,
            )
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            return refusal(
                "HeadersTooLarge",
                f"the request has {len(headers)} header fields, over max_headers={self.max_headers}",
                openai=openai,
            )
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            return refusal(
                "HeadersTooLarge",
                f"the headers have {size} bytes, over max_header_bytes={self.max_header_bytes}",
                openai=openai,
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
    """Answer 401 to any HTTP request that lacks the bearer token, but a ``GET`` of the try-it page."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = b"bearer " + token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _the_page(scope) and not self._authorized(scope):
            denied = refusal(
                "Unauthorized",
                "send the server's token as 'Authorization: Bearer <token>'",
                {"www-authenticate": 'Bearer realm="pipeserve_nb"'},
                openai=openai_face(scope["path"]),
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


def _the_page(scope: Scope) -> bool:
    return scope["path"] == PAGE_PATH and scope["method"] in ("GET", "HEAD")


class Shedding:
    """Takes room for a native ``POST`` in its model's engine (``scope[RESERVATION]``), or answers the refusal
    ``Engine.reserve()`` raises; passes everything else on (a generation is admitted when it starts:
    ``Generating.start``; a name the server does not hold is the route's 404)."""

    def __init__(self, app: ASGIApp, models: Models) -> None:
        self.app = app
        self.models = models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = native_model(scope)
        engine = None
        if name is not None:
            with contextlib.suppress(RequestFailed):
                engine = self.models.get(name or None)
        if engine is not None and engine.generating is None:
            scope[MODEL] = engine.name
            try:
                scope[RESERVATION] = engine.reserve()
            except RequestFailed as exc:
                await error_response(exc, engine.config.debug)(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""Load shedding: a ``POST /`` that finds the engine without room is refused before routing.

Under overload most requests are refused, so a refusal must cost the model's cores as little
as it can. This pure ASGI middleware asks the engine (``Engine.check_room``: by count, and by
the forecast start wait) before anything else reads the request: no router, no request object,
no handler, no body read. It sits just inside the bearer-token check, so a request without the
token still gets 401, and inside the bounds on the request target and headers (``limits``).

A request that passes is still admitted by ``Engine.submit`` in the handler, since room can be
taken while its body is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .._exceptions import RequestFailed
from .engine import Engine
from .errors import error_response
from .request import clock

__all__ = ["Shedding"]


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

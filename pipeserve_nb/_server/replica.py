"""A server as one replica of many (a Ray Serve deployment): every answer says which replica sent it.

Pure ASGI, so it also names the answers that middleware in front of the routes writes
(401, 414, 431) and costs one list append per response.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._wire import REPLICA_HEADER

__all__ = ["ReplicaHeader"]


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

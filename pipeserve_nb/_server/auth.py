"""Access control: a bearer token every request must carry, which addresses are local, and
the refusal to expose a server without a token.

``BearerTokenMiddleware`` wraps the app when ``ServerConfig.auth_token`` is set: a request
without ``Authorization: Bearer <token>`` gets 401 before any route runs. The token is
compared with ``hmac.compare_digest`` so the time taken does not reveal how much matched.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .._exceptions import InvalidSetting
from .._wire import error_body

__all__ = ["BearerTokenMiddleware", "is_loopback", "check_exposure"]

logger = logging.getLogger("pipeserve_nb")


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


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to serve a non-loopback address without a token, unless explicitly allowed."""
    if is_loopback(host) or token is not None:
        return
    if not allow_unauthenticated:
        raise InvalidSetting(
            f"host={host!r} makes the server reachable from other machines; set "
            "config=ServerConfig(auth_token=secrets.token_urlsafe()) so clients must send it, "
            "or pass allow_unauthenticated=True if this network is trusted"
        )
    logger.warning("pipeserve_nb: serving %s without a token; anyone who can reach it can use the model", host)

"""Which addresses are local, and the refusal to expose a server without a token."""

from __future__ import annotations

import ipaddress
import logging

from ..._exceptions import InvalidSetting

__all__ = ["is_loopback", "check_exposure"]

logger = logging.getLogger("pipeserve_nb")


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

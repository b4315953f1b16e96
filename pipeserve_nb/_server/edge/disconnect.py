"""Waiting for an answer while listening for the client to leave (every route that awaits the model)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

__all__ = ["answered_before_disconnect"]


async def answered_before_disconnect(future: asyncio.Future[Any], request: Request) -> bool:
    """Wait for ``future``; if the client disconnects first, cancel it and return False.

    A caller cancelled meanwhile (the ASGI server gave up on the request) gets ``CancelledError`` with
    ``future`` left as it is: the caller decides what its going away means."""
    if future.done():
        return True
    listener = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((future, listener), return_when=asyncio.FIRST_COMPLETED)
    finally:
        listener.cancel()
    if future.done():
        return True
    future.cancel()
    return False


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read; nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

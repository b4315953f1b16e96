"""Waiting for an answer while listening for the client to leave (every route that awaits the model), and
cancelling what the request started when it leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from starlette.requests import Request

__all__ = ["answered_before_disconnect", "unless_disconnected"]

T = TypeVar("T")


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


async def unless_disconnected(work: Awaitable[T], generations: Iterable[Any], request: Request) -> T | None:
    """``work``'s result, or None when the client disconnects first; either way a client that leaves (or an
    ASGI server that gives up on the request: ``CancelledError``) cancels ``generations`` (``client_gone``)."""
    task = asyncio.ensure_future(work)
    try:
        answered = await answered_before_disconnect(task, request)
    except asyncio.CancelledError:  # the ASGI server gave up on the request (Ray Serve: its client left)
        _cancel(generations)
        task.cancel()
        raise
    if not answered:
        _cancel(generations)
        return None
    return task.result()  # raises what ended the work before an answer


def _cancel(generations: Iterable[Any]) -> None:
    for generation in generations:
        generation.cancel("client_gone")


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read; nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

"""A minimal HTTP/1.1 client for load generation: POST with a body, keep-alive connections.

A load generator on a small machine must cost the server as little CPU as possible, and
must not slow down as outstanding requests pile up. A general client (httpx) spends a few
hundred microseconds of CPU per request and its pool scans every waiting request whenever
a connection frees up, so an open loop against an overloaded server grows quadratically
expensive. This client does one thing: send ``POST`` requests, reuse idle connections, and
open a new one whenever none is idle (so an open loop is never held back by a pool limit).

Each connection is an ``asyncio.Protocol`` whose bytes go straight into ``httptools``' C
parser (the one uvicorn uses): no stream buffers and no task per read, one future per
request. It reads ``Content-Length``, chunked, and read-to-the-end bodies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["RawClient", "RawResponse", "ConnectError", "ReadTimeout", "RemoteProtocolError"]


class ConnectError(OSError):
    """The server could not be reached."""


class ReadTimeout(TimeoutError):
    """No complete answer within the client's timeout."""


class RemoteProtocolError(OSError):
    """The server closed the connection or answered something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawClient:
    """POST to one ``http://host:port/path`` URL over reusable keep-alive connections."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host:port URLs are supported, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._authority = parts.netloc
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def post(self, body: bytes, content_type: str) -> RawResponse:
        """Send one request; raise ``ConnectError``, ``ReadTimeout`` or ``RemoteProtocolError``."""
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._authority}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        return await self._exchange(head + body, retry=True)

    async def aclose(self) -> None:
        """Close every connection."""
        for connection in list(self._all):
            self._discard(connection)
        self._idle.clear()

    async def _exchange(self, request: bytes, retry: bool) -> RawResponse:
        connection = self._take_idle()
        reused = connection is not None
        if connection is None:
            connection = await self._open()
        loop = asyncio.get_running_loop()
        answer = connection.send(request, loop)
        timer = loop.call_later(self._timeout_s, _expire, answer, self._timeout_s)
        try:
            response = await answer
        except RemoteProtocolError:
            self._discard(connection)
            if reused and retry:  # the server may have closed an idle connection: retry once on a new one
                return await self._exchange(request, retry=False)
            raise
        except BaseException:  # timed out, or the caller was cancelled: an answer may still arrive on it
            self._discard(connection)
            raise
        finally:
            timer.cancel()
        if connection.keep_alive:
            self._idle.append(connection)
        else:
            self._discard(connection)
        return response

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost:
                return connection
            self._all.discard(connection)
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                _, connection = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            raise ConnectError(f"connecting to {self._authority} timed out") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self._authority}: {exc.strerror or exc}") from exc
        self._all.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        self._all.discard(connection)
        connection.close()


def _expire(answer: asyncio.Future[RawResponse], timeout_s: float) -> None:
    if not answer.done():
        answer.set_exception(ReadTimeout(f"no answer within {timeout_s:g} s"))


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one request at a time; ``httptools`` calls the ``on_*`` methods."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[RawResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._head_done = False
        self.keep_alive = True
        self.lost = False

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[RawResponse]:
        """Write one request; the future gets its answer (or ``RemoteProtocolError``)."""
        self._answer = answer = loop.create_future()
        self._headers, self._body, self._head_done = {}, [], False
        if self.lost or self._transport is None:
            answer.set_exception(RemoteProtocolError("the connection was closed"))
        else:
            self._transport.write(request)
        return answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one without subclassing it

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"not an HTTP/1.1 answer: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._head_done and "content-length" not in self._headers and "transfer-encoding" not in self._headers:
            self.keep_alive = False  # a body that ends with the connection
            self.on_message_complete()
        self._fail(f"the server closed the connection{f': {exc}' if exc else ''}")

    # httptools
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer, self._head_done = self._answer, None, False
        self.keep_alive = self.keep_alive and not self.lost and self._parser.should_keep_alive()
        if answer is not None and not answer.done():
            answer.set_result(RawResponse(self._parser.get_status_code(), self._headers, b"".join(self._body)))

    def _fail(self, message: str) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(RemoteProtocolError(message))

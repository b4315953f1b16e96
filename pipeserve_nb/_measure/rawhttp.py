"""A minimal HTTP/1.1 client for load generation: POST with a body, keep-alive connections.

A load generator on a small machine must cost the server as little CPU as possible, and
must not slow down as outstanding requests pile up. A general client (httpx) spends a few
hundred microseconds of CPU per request and its pool scans every waiting request whenever
a connection frees up, so an open loop against an overloaded server grows quadratically
expensive. This client does one thing: send ``POST`` requests over asyncio streams, reuse
idle connections, and open a new one whenever none is idle (so an open loop is never held
back by a pool limit). It reads ``Content-Length`` and chunked bodies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

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


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


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
        self._all: set[asyncio.StreamWriter] = set()

    async def post(self, body: bytes, content_type: str) -> RawResponse:
        """Send one request; raise ``ConnectError``, ``ReadTimeout`` or ``RemoteProtocolError``."""
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._authority}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        reused = bool(self._idle)
        reader, writer = self._idle.pop() if reused else await self._open()
        try:
            writer.write(head + body)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands as
            # the answer arrives, and a stopped load then ran on to its end (seen on a busy machine)
            async with asyncio.timeout(self._timeout_s):
                response = await _read_response(reader)
        except TimeoutError:
            self._discard(writer)
            raise ReadTimeout(f"no answer within {self._timeout_s:g} s") from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._discard(writer)
            if reused:  # the server may have closed an idle connection: retry once on a new one
                return await self.post(body, content_type)
            raise RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._discard(writer)
            raise
        if response.headers.get("connection", "").lower() == "close":
            self._discard(writer)
        else:
            self._idle.append((reader, writer))
        return response

    async def aclose(self) -> None:
        """Close every connection."""
        for writer in list(self._all):
            self._discard(writer)
        self._idle.clear()

    async def _open(self) -> _Connection:
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError:
            raise ConnectError(f"connecting to {self._authority} timed out") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self._authority}: {exc.strerror or exc}") from exc
        self._all.add(writer)
        return reader, writer

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._all.discard(writer)
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
        headers["connection"] = "close"
    return RawResponse(int(status), headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)

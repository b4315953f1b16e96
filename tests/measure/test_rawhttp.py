"""The load generator's HTTP/1.1 client against scripted servers: every way an answer can arrive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeserve_nb._measure.rawhttp import ConnectError, RawClient, ReadTimeout, RemoteProtocolError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers one request on a connection (its number given); returns whether to keep the connection."""


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


async def scripted(handler: Handler, scenario: Callable[[str], Awaitable[Any]]) -> tuple[Any, list[int]]:
    """Run ``scenario(url)`` against a server that answers with ``handler``; also return how
    many requests each connection carried."""
    per_connection: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        per_connection.append(0)
        me = len(per_connection) - 1
        try:
            while True:
                per_connection[me] += 1
                if not await handler(reader, writer, per_connection[me]):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await scenario(f"http://127.0.0.1:{port}/"), per_connection
    finally:
        server.close()


def test_content_length_bodies_on_one_keep_alive_connection() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        body = await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Batch-Size: 3\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return True

    async def scenario(url: str) -> list[Any]:
        client = RawClient(url, timeout_s=5)
        answers = [await client.post(f"hello {i}".encode(), "text/plain") for i in range(3)]
        await client.aclose()
        return answers

    answers, connections = asyncio.run(scripted(echo, scenario))
    assert [(a.status, a.body) for a in answers] == [(200, f"hello {i}".encode()) for i in range(3)]
    assert answers[0].headers["x-batch-size"] == "3"  # header names are read in lower case
    assert connections == [4]  # three answered, then the client closed it (the fourth read found the end)


def test_a_chunked_body_is_put_back_together() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"a": ', b"[1, 2, 3]", b"}"):
            writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async def scenario(url: str) -> list[bytes]:
        client = RawClient(url, timeout_s=5)
        bodies = [(await client.post(b"x", "text/plain")).body for _ in range(2)]  # the connection stays usable
        await client.aclose()
        return bodies

    bodies, connections = asyncio.run(scripted(chunked, scenario))
    assert bodies == [b'{"a": [1, 2, 3]}'] * 2 and len(connections) == 1


def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one() -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # says keep-alive, then closes
        await writer.drain()
        return False

    async def scenario(url: str) -> list[int]:
        client = RawClient(url, timeout_s=5)
        first = await client.post(b"1", "text/plain")
        second = await client.post(b"2", "text/plain")  # on the idle connection the server has closed
        await client.aclose()
        return [first.status, second.status]

    statuses, connections = asyncio.run(scripted(one_per_connection, scenario))
    assert statuses == [200, 200] and connections == [1, 1]


def test_connection_close_and_a_body_read_to_the_end() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy, no length")
        await writer.drain()
        return False

    async def scenario(url: str) -> list[Any]:
        client = RawClient(url, timeout_s=5)
        answers = [await client.post(b"x", "text/plain") for _ in range(2)]
        await client.aclose()
        return answers

    answers, connections = asyncio.run(scripted(until_close, scenario))
    assert [(a.status, a.body) for a in answers] == [(503, b"busy, no length")] * 2
    assert connections == [1, 1]  # a closed connection is never reused


def test_no_answer_in_time_is_a_read_timeout_and_garbage_a_protocol_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await read_request(reader)
        await asyncio.sleep(10)
        return False

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await read_request(reader)
        writer.write(b"SPDY/3 200 OK\r\n\r\n")
        await writer.drain()
        return False

    async def post(url: str, timeout_s: float) -> None:
        client = RawClient(url, timeout_s=timeout_s)
        try:
            await client.post(b"x", "text/plain")
        finally:
            await client.aclose()

    with pytest.raises(ReadTimeout):
        asyncio.run(scripted(silent, lambda url: post(url, 0.2)))
    with pytest.raises(RemoteProtocolError, match=r"not an HTTP/1\.1 answer"):
        asyncio.run(scripted(garbage, lambda url: post(url, 5)))


def test_nobody_listening_is_a_connect_error_and_only_http_urls_are_taken() -> None:
    async def closed_port() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = RawClient(f"http://127.0.0.1:{port}/", timeout_s=5)
        await client.post(b"x", "text/plain")

    with pytest.raises(ConnectError, match="cannot connect"):
        asyncio.run(closed_port())
    with pytest.raises(ValueError, match="only http://host:port URLs"):
        RawClient("https://example.org/", timeout_s=1)

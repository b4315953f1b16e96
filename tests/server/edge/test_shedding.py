"""The cheap path under overload, on a real socket: a full server refuses ``POST /`` before its
body is read (but after the token check), and every response leaves the server in one write."""

from __future__ import annotations

import socket
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeserve_nb import BatchPolicy, LoadedModel, ServerConfig, serve

from ...helpers import GatedModel, wait_for

TOKEN = "shedding-test-token-0123456789"


def test_a_full_server_refuses_before_reading_the_body_and_after_the_token(gated: GatedModel) -> None:
    config = ServerConfig(max_queue=1, max_queue_wait_s=None, auth_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(gated, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, server.url, content=b"in the model", headers=auth, timeout=30)
        assert gated.entered.wait(10)
        waiting = pool.submit(httpx.post, server.url, content=b"waits", headers=auth, timeout=30)
        wait_for(lambda: server.stats()["queue_depth"] == 1)

        assert httpx.post(server.url, content=b"no token", timeout=10).status_code == 401
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            # a body of 50 MB is announced and never sent: the answer cannot have waited for it
            head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 50000000\r\n\r\n"
            sock.sendall(head.encode())
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"\r\nretry-after: " in answer and b'"type":"Overloaded"' in answer.replace(b" ", b"")

        gated.gate.set()
        assert running.result(10).status_code == 200 and waiting.result(10).status_code == 200
        assert gated.seen == ["in the model", "waits"]
        assert server.stats()["requests_by_status"] == {"200": 2, "401": 1, "503": 1}


def _data_segments_in(sock: socket.socket) -> int:
    """``tcpi_data_segs_in`` of Linux's ``struct tcp_info``: segments with data this socket received."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return int(struct.unpack_from("I", info, 152)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="counts segments with Linux's TCP_INFO")
def test_each_response_leaves_in_one_write(embedder: LoadedModel) -> None:
    """Head and body in one TCP segment (uvicorn alone writes them apart: two segments, two
    wake-ups of the client), counted by the client's kernel."""
    requests = [
        b'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"inputs": "a"}',
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with (
        serve(embedder, name="one-write-test") as server,
        socket.create_connection((server.host, server.port), timeout=30) as sock,
    ):
        for _ in range(10):
            for data in requests:
                before = _data_segments_in(sock)
                sock.sendall(data)
                answer = b""
                while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
                    answer += sock.recv(1 << 20)
                assert _data_segments_in(sock) - before == 1, (data.split(b" ", 2)[:2], answer[:200])


def _length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0]
    return next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )

"""Faults through a real socket: a dying worker, a model that always fails, clients that
go away, oversized bodies, and a notebook user re-running start/stop cells."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from pipeserve_nb import BatchPolicy, LoadedModel, ServerConfig, serve

from ...helpers import ROOT, GatedModel, pipeserve_threads, wait_for


class Fatal(GatedModel):
    """The gated embedder, but an input containing "die" raises ``SystemExit`` in the worker."""

    def __call__(self, inputs: list[str], **parameters: Any) -> list[Any]:
        outputs = super().__call__(inputs, **parameters)
        if any("die" in text for text in inputs):
            raise SystemExit("the model called sys.exit")
        return outputs


def always_fails(inputs: list[str]) -> list[Any]:
    raise RuntimeError("this model cannot run anything")


def test_a_dying_worker_turns_health_503_and_answers_queued_and_new_requests_503(embedder: LoadedModel) -> None:
    model = Fatal(embedder)
    server = serve(model, policy=BatchPolicy(max_batch_size=1))
    with ThreadPoolExecutor(4) as pool:
        dying = pool.submit(httpx.post, server.url, content=b"please die", timeout=30)
        assert model.entered.wait(10)
        queued = [pool.submit(httpx.post, server.url, content=f"q{i}".encode(), timeout=30) for i in range(2)]
        wait_for(lambda: server.stats()["queue_depth"] == 2)
        model.gate.set()
        answers = [dying.result(10), *(q.result(10) for q in queued)]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {a.json()["error"]["type"] for a in answers} == {"WorkerDied"}
    assert "SystemExit" in answers[0].json()["error"]["message"]
    assert model.seen == ["please die"]  # the queued requests never reached the model

    health = httpx.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "failed"
    assert health.json()["error"] == answers[0].json()["error"]  # the error its requests get
    late = httpx.post(server.url, content=b"after", timeout=5)
    assert late.status_code == 503 and "not restarted" in late.json()["error"]["message"]
    assert isinstance(server.failure, SystemExit) and "failure" in repr(server)
    assert sorted(t.name for t in pipeserve_threads()) == ["pipeserve-prepare", "pipeserve-server-default"]  # no worker
    server.stop()


def test_a_model_that_fails_every_input_answers_each_500_and_keeps_serving() -> None:
    server = serve(always_fails)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: httpx.post(server.url, content=f"t{i}".encode(), timeout=30), range(16)))
    assert [a.status_code for a in answers] == [500] * 16
    assert {a.json()["error"]["message"] for a in answers} == {
        "the model raised RuntimeError for this request's inputs"
    }
    assert server.health()["status"] == "ok"
    assert server.stats()["requests_by_status"] == {"500": 16}
    server.stop()


def test_a_client_that_disconnects_while_queued_is_dropped_before_inference(gated: GatedModel) -> None:
    server = serve(gated, policy=BatchPolicy(max_batch_size=1))
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, server.url, content=b"held in the model", timeout=30)
        assert gated.entered.wait(10)
        with socket.create_connection((server.host, server.port)) as gone:
            gone.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nwill go away")
            wait_for(lambda: server.stats()["queue_depth"] == 1)
        wait_for(lambda: server.stats()["dropped_before_inference"]["client_gone"] == 1)
        assert server.stats()["queue_depth"] == 0  # dropped from the queue at once, not when its turn came
        gated.gate.set()
        assert running.result(10).status_code == 200
    assert server.query("next") and gated.seen == ["held in the model", "next"]
    stats = server.stats()
    assert stats["dropped_before_inference"] == {"expired": 0, "client_gone": 1, "stopping": 0, "worker_died": 0}
    assert stats["queue_depth"] == 0
    assert stats["requests_by_status"] == {"200": 2, "499": 1}
    server.stop()


def test_an_oversized_body_is_refused_before_it_is_sent() -> None:
    server = serve(config=ServerConfig(max_body_bytes=1000))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\nonly a few bytes")
        answer = b""
        while b'"}}' not in answer:  # the whole JSON error; the other 50 MB are never sent
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"TooLarge"' in answer
    assert server.query("still serving")
    server.stop()


@pytest.mark.gate  # thirty model loads
def test_thirty_start_stop_cycles_leak_no_thread_socket_or_model() -> None:
    # in a fresh process: a pytest worker's memory holds what every test before this one left, and
    # its heap's fragmentation once grew by 111 MB over these cycles with no copy of the model alive
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "tests.server.run.cycles", "30"]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:].decode(errors="replace")
    kept = orjson.loads(done.stdout)
    assert kept["servers_left"] == 0 and kept["threads_left"] == []
    threads, fds, rss_mb = kept["threads"], kept["fds"], kept["rss_mb"]
    # after the first cycle (PyTorch and the tokenizer start their own pools once), no growth
    assert max(threads[1:]) <= threads[0], threads
    assert max(fds[1:]) <= fds[0], fds
    assert kept["copies_after"] == kept["copies_before"]  # no model copy outlives its server
    # a copy of the weights kept per cycle would add 20 copies over cycles 10 to 30; the heap's own
    # fragmentation (what malloc_trim cannot hand back) stays far below two
    model_mb = kept["model_mb"]
    assert model_mb is not None and model_mb > 10
    grown = rss_mb[-1] - rss_mb[9]
    assert grown < 2 * model_mb, f"grew {grown:.0f} MB ({rss_mb[9]:.0f} to {rss_mb[-1]:.0f}); a copy: {model_mb:.0f} MB"


def test_stop_with_a_full_queue_answers_every_request_within_the_drain_time(gated: GatedModel) -> None:
    server = serve(gated, policy=BatchPolicy(max_batch_size=1))
    with ThreadPoolExecutor(24) as pool:
        running = pool.submit(httpx.post, server.url, content=b"held", timeout=30)
        assert gated.entered.wait(10)
        queued = [pool.submit(httpx.post, server.url, content=f"q{i}".encode(), timeout=30) for i in range(20)]
        wait_for(lambda: server.stats()["queue_depth"] == 20)
        stopping = pool.submit(server.stop, timeout_s=1.0)
        wait_for(lambda: httpx.get(f"{server.url}/health").json()["status"] == "draining")
        gated.gate.set()  # the held request finishes during the drain; the queue gets what is left of it
        stopping.result(30)
        answers = [f.result(10) for f in [running, *queued]]
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200 and set(statuses) <= {200, 503}
    assert len(statuses) == 21  # every request got exactly one answer
    assert {a.json()["error"]["type"] for a in answers if a.status_code == 503} <= {"ServerStopping"}

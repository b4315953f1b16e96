"""Preparation off the event loop, and the room a request holds from its first byte to its queueing.

A runner whose ``prepare`` waits at a gate decides when a request's texts are ready, so each test
says exactly which requests are being prepared; the engine runs on an event loop of the test's own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from pipeserve_nb import BatchPolicy, Overloaded, Prepared, RequestTimeout, Runner, ServerConfig, TooLarge, serve
from pipeserve_nb._models.spec import ModelSpec
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.edge.app import create_app


class SlowPrepare(Runner):
    """Echoes texts; ``prepare`` waits for ``gate`` and records the thread it ran on; 3 tokens a text."""

    max_tokens = 5

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.prepared_on: list[str] = []
        self.ran: list[list[str]] = []

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        self.entered.set()
        self.prepared_on.append(threading.current_thread().name)
        assert self.gate.wait(30), "the test never opened the gate"
        return Prepared(list(texts), [3 * len(t.split()) for t in texts])

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.ran.append(list(inputs))
        return list(inputs)


WAITS = BatchPolicy(max_wait_s=0.001)
"""A policy that waits for company: every request goes through the preparation thread (no fast lane)."""


def run(
    runner: Runner, scenario: Callable[[Engine], Awaitable[Any]], policy: BatchPolicy = WAITS, **config: Any
) -> Any:
    async def main() -> Any:
        engine = Engine(ModelSpec(model=runner), policy, ServerConfig(**config))
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            if isinstance(runner, SlowPrepare):
                runner.gate.set()
            await engine.close()

    return asyncio.run(main())


def test_texts_are_prepared_on_the_preparation_thread_and_counted_while_they_are() -> None:
    runner = SlowPrepare()

    async def scenario(engine: Engine) -> tuple[int, int, Any]:
        futures = [engine.submit([f"text{i}"], {}) for i in range(3)]
        assert await asyncio.to_thread(runner.entered.wait, 10)
        depth_while_preparing = engine.queue_depth()
        with pytest.raises(Overloaded):  # the room of requests being prepared is taken
            engine.submit(["extra"], {})
        runner.gate.set()
        results = await asyncio.gather(*futures)
        return depth_while_preparing, engine.queue_depth(), [r.outputs for r in results]

    depth, after, outputs = run(runner, scenario, max_queue=3, max_queue_wait_s=None)
    assert depth == 3 and after == 0
    assert outputs == [["text0"], ["text1"], ["text2"]]
    assert set(runner.prepared_on) == {"pipeserve-prepare"}


def test_a_request_that_expires_while_prepared_is_answered_504_and_never_runs() -> None:
    runner = SlowPrepare()

    async def scenario(engine: Engine) -> tuple[BaseException | None, dict[str, Any]]:
        future = engine.submit(["late"], {})
        error = None
        try:
            await future
        except RequestTimeout as exc:
            error = exc
        runner.gate.set()
        await asyncio.sleep(0.05)  # a delivery of the skipped request would land now: there is none
        return error, engine.stats.snapshot()

    error, stats = run(runner, scenario, timeout_s=0.2)
    assert isinstance(error, RequestTimeout) and "never reached the model" in str(error)
    assert stats["dropped_before_inference"]["expired"] == 1 and runner.ran == []


def test_an_input_over_the_limit_found_while_preparing_is_413_and_not_a_drop() -> None:
    runner = SlowPrepare()
    runner.gate.set()

    async def scenario(engine: Engine) -> tuple[BaseException | None, dict[str, Any], int]:
        try:
            await engine.submit(["one two"], {})  # 6 tokens, over 5
        except TooLarge as exc:
            return exc, engine.stats.snapshot(), engine.queue_depth()
        return None, {}, -1

    error, stats, depth = run(runner, scenario)
    assert str(error).startswith("the input has 6 tokens; this model takes at most 5: shorten it")
    assert sum(stats["dropped_before_inference"].values()) == 0 and depth == 0 and runner.ran == []


def test_a_lone_request_at_an_idle_server_is_prepared_at_the_start_of_its_own_call() -> None:
    """The fast lane: one input, nothing else waiting, no call running, a policy that starts at once."""
    runner = SlowPrepare()

    async def scenario(engine: Engine) -> tuple[list[str], list[list[str]], Any, Any]:
        lone = engine.submit(["alone"], {})  # the fast lane: queued unprepared, prepared by the inference thread
        assert await asyncio.to_thread(runner.entered.wait, 10)
        queued = engine.submit(["next"], {})  # a call is running: the preparation thread prepares it
        runner.gate.set()
        return runner.prepared_on, runner.ran, await lone, await queued

    prepared_on, ran, lone, queued = run(runner, scenario, BatchPolicy())
    assert prepared_on == ["pipeserve-inference", "pipeserve-prepare"]
    assert ran == [["alone"], ["next"]] and lone.outputs == ["alone"] and queued.outputs == ["next"]


def test_a_fast_lane_request_over_the_limit_is_refused_and_runs_no_call() -> None:
    runner = SlowPrepare()
    runner.gate.set()

    async def scenario(engine: Engine) -> tuple[BaseException | None, int]:
        try:
            await engine.submit(["one two"], {})  # 6 tokens, over 5: found at the start of its call
        except TooLarge as exc:
            assert engine.batches is not None
            return exc, engine.stats.batches
        return None, -1

    error, batches = run(runner, scenario, BatchPolicy())
    assert isinstance(error, TooLarge) and batches == 0 and runner.ran == []


def test_each_request_gets_one_room_check() -> None:
    def echo(inputs: list[str]) -> list[str]:
        return inputs

    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig())
    with TestClient(create_app(engine)) as client:
        admission = engine._admission
        assert admission is not None
        checks = 0
        room = admission.room

        def counted() -> Any:
            nonlocal checks
            checks += 1
            return room()

        admission.room = counted  # type: ignore[method-assign]
        for i in range(5):
            assert client.post("/", content=f"text {i}".encode()).status_code == 200
        assert client.post("/", json={"inputs": "a", "parameters": {"nope": 1}}).status_code == 400
    assert checks == 6 and engine.queue_depth() == 0


def test_a_body_being_read_holds_its_room_until_it_is_queued_or_refused() -> None:
    def echo(inputs: list[str]) -> list[str]:
        return inputs

    with serve(echo, config=ServerConfig(max_queue=1, max_queue_wait_s=None), name="room") as server:
        with socket.create_connection((server.host, server.port), timeout=10) as slow:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello")
            waiting = httpx.get(f"{server.url}/health", trust_env=False, timeout=10).json()["queue_depth"]
            refused = httpx.post(server.url, content=b"no room", trust_env=False, timeout=10)
            slow.sendall(b"world")
            answer = slow.recv(65536)
        after = httpx.post(server.url, content=b"room again", trust_env=False, timeout=10)
    assert waiting == 1  # the first request's room, held while its body is read
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "Overloaded"
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'"helloworld"')
    assert after.status_code == 200

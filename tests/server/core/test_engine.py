"""The engine and its batch loop, on an event loop of the test's own, with no HTTP in between.

A gated model (a plain callable held at a ``threading.Event``) decides when a batch returns,
so each test says exactly which requests are waiting and which are in the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeserve_nb import (
    BatchPolicy,
    InferenceFailed,
    Overloaded,
    RequestTimeout,
    ServerConfig,
    ServerStopping,
    WorkerDied,
)
from pipeserve_nb._models.spec import ModelSpec
from pipeserve_nb._server.core.engine import Engine, EngineState


class Held:
    """Upper-cases texts; blocks each call until ``gate`` opens; dies on "die", fails on "bad"."""

    def __init__(self, open_: bool = False) -> None:
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, inputs: list[str]) -> list[str]:
        self.calls.append(list(inputs))
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        if "die" in inputs:
            raise SystemExit("the model called sys.exit")
        if "bad" in inputs:
            raise ValueError("cannot take 'bad'")
        return [x.upper() for x in inputs]


def run(
    model: Held, scenario: Callable[[Engine], Awaitable[Any]], policy: BatchPolicy | None = None, **config: Any
) -> Any:
    async def main() -> Any:
        engine = Engine(ModelSpec(model=model), policy or BatchPolicy(max_batch_size=1), ServerConfig(**config))
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            model.gate.set()
            await engine.close()

    return asyncio.run(main())


async def entered(model: Held) -> None:
    assert await asyncio.to_thread(model.entered.wait, 10)


def test_every_request_is_answered_once_in_batches_of_what_waited() -> None:
    model = Held()

    async def scenario(engine: Engine) -> list[Any]:
        first = engine.submit(["first"], {})
        await entered(model)
        rest = [engine.submit([f"r{i}"], {}) for i in range(5)]
        assert engine.queue_depth() == 5
        model.gate.set()
        return [r.outputs for r in await asyncio.gather(first, *rest)]

    outputs = run(model, scenario, BatchPolicy(max_batch_size=8))
    assert outputs == [["FIRST"]] + [[f"R{i}"] for i in range(5)]
    assert model.calls == [["first"], [f"r{i}" for i in range(5)]]  # the five waited together


def test_a_request_larger_than_the_cap_runs_in_slices_and_gets_its_outputs_in_order() -> None:
    model = Held(open_=True)

    async def scenario(engine: Engine) -> Any:
        result = await engine.submit([f"t{i}" for i in range(10)], {})
        return result, engine.stats.snapshot()

    result, stats = run(model, scenario, BatchPolicy(max_batch_size=4))
    assert result.outputs == [f"T{i}" for i in range(10)]
    assert [len(c) for c in model.calls] == [4, 4, 2] and result.batch_size == 4
    assert stats["batch_size_histogram"] == {"2": 1, "4": 2}
    assert stats["queue_wait_ms"]["count"] == 1  # one request, one wait: until its first slice ran


def test_a_failing_input_fails_its_request_only() -> None:
    model = Held()

    async def scenario(engine: Engine) -> list[Any]:
        hold = engine.submit(["hold"], {})
        await entered(model)
        futures = [engine.submit([text], {}) for text in ("fine", "bad", "also fine")]
        model.gate.set()
        await hold
        return await asyncio.gather(*futures, return_exceptions=True)

    fine, bad, also = run(model, scenario, BatchPolicy(max_batch_size=8))
    assert fine.outputs == ["FINE"] and also.outputs == ["ALSO FINE"]
    assert isinstance(bad, InferenceFailed) and isinstance(bad.__cause__, ValueError)


def test_a_full_queue_refuses_at_once_with_a_retry_after() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[float, int]:
        engine.submit(["running"], {})
        await entered(model)
        for i in range(3):
            engine.submit([f"q{i}"], {})
        with pytest.raises(Overloaded) as info:
            engine.submit(["one too many"], {})
        return info.value.retry_after_s, engine.queue_depth()

    retry_after_s, depth = run(model, scenario, max_queue=3)
    assert retry_after_s >= 1 and depth == 3
    assert ["one too many"] not in model.calls


def test_a_request_that_expires_while_waiting_is_counted_and_never_runs() -> None:
    model = Held()

    async def scenario(engine: Engine) -> dict[str, Any]:
        engine.submit(["running"], {})
        await entered(model)
        late = engine.submit(["expires"], {})
        with pytest.raises(RequestTimeout, match="never reached the model"):
            await late
        model.gate.set()
        await engine.submit(["after"], {})
        return engine.stats.snapshot()

    stats = run(model, scenario, timeout_s=0.2)
    assert ["expires"] not in model.calls
    assert stats["dropped_before_inference"]["expired"] == 1


def test_a_cancelled_request_is_dropped_and_counted_as_its_client_gone() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[dict[str, Any], int]:
        engine.submit(["running"], {})
        await entered(model)
        engine.submit(["gone"], {}).cancel()
        await asyncio.sleep(0)  # the cancellation's callback runs on the next loop iteration
        depth = engine.queue_depth()
        model.gate.set()
        await engine.submit(["next"], {})
        return engine.stats.snapshot(), depth

    stats, depth = run(model, scenario)
    assert depth == 0 and ["gone"] not in model.calls
    assert stats["dropped_before_inference"] == {"expired": 0, "client_gone": 1, "stopping": 0, "worker_died": 0}


def test_drain_answers_what_is_left_with_server_stopping() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
        running = engine.submit(["running"], {})
        await entered(model)
        queued = [engine.submit([f"q{i}"], {}) for i in range(3)]
        await engine.drain(0.05)  # the model never returns in time
        assert engine.state is EngineState.DRAINING
        with pytest.raises(ServerStopping):
            engine.submit(["late"], {})
        answers = await asyncio.gather(running, *queued, return_exceptions=True)
        return answers, engine.stats.snapshot()

    answers, stats = run(model, scenario)
    assert all(isinstance(a, ServerStopping) for a in answers)
    assert stats["dropped_before_inference"]["stopping"] == 3  # the one in the model had started


def test_a_dying_worker_answers_the_running_and_waiting_requests_and_fails_the_engine() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[list[Any], Engine]:
        dying = engine.submit(["die"], {})
        await entered(model)
        queued = [engine.submit([f"q{i}"], {}) for i in range(2)]
        model.gate.set()
        answers = await asyncio.gather(dying, *queued, return_exceptions=True)
        with pytest.raises(WorkerDied, match="not restarted"):
            engine.submit(["after"], {})
        return answers, engine

    answers, engine = run(model, scenario)
    assert all(isinstance(a, WorkerDied) for a in answers)
    assert "SystemExit" in str(answers[0]) and isinstance(engine.failure, SystemExit)
    assert engine.state is EngineState.FAILED and not engine.serving()
    assert model.calls == [["die"]]  # the queued requests never reached the model

"""The batch loop: each request's wait recorded once, when its first slice reaches the model; every call an
observation of the call cost; every running request answered when the loop ends abnormally."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from pipeserve_nb import BatchPolicy, ServerStopping
from pipeserve_nb._models.runner import Runner
from pipeserve_nb._server.core.batch_loop import BatchLoop
from pipeserve_nb._server.core.batch_queue import BatchQueue
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.core.inference import InferenceThread
from pipeserve_nb._server.core.request import Request
from pipeserve_nb._server.observe.stats import Stats, clock

from .test_engine import Held, run


class Echo(Runner):
    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.calls.append(list(inputs))
        return list(inputs)


def _request(loop: asyncio.AbstractEventLoop, inputs: list[str]) -> Request:
    now = clock()
    request = Request(inputs, {}, loop.create_future(), now, now + 60)
    request.prepared(list(inputs), 1, "{}")
    return request


def test_a_request_in_slices_records_its_wait_once_and_is_answered_after_its_last_slice() -> None:
    async def scenario() -> tuple[Any, Stats, list[list[Any]]]:
        loop = asyncio.get_running_loop()
        queue = BatchQueue(BatchPolicy(max_batch_size=2))
        stats, runner, worker = Stats(), Echo(), InferenceThread(name="pipeserve-test-inference")
        batches = BatchLoop(queue, runner, worker, stats)
        task = asyncio.create_task(batches.run())
        big = _request(loop, ["a", "b", "c", "d", "e"])
        queue.put(big)
        try:
            result = await asyncio.wait_for(big.future, 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            worker.close(5)
        return result, stats, runner.calls

    result, stats, calls = asyncio.run(scenario())
    assert calls == [["a", "b"], ["c", "d"], ["e"]] and result.outputs == ["a", "b", "c", "d", "e"]
    assert result.batch_size == 2 and stats.batches == 3
    assert len(stats.queue_wait_s) == 1  # its wait: once, when its first slice reached the model
    assert stats.batch_sizes == {2: 2, 1: 1}


def test_a_cancelled_loop_answers_the_running_batch_with_server_stopping() -> None:
    async def scenario() -> BaseException | None:
        loop = asyncio.get_running_loop()
        queue = BatchQueue(BatchPolicy())
        held = Held()

        class Gated(Runner):
            def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
                return held(inputs)

        worker = InferenceThread(name="pipeserve-test-inference")
        batches = BatchLoop(queue, Gated(), worker, Stats())
        task = asyncio.create_task(batches.run())
        request = _request(loop, ["held"])
        queue.put(request)
        await asyncio.to_thread(held.entered.wait, 10)
        assert batches.running is not None and batches.running_for_s() is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        held.gate.set()
        worker.close(5)
        return request.future.exception()

    assert isinstance(asyncio.run(scenario()), ServerStopping)


def test_the_batch_loop_fits_the_cost_from_the_calls_it_ran_and_forecasts_no_wait_when_idle() -> None:
    model = Held(open_=True)

    async def scenario(engine: Engine) -> tuple[int, object]:
        for i in range(3):
            await engine.submit([f"t{i}"], {})
        batches = engine.batches
        assert batches is not None
        return batches.cost.calls, batches.start_wait_s()

    calls, idle_wait = run(model, scenario)
    assert calls == 2 and idle_wait is None  # the first call is not observed; two are too few
    model2 = Held(open_=True)

    async def more(engine: Engine) -> float | None:
        for i in range(4):
            await engine.submit([f"t{i}"], {})
        assert engine.batches is not None
        forecast = engine.batches.start_wait_s()
        return forecast.wait_s if forecast is not None else None

    assert run(model2, more) == 0.0  # fitted now; an idle server predicts no wait


@pytest.mark.parametrize("size", [1, 3])
def test_every_slice_of_a_batch_is_answered_with_its_own_outputs(size: int) -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        queue = BatchQueue(BatchPolicy(max_batch_size=8))
        worker = InferenceThread(name="pipeserve-test-inference")
        batches = BatchLoop(queue, Echo(), worker, Stats())
        requests = [_request(loop, [f"r{i}-{j}" for j in range(size)]) for i in range(3)]
        for request in requests:
            queue.put(request)
        task = asyncio.create_task(batches.run())
        try:
            return [r.outputs for r in await asyncio.gather(*(r.future for r in requests))]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            worker.close(5)

    assert asyncio.run(scenario()) == [[f"r{i}-{j}" for j in range(size)] for i in range(3)]

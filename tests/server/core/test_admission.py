"""Admission by count and by time: the forecast of the waiting calls, and the engine refusing what would
wait too long, on a gated model (no timing-size assertions). The call cost itself: ``test_cost``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from pipeserve_nb import BatchPolicy, Overloaded
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.core.formation import plan_calls
from pipeserve_nb._server.edge.errors import retry_after

from .test_engine import Held, entered, run


@dataclass
class Waiting:
    size: int
    tokens: int


def test_the_plan_packs_sorted_requests_into_capped_calls() -> None:
    waiting = [Waiting(1, 30), Waiting(1, 5), Waiting(1, 10), Waiting(1, 40)]
    assert plan_calls(waiting, cap=2, max_tokens=None, by_length=True) == [(2, 20), (2, 80)]
    assert plan_calls(waiting, cap=2, max_tokens=None, by_length=False) == [(2, 60), (2, 80)]
    assert plan_calls(waiting, cap=None, max_tokens=50, by_length=True) == [(2, 20), (1, 30), (1, 40)]
    assert plan_calls([Waiting(5, 10)], cap=2, max_tokens=None, by_length=True) == [(2, 20), (2, 20), (1, 10)]


def test_max_queue_counts_the_pool_of_the_next_batch_too() -> None:
    model = Held()

    async def scenario(engine: Engine) -> int:
        engine.submit(["running"], {})
        await entered(model)
        for i in range(3):  # with a cap of 8 these sit in the pool the next batch forms from
            engine.submit([f"q{i}"], {})
        with pytest.raises(Overloaded):
            engine.submit(["one too many"], {})
        return engine.queue_depth()

    assert run(model, scenario, BatchPolicy(max_batch_size=8), max_queue=3, max_queue_wait_s=None) == 3


def _ten_second_calls(engine: Engine, factor: float = 1.0) -> None:
    """Teach the engine that every call takes 10 s, whatever its size (no real call has run), and
    that real waits run ``factor`` times their forecast."""
    batches = engine.batches
    assert batches is not None
    for tokens in (10, 10, 20, 40):  # the first is skipped as a warm-up
        batches.cost.observe(tokens, 10.0)
    batches.calibration.factor = factor


def test_a_request_predicted_to_wait_too_long_to_start_is_refused_with_that_wait() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[int, Any, dict[str, Any]]:
        _ten_second_calls(engine)
        engine.submit(["running"], {})  # predicted 10 s; its rest shrinks only by the test's own seconds
        await entered(model)
        accepted = 0
        while True:
            try:
                engine.submit([f"q{accepted}"], {})  # each waiting one adds one 10 s call
            except Overloaded as refusal:
                return accepted, refusal, engine.stats.snapshot()
            accepted += 1
            assert accepted < 10, "admission by time never refused"

    # Predicted start waits: 10 s (behind the running call), 20 s, 30 s, then 40 s > 35 s.
    accepted, refusal, _ = run(model, scenario, max_queue=100, max_queue_wait_s=35.0)
    assert accepted == 3
    assert "would wait about" in str(refusal) and "max_queue_wait_s=35" in str(refusal)
    assert 35 < refusal.retry_after_s <= 40  # the forecast wait, as it is: the edge rounds it once
    assert retry_after(refusal) == str(math.ceil(refusal.retry_after_s))
    assert all(call != ["q3"] for call in model.calls)


def test_the_forecast_is_scaled_by_how_far_real_waits_ran_past_it() -> None:
    model = Held()

    async def scenario(engine: Engine) -> tuple[int, float]:
        _ten_second_calls(engine, factor=2.0)
        engine.submit(["running"], {})
        await entered(model)
        accepted = 0
        while True:
            try:
                engine.submit([f"q{accepted}"], {})
            except Overloaded as refusal:
                return accepted, refusal.retry_after_s
            accepted += 1

    # Calibrated: 2 x (10 s, 20 s, 30 s): 20 s, 40 s, 60 s. The second is over 35 s but what waits
    # (one request) fits in the next call, so it is not refused; the third is.
    accepted, retry_after_s = run(model, scenario, max_queue=100, max_queue_wait_s=35.0)
    assert accepted == 2 and 55 < retry_after_s <= 60


def test_without_a_fitted_cost_only_the_count_applies() -> None:
    model = Held()

    async def scenario(engine: Engine) -> int:
        engine.submit(["running"], {})
        await entered(model)
        for i in range(5):
            engine.submit([f"q{i}"], {})  # no call has finished: nothing to predict from
        return engine.queue_depth()

    assert run(model, scenario, max_queue=5, max_queue_wait_s=0.001) == 5

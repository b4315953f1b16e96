"""Admission by count and by time: the call-cost fit, the forecast of the waiting calls, and the
engine refusing what would wait too long, on a gated model (no timing-size assertions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from pipeserve_nb import BatchPolicy, Overloaded
from pipeserve_nb._server.core.cost import CallCost, Forecast, WaitCalibration, backlog_s
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.core.formation import plan_calls
from pipeserve_nb._server.edge.errors import retry_after

from .test_engine import Held, entered, run


def test_the_fit_recovers_a_line_and_forgets_old_calls() -> None:
    cost = CallCost(decay=1.0, skip_first=0)
    for tokens in (50, 100, 200, 400, 800):
        cost.observe(tokens, 0.004 + 0.0001 * tokens)
    assert cost.fixed_s == pytest.approx(0.004) and cost.per_token_s == pytest.approx(0.0001)
    forgetful = CallCost(decay=0.5, skip_first=0)
    for tokens in (50, 100, 200, 400) * 5:  # the machine was slow...
        forgetful.observe(tokens, 0.1 + 0.001 * tokens)
    for tokens in (50, 100, 200, 400) * 10:  # ...then fast: the fit follows
        forgetful.observe(tokens, 0.01 + 0.0001 * tokens)
    assert forgetful.predict(300) == pytest.approx(0.04, rel=1e-3)


def test_the_fit_never_goes_negative_and_needs_no_spread() -> None:
    same = CallCost(skip_first=0)
    for _ in range(5):
        same.observe(100, 0.02)  # one size only: nothing tells fixed from per-token cost: a constant
    assert same.per_token_s == 0.0 and same.predict(100) == same.predict(800) == pytest.approx(0.02)
    backwards = CallCost(decay=1.0, skip_first=0)
    for tokens, seconds in ((100, 0.05), (200, 0.04), (400, 0.03)):  # bigger was faster: noise
        backwards.observe(tokens, seconds)
    assert backwards.per_token_s == 0.0 and backwards.fixed_s == pytest.approx(0.04)
    assert CallCost().predict(10) is None and backlog_s(CallCost(), [(1, 10)]) is None


def test_the_first_call_and_outliers_do_not_mislead_the_fit() -> None:
    cost = CallCost(decay=1.0)
    cost.observe(100, 5.0)  # the first call pays one-time set-up: not observed
    for _ in range(2):
        cost.observe(100, 0.02)
    assert not cost.fitted and cost.predict(100) is None  # two calls are too few to predict from
    cost.observe(100, 0.02)
    assert cost.predict(100) == pytest.approx(0.02)
    cost.observe(100, 10.0)  # a pause of the whole process counts as 5x the prediction at most
    assert cost.predict(100) == pytest.approx((3 * 0.02 + 5 * 0.02) / 4)


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


def test_the_calibration_learns_the_quantile_of_waits_over_forecasts_near_the_bound() -> None:
    calibration = WaitCalibration(bound_s=1.0, quantile=0.9, min_samples=16, prior=2.0)
    assert calibration.factor == 2.0  # until enough requests admitted near the bound have started
    for i in range(96):  # it re-sorts every 8th: after the 96th
        calibration.observe(Forecast(raw_s=0.3, wait_s=0.6), waited_s=0.3 * (1 + i / 96))  # ratios 1.0 .. 1.99
    assert calibration.factor == pytest.approx(1.9, abs=0.02)
    before = calibration.factor
    for _ in range(100):
        calibration.observe(Forecast(raw_s=0.01, wait_s=0.02), waited_s=1.0)  # far from the bound: ignored
    assert calibration.factor == before
    assert WaitCalibration(bound_s=None).factor == 2.0


def test_without_a_fitted_cost_only_the_count_applies() -> None:
    model = Held()

    async def scenario(engine: Engine) -> int:
        engine.submit(["running"], {})
        await entered(model)
        for i in range(5):
            engine.submit([f"q{i}"], {})  # no call has finished: nothing to predict from
        return engine.queue_depth()

    assert run(model, scenario, max_queue=5, max_queue_wait_s=0.001) == 5


def test_the_batch_loop_fits_the_cost_from_the_calls_it_ran() -> None:
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

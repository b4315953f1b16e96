"""The call cost, fitted online from the calls a server ran, and the calibration of forecast waits:
pure arithmetic, no clock."""

from __future__ import annotations

import pytest

from pipeserve_nb._server.core.cost import CallCost, Forecast, WaitCalibration, backlog_s


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


def test_the_backlog_is_the_sum_of_each_planned_calls_predicted_seconds() -> None:
    cost = CallCost(decay=1.0, skip_first=0)
    for tokens in (100, 200, 400):
        cost.observe(tokens, 0.01 + 0.0001 * tokens)
    assert backlog_s(cost, [(4, 100), (2, 400)]) == pytest.approx((0.01 + 0.01) + (0.01 + 0.04))
    assert backlog_s(cost, []) == 0.0
    assert cost.snapshot() == {"calls_seen": 3, "fixed_ms": pytest.approx(10.0), "per_token_ms": pytest.approx(0.1)}


def test_a_decay_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        CallCost(decay=0.0)

"""Load shapes: their rules, and the schedule an open loop keeps."""

from __future__ import annotations

import pytest

from pipeserve_nb import ClosedLoop, InvalidSetting, OpenLoop


def test_poisson_arrivals_are_seeded_and_average_the_rate() -> None:
    a = OpenLoop(rate_rps=200, duration_s=10, seed=3).schedule()
    assert a == OpenLoop(rate_rps=200, duration_s=10, seed=3).schedule()
    assert a != OpenLoop(rate_rps=200, duration_s=10, seed=4).schedule()
    assert 1800 < len(a) < 2200 and a == sorted(a) and a[-1] < 10


def test_constant_arrivals_are_evenly_spaced_and_counted() -> None:
    load = OpenLoop(rate_rps=50, requests=5, arrivals="constant")
    assert load.schedule() == pytest.approx([0, 0.02, 0.04, 0.06, 0.08])
    assert load.expected_requests() == 5 and load.describe() == "open 50 rps"
    assert ClosedLoop(concurrency=4, duration_s=1).expected_requests() is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClosedLoop(concurrency=0, requests=1), "concurrency must be an int >= 1, got 0"),
        (lambda: ClosedLoop(concurrency=True, requests=1), "concurrency must be an int >= 1, got True"),
        (lambda: ClosedLoop(concurrency=2), "give exactly one of requests= or duration_s="),
        (lambda: ClosedLoop(concurrency=2, requests=5, duration_s=1), "give exactly one of"),
        (lambda: ClosedLoop(concurrency=2, requests=0), "requests must be None or an int >= 1, got 0"),
        (lambda: ClosedLoop(concurrency=2, duration_s=0), "duration_s must be None or a finite number of seconds > 0"),
        (lambda: OpenLoop(rate_rps=0, requests=1), "rate_rps must be a finite number > 0, got 0"),
        (lambda: OpenLoop(rate_rps=5, requests=1, arrivals="bursty"), "arrivals must be 'poisson' or 'constant'"),  # type: ignore[arg-type]
    ],
)
def test_bad_shapes_are_refused_with_the_rule(make: object, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        make()  # type: ignore[operator]

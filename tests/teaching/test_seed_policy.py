"""The seed page's policy: its rules, and the timer that every arrival resets."""

from __future__ import annotations

import pytest

from pipeserve_nb import InvalidSetting, SeedPagePolicy


def test_defaults_are_the_pages_and_bad_values_are_refused() -> None:
    policy = SeedPagePolicy()
    assert policy.cap is None and policy.window is None and policy.max_wait_s == 0.001
    with pytest.raises(InvalidSetting, match="max_batch_size must be None or an int >= 1, got 0"):
        SeedPagePolicy(max_batch_size=0)
    with pytest.raises(InvalidSetting, match="max_wait_s must be a finite number of seconds >= 0"):
        SeedPagePolicy(max_wait_s=-1)


def test_every_arrival_restarts_the_timer() -> None:
    policy = SeedPagePolicy(max_wait_s=0.25)
    assert policy.collect_deadline(10.0, 10.0) == 10.25
    assert policy.collect_deadline(10.0, 12.0) == 12.25

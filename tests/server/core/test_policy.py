"""``BatchPolicy``: its rules, its reading, and what it tells the batch queue."""

from __future__ import annotations

import pytest

from pipeserve_nb import BatchPolicy, InvalidSetting


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be an int >= 1 (1 means no batching), got 0"),
        ({"max_batch_size": 2.5}, "max_batch_size must be an int >= 1"),
        ({"max_batch_size": True}, "max_batch_size must be an int >= 1"),
        ({"max_wait_s": -0.001}, "max_wait_s must be a finite number of seconds >= 0, got -0.001"),
        ({"max_wait_s": float("inf")}, "max_wait_s must be a finite number of seconds >= 0"),
        ({"max_wait_s": "1ms"}, "max_wait_s must be a finite number of seconds >= 0, got '1ms'"),
        ({"max_batch_tokens": 0}, "max_batch_tokens must be None or an int >= 1"),
        ({"window_size": 2.0}, "window_size must be None or an int >= 1"),
        ({"sort_by_length": 1}, "sort_by_length must be True or False, got 1"),
        ({"call_overhead_tokens": -1}, "call_overhead_tokens must be a finite number >= 0"),
        ({"call_overhead_tokens": float("inf")}, "call_overhead_tokens must be a finite number >= 0"),
        ({"call_overhead_tokens": "20"}, "call_overhead_tokens must be a finite number >= 0, got '20'"),
        ({"call_overhead_tokens": True}, "call_overhead_tokens must be a finite number >= 0"),
    ],
)
def test_bad_values_are_refused_with_the_rule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSetting, match=message.replace("(", r"\(").replace(")", r"\)")):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # one exception type for bad settings, a ValueError
        BatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_policy_is_frozen_keyword_only_and_readable() -> None:
    policy = BatchPolicy(max_batch_size=8, max_wait_s=0.002)
    assert repr(policy) == (
        "BatchPolicy(max_batch_size=8, max_wait_s=0.002, max_batch_tokens=None, sort_by_length=True, "
        "window_size=None, call_overhead_tokens=40.0, wait_for_returns=True)"
    )
    assert policy.cap == 8
    assert policy.window == 32 and BatchPolicy(max_batch_size=8, window_size=10).window == 10
    with pytest.raises(AttributeError):
        policy.max_batch_size = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        BatchPolicy(8, 0.002)  # type: ignore[misc]


def test_the_deadline_counts_from_the_oldest_arrival_never_from_the_newest() -> None:
    policy = BatchPolicy(max_wait_s=0.25)
    assert policy.collect_deadline(10.0, 10.0) == 10.25
    assert policy.collect_deadline(10.0, 99.0) == 10.25  # later arrivals never extend it

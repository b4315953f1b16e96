"""The toolkit's procedures against a real server with a model of known cost: each runs the loads it says,
and reports what they measured; paired rounds judge each soak against the capacities around it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeserve_nb import (
    BatchPolicy,
    ServerConfig,
    ServerHandle,
    capacity,
    paired_rounds,
    serve,
    soak,
    wait_drained,
    warm_up,
)

from ..helpers import GatedModel, wait_for


def two_ms_per_call(inputs: list[str]) -> list[int]:
    """A model whose every call takes 2 ms, whatever the batch."""
    time.sleep(0.002)
    return [len(text) for text in inputs]


@pytest.fixture
def server() -> Iterator[ServerHandle]:
    config = ServerConfig(max_queue=16, max_queue_wait_s=None)
    with serve(two_ms_per_call, policy=BatchPolicy(max_batch_size=4), config=config, name="procedures") as handle:
        yield handle


def test_warm_up_capacity_and_a_soak_run_the_loads_they_say(server: ServerHandle) -> None:
    warmed = warm_up(server, requests=20, concurrency=4)
    assert warmed.summary.ok == 20 and server.stats()["requests"] == 20
    closed = capacity(server, concurrency=8, duration_s=0.5)
    assert closed.load.describe() == "closed c=8" and closed.summary.goodput_rps > 0
    before = server.stats()["requests"]
    best = capacity(server, concurrency=4, duration_s=0.3, repeats=3)  # three runs, the best one returned
    assert server.stats()["requests"] - before > best.summary.requests > 0
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        capacity(server, repeats=0)
    soaked = soak(server, rate_rps=4 * closed.summary.goodput_rps, duration_s=0.5)
    s = soaked.summary
    assert s.answered == s.requests and set(s.by_status) <= {200, 503}  # every request answered, once
    assert server.stats()["queue_depth"] == 0  # the soak waited until the server drained
    assert s.sending_goodput_rps > 0


def test_wait_drained_returns_once_nothing_waits_and_gives_up_past_its_bound(gated: GatedModel) -> None:
    with serve(gated, policy=BatchPolicy(max_batch_size=1), name="held") as held, ThreadPoolExecutor(2) as pool:
        assert wait_drained(held) < 1.0  # idle: at once
        running = pool.submit(httpx.post, held.url, content=b"in the model", timeout=30)
        assert gated.entered.wait(10)
        waiting = pool.submit(httpx.post, held.url, content=b"waits behind it", timeout=30)
        wait_for(lambda: held.stats()["queue_depth"] == 1)
        with pytest.raises(TimeoutError, match="still wait"):
            wait_drained(held, timeout_s=0.2)
        gated.gate.set()
        wait_drained(held)
        assert held.stats()["queue_depth"] == 0
        assert running.result(30).status_code == waiting.result(30).status_code == 200


def test_paired_rounds_judge_each_soak_against_the_capacities_around_it(server: ServerHandle) -> None:
    warm_up(server, requests=20, concurrency=4)
    rounds = paired_rounds(server, rounds=2, overload=3.0, capacity_s=0.5, soak_s=0.5)
    assert rounds.overload == 3.0 and len(rounds.rounds) == 2
    first, second = rounds.rounds
    assert first.capacity_after_rps == second.capacity_before_rps  # one capacity closes a round, opens the next
    for r in rounds.rounds:
        assert r.capacity_before_rps > 0 and r.capacity_after_rps > 0 and r.lost == 0
        assert r.share == pytest.approx(r.soak_goodput_rps / ((r.capacity_before_rps + r.capacity_after_rps) / 2))
    assert rounds.share == pytest.approx(sum(r.share for r in rounds.rounds) / 2)  # the median of two
    assert "median share" in repr(rounds)

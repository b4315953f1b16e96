"""The batch queue: where a request waits and where it expires.

The semantics are driven on a fake clock through the queue's synchronous core
(``closes_at``, ``form``), so every assertion is exact: which request lands in which batch,
and when a batch closes. The async ``next_batch`` is then checked for its waiting alone.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from pipeserve_nb import BatchPolicy, RequestTimeout, SeedPagePolicy
from pipeserve_nb._server.core.batch_queue import BatchQueue
from pipeserve_nb._server.core.cost import CallCost
from pipeserve_nb._server.core.policy import Policy
from pipeserve_nb._server.core.request import Batch, Request
from pipeserve_nb._server.core.returns import Returns


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Scene:
    """A queue on a fake clock, and requests that arrive at the clock's time."""

    def __init__(self, policy: Policy, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = FakeClock()
        self.loop = loop
        self.queue = BatchQueue(policy, now=self.clock)

    def arrive(
        self, tag: Any, *, inputs: int = 1, tokens: int = 0, params: Any = None, timeout_s: float = 60
    ) -> Request:
        now = self.clock.now
        parameters = params or {}
        request = Request([tag] * inputs, parameters, self.loop.create_future(), now, now + timeout_s)
        self.queue.expect(request)  # accepted, as the engine does, then prepared
        request.prepared([tag] * inputs, tokens, json.dumps(parameters))
        self.queue.put(request)
        return request

    def form(self) -> list[Any]:
        """The next batch, as the tags of its slices' inputs (one entry per slice)."""
        batch = self.queue.form()
        self.queue.freed()  # the worker is instant on a fake clock
        return [s.inputs[0] for s in batch.slices]

    def due(self) -> bool:
        closes = self.queue.closes_at()
        return closes is not None and closes <= self.clock.now


def tags(batch: Batch) -> list[Any]:
    return [s.inputs[0] for s in batch.slices]


# -- when a batch closes -------------------------------------------------------------------


def test_the_deadline_is_not_reset_by_a_steady_trickle(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=1000, max_wait_s=0.15), loop)
    for i in range(30):  # one arrival every 40 ms; the batch closes 150 ms after the first
        scene.clock.now = i * 0.04
        if scene.due():
            break
        scene.arrive(i)
        assert scene.queue.closes_at() == 0.15
    assert scene.clock.now == pytest.approx(0.16) and scene.form() == [0, 1, 2, 3]


def test_the_seed_page_timer_restarts_on_every_arrival(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(SeedPagePolicy(max_wait_s=0.15), loop)
    for i in range(30):  # every gap (40 ms) is shorter than the per-get timeout (150 ms)
        scene.clock.now = i * 0.04
        assert not scene.due()
        scene.arrive(i)
    assert scene.queue.closes_at() == pytest.approx(29 * 0.04 + 0.15)  # the first request waits for all 30
    scene.clock.now = 29 * 0.04 + 0.15
    assert scene.form() == list(range(30))


def test_the_seed_page_waits_on_an_empty_queue_and_zero_wait_does_not(loop: asyncio.AbstractEventLoop) -> None:
    seed = Scene(SeedPagePolicy(max_wait_s=0.2), loop)
    seed.arrive(0)
    assert seed.queue.closes_at() == 0.2  # it waits its timeout with nothing else queued
    seed.clock.now = 0.05
    seed.arrive(1)
    seed.clock.now = 0.25
    assert seed.due() and seed.form() == [0, 1]

    zero = Scene(BatchPolicy(max_batch_size=32, max_wait_s=0), loop)
    zero.arrive(0)
    assert zero.due() and zero.form() == [0]  # starts at once with what is waiting
    zero.clock.now = 0.05
    zero.arrive(1)
    assert zero.form() == [1]


def test_a_request_that_waited_behind_a_batch_does_not_wait_again(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=8, max_wait_s=0.1), loop)
    scene.arrive(0)
    scene.clock.now = 0.5  # it arrived while the model was busy; the worker is free only now
    scene.queue.worker_free_since = 0.5
    assert scene.due() and scene.form() == [0]


def _returning_scene(loop: asyncio.AbstractEventLoop, policy: BatchPolicy, *, back_after_s: float) -> Scene:
    """Four clients in a closed loop on a fake clock, the model call costing 10 ms + 0.1 ms a token (fitted),
    each client sending again ``back_after_s`` apart after its answer; then the worker frees after a batch of
    the four, and none has come back yet."""
    scene = Scene(policy, loop)
    cost = CallCost(skip_first=0)
    for tokens, seconds in [(100, 0.020), (200, 0.030), (400, 0.050)]:
        cost.observe(tokens, seconds)
    scene.queue.call_cost = cost
    for _ in range(2):  # the first batch is nobody's return; the second's return is timed
        for i in range(4):
            scene.clock.now += back_after_s
            scene.arrive(i)
        assert scene.due() and scene.queue.form().size == 4
        scene.clock.now += 0.030  # the call
        scene.queue.freed()
    return scene


def test_the_batch_waits_a_call_fixed_cost_for_the_clients_it_answered(loop: asyncio.AbstractEventLoop) -> None:
    scene = _returning_scene(loop, BatchPolicy(), back_after_s=0.001)
    assert scene.queue.returns.seconds == pytest.approx(0.004)  # all four came back within 4 ms
    freed = scene.clock.now
    scene.clock.now += 0.001
    scene.arrive(0)
    assert scene.queue.closes_at() == pytest.approx(freed + 0.010)  # the fitted fixed cost after the worker freed
    for i in (1, 2):
        scene.clock.now += 0.001
        scene.arrive(i)
        assert not scene.due()
    scene.clock.now += 0.001
    scene.arrive(3)
    assert scene.due() and scene.form() == [0, 1, 2, 3]  # closes as soon as as many came as were answered

    freed = scene.clock.now  # the worker is free again (at once, on this clock): only two come back this time
    for i in (0, 1):
        scene.clock.now += 0.001
        scene.arrive(i)
    scene.clock.now = freed + 0.0099
    assert not scene.due()
    scene.clock.now = freed + 0.0101
    assert scene.due() and scene.form() == [0, 1]


def test_no_wait_for_returns_when_they_come_slower_than_a_call_or_when_turned_off_or_full(
    loop: asyncio.AbstractEventLoop,
) -> None:
    slow = _returning_scene(loop, BatchPolicy(), back_after_s=0.004)  # all four back only after 16 ms
    assert slow.queue.returns.seconds == pytest.approx(0.016)
    slow.arrive(0)
    assert slow.due() and slow.form() == [0]

    off = _returning_scene(loop, BatchPolicy(wait_for_returns=False), back_after_s=0.001)
    off.arrive(0)
    assert off.due() and off.form() == [0]

    full = _returning_scene(loop, BatchPolicy(), back_after_s=0.001)
    full.arrive("all", inputs=32)  # one client is back with a full batch: nothing to wait for
    assert full.due() and full.form() == ["all"]


def test_a_return_cut_short_by_the_next_batch_counts_the_time_until_then() -> None:
    returns = Returns()
    returns.freed(0.0, answered=3)
    returns.arrived(0.002)
    returns.freed(0.050, answered=1)  # two of the three never came back before the worker was free again
    assert returns.seconds == pytest.approx(0.050)
    returns.arrived(0.051)
    assert returns.seconds == pytest.approx(0.050 + 0.2 * (0.001 - 0.050))


def test_a_full_window_closes_the_batch_at_once(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=4, max_wait_s=10, window_size=4), loop)
    for i in range(3):
        scene.arrive(i)
    assert not scene.due()
    scene.arrive(3)
    assert scene.due() and scene.form() == [0, 1, 2, 3]


# -- which requests run together -------------------------------------------------------------


def test_the_cap_counts_inputs_and_a_large_request_runs_in_slices(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=4, sort_by_length=False), loop)
    for size in (3, 2, 1, 6, 1):
        scene.arrive(size, inputs=size)
    sizes = []
    while scene.queue.depth():
        batch = scene.queue.form()
        sizes.append([s.stop - s.start for s in batch.slices])
    # 3+2 would overflow 4, so 2 is held for the next batch; 6 runs 4 inputs, then its last 2 with the 1.
    assert sizes == [[3], [2, 1], [4], [2, 1]]


def test_only_requests_with_the_same_parameters_share_a_batch(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=8), loop)
    scene.arrive("a1", params={"top_k": 1})
    scene.arrive("b1", params={"top_k": 2})
    scene.arrive("a2", params={"top_k": 1})
    first = scene.queue.form()
    assert tags(first) == ["a1", "a2"] and first.parameters == {"top_k": 1}
    assert scene.form() == ["b1"]


def test_a_pool_of_mixed_lengths_runs_as_batches_of_similar_lengths_oldest_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    scene = Scene(BatchPolicy(max_batch_size=3, call_overhead_tokens=20), loop)
    for tokens in [40, 8, 33, 9, 41, 10, 14]:
        scene.arrive(tokens, tokens=tokens)
    # Sorted, 8 9 10 14 33 40 41 splits cheapest as [8 9 10] [14] [33 40 41] (50 + 34 + 143 tokens):
    # the oldest, 40, runs first with its run; then the oldest left, 8, with its run; then 14.
    assert [scene.form() for _ in range(3)] == [[33, 40, 41], [8, 9, 10], [14]]


def test_no_request_waits_behind_more_batches_than_requests_ahead_of_it(loop: asyncio.AbstractEventLoop) -> None:
    """A stream that keeps favouring others: short requests keep arriving, and length-aware
    formation would rather batch them together than with the one long request. Each request
    still runs within as many batches as there were requests waiting ahead of it."""
    rng = random.Random(3)
    scene = Scene(BatchPolicy(max_batch_size=4, window_size=64), loop)
    arrived: dict[str, tuple[int, int]] = {}  # tag -> (batches handed out so far, requests ahead)
    handed_out, served = 0, []

    def arrive(tokens: int) -> None:
        tag = f"r{len(arrived)}"
        arrived[tag] = (handed_out, scene.queue.depth())
        scene.arrive(tag, tokens=tokens)

    arrive(300)  # one long request, then a flood of short ones
    for _ in range(30):
        arrive(rng.randint(1, 20))
    while len(served) < len(arrived):
        batch = scene.form()
        handed_out += 1
        for tag in batch:
            first_seen, ahead = arrived[tag]
            served.append((handed_out - first_seen, ahead))
        for _ in range(3) if len(arrived) < 300 else ():  # 3 short arrivals per batch of at most 4
            arrive(rng.randint(1, 10))
    assert len(served) == 301
    assert max(w for w, _ in served) > 10  # requests did queue up behind others
    assert all(waited <= ahead + 1 for waited, ahead in served)


@pytest.mark.parametrize(
    "policy",
    [
        BatchPolicy(max_batch_size=1),
        BatchPolicy(max_batch_size=5, max_wait_s=0, sort_by_length=False),
        BatchPolicy(max_batch_size=7, max_wait_s=0.003, sort_by_length=False),
        BatchPolicy(max_batch_size=7, max_wait_s=0.003),
        SeedPagePolicy(max_wait_s=0.002),
        SeedPagePolicy(max_wait_s=0.002, max_batch_size=6),
    ],
    ids=repr,
)
def test_every_input_is_handed_out_exactly_once_within_the_cap(policy: Policy, loop: asyncio.AbstractEventLoop) -> None:
    """Random arrivals on the fake clock; the worker takes each batch the moment it closes."""
    rng = random.Random(7)
    scene = Scene(policy, loop)
    arrivals = sorted(rng.random() * 0.5 for _ in range(200))
    sizes = [rng.randint(1, 9) for _ in arrivals]
    handed: list[tuple[int, int]] = []  # (request, input index) in the order they ran
    batches: list[Batch] = []
    pending = list(range(len(arrivals)))
    while len(handed) < sum(sizes):
        closes = scene.queue.closes_at()
        next_arrival = arrivals[pending[0]] if pending else float("inf")
        if closes is not None and closes <= next_arrival:
            scene.clock.now = max(scene.clock.now, closes)
            batch = scene.queue.form()
            scene.queue.worker_free_since = scene.clock.now
            batches.append(batch)
            handed += [(s.inputs[0], i) for s in batch.slices for i in range(s.start, s.stop)]
        else:
            i = pending.pop(0)
            scene.clock.now = next_arrival
            scene.arrive(i, inputs=sizes[i], tokens=sizes[i] * 3 % 17)
    assert sorted(handed) == [(r, i) for r, n in enumerate(sizes) for i in range(n)]  # none lost, none twice
    if policy.cap is not None:
        assert all(b.size <= policy.cap for b in batches)
    if not getattr(policy, "sort_by_length", False):
        assert handed == sorted(handed)  # arrival order kept


# -- where a request expires, and what is dropped -------------------------------------------


def test_answered_requests_are_dropped_before_a_batch_forms(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=8), loop)
    requests = [scene.arrive(i) for i in range(5)]
    requests[0].future.cancel()
    requests[3].future.cancel()
    assert scene.form() == [1, 2, 4]
    assert scene.queue.depth() == 0


def test_a_request_past_its_deadline_expires_here_and_never_runs(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(max_batch_size=8), loop)
    late = scene.arrive("late", timeout_s=1.0)
    scene.clock.now = 0.9
    scene.arrive("in time", timeout_s=1.0)
    scene.clock.now = 1.5  # its timer has not fired (there is none on a fake clock)
    assert scene.form() == ["in time"]
    error = late.future.exception()
    assert isinstance(error, RequestTimeout) and "never reached the model" in str(error)
    assert late.drop_reason() == "expired"


def test_draining_returns_every_waiting_request(loop: asyncio.AbstractEventLoop) -> None:
    scene = Scene(BatchPolicy(), loop)
    requests = [scene.arrive(i) for i in range(3)]
    assert scene.queue.drain_nowait() == requests and scene.queue.depth() == 0
    assert scene.queue.closes_at() is None


# -- the waiting, on a real loop ---------------------------------------------------------------


def test_next_batch_blocks_until_a_request_arrives() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        queue = BatchQueue(BatchPolicy())
        task = asyncio.create_task(queue.next_batch())
        for _ in range(10):
            await asyncio.sleep(0)  # let the task run as far as it can
        assert not task.done()
        queue.put(Request(["x"], {}, loop.create_future(), queue.worker_free_since, float("inf"), "{}", 1))
        return tags(await asyncio.wait_for(task, 5))

    assert asyncio.run(scenario()) == ["x"]


def test_next_batch_waits_for_company_until_the_deadline() -> None:
    async def scenario() -> tuple[list[Any], float]:
        loop = asyncio.get_running_loop()
        queue = BatchQueue(BatchPolicy(max_batch_size=8, max_wait_s=0.05))
        arrived = queue.worker_free_since
        queue.put(Request(["first"], {}, loop.create_future(), arrived, float("inf"), "{}", 1))
        task = asyncio.create_task(queue.next_batch())
        await asyncio.sleep(0)
        queue.put(Request(["second"], {}, loop.create_future(), queue.worker_free_since, float("inf"), "{}", 1))
        batch = await asyncio.wait_for(task, 5)
        return tags(batch), loop.time() - arrived

    batch, waited = asyncio.run(scenario())
    assert batch == ["first", "second"]
    assert waited >= 0.05  # a timer never fires early; how much later it fires is the machine's business

"""Batching policy semantics, driven through the real Batcher with controlled arrivals.

Arrival schedules use gaps and waits tens of milliseconds apart, so the assertions are
about which request lands in which batch (semantics), with wide margins for a noisy host.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeserve_nb import BatchPolicy, SeedPagePolicy
from pipeserve_nb._batcher import Batcher, Pending, clock
from pipeserve_nb._policy import Policy, pick_batch


def make(n_inputs: int = 1, tag: object = None, tokens: int = 0) -> Pending:
    loop = asyncio.get_running_loop()
    now = clock()
    return Pending([tag] * n_inputs, {}, loop.create_future(), now, now + 60, tokens)


async def trickle(batcher: Batcher, items: list[Pending], gap_s: float) -> None:
    for item in items:
        batcher.put_nowait(item)
        await asyncio.sleep(gap_s)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_batch_size": 2.5}, "max_batch_size must be an int"),
        ({"max_batch_size": True}, "max_batch_size must be an int"),
        ({"max_wait_s": -0.001}, "max_wait_s must be a finite number of seconds >= 0"),
        ({"max_wait_s": float("inf")}, "max_wait_s must be a finite number"),
        ({"max_wait_s": "1ms"}, "max_wait_s must be a number of seconds"),
        ({"max_batch_tokens": 0}, "max_batch_tokens must be None or an int >= 1"),
        ({"window_size": 2.0}, "window_size must be None or an int >= 1"),
        ({"sort_by_length": 1}, "sort_by_length must be True or False"),
    ],
)
def test_batch_policy_rejects_bad_values_with_the_rule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_policies_are_frozen_keyword_only_and_readable() -> None:
    policy = BatchPolicy(max_batch_size=8, max_wait_s=0.002)
    assert repr(policy) == (
        "BatchPolicy(max_batch_size=8, max_wait_s=0.002, max_batch_tokens=None, sort_by_length=True, window_size=None)"
    )
    assert policy.window == 32 and BatchPolicy(max_batch_size=8, window_size=10).window == 10
    with pytest.raises(AttributeError):
        policy.max_batch_size = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        BatchPolicy(8, 0.002)  # type: ignore[misc]
    assert SeedPagePolicy().cap is None and SeedPagePolicy().max_wait_s == 0.001
    with pytest.raises(ValueError):
        SeedPagePolicy(max_batch_size=0)


# -- the deadline is measured from the first request -------------------------------------


def test_deadline_policy_is_not_reset_by_a_steady_trickle() -> None:
    async def scenario() -> tuple[list[int], float]:
        batcher = Batcher(BatchPolicy(max_batch_size=1000, max_wait_s=0.15), max_queue=1000)
        items = [make(tag=i) for i in range(30)]
        feeder = asyncio.create_task(trickle(batcher, items, gap_s=0.03))  # 30 items over 0.9 s
        started = clock()
        first = await batcher.next_batch()
        took = clock() - started
        await feeder
        return [p.inputs[0] for p in first], took

    first, took = run(scenario())
    # 0.15 s from the first item at a 0.03 s gap admits about 6; a reset timer would take all 30.
    assert first[0] == 0
    assert 2 <= len(first) <= 12
    assert took < 0.6


def test_seed_policy_timer_restarts_on_every_arrival() -> None:
    async def scenario() -> list[int]:
        batcher = Batcher(SeedPagePolicy(max_wait_s=0.15), max_queue=1000)
        items = [make(tag=i) for i in range(30)]
        feeder = asyncio.create_task(trickle(batcher, items, gap_s=0.03))
        first = await batcher.next_batch()
        await feeder
        return [p.inputs[0] for p in first]

    # Every gap (0.03 s) is shorter than the per-get timeout (0.15 s): the batch never closes
    # until the trickle stops, so the first request waited for all 30.
    assert run(scenario()) == list(range(30))


def test_seed_policy_has_no_cap_unless_given_and_respects_one_if_given() -> None:
    async def scenario(policy: Policy) -> list[int]:
        batcher = Batcher(policy, max_queue=1000)
        for i in range(100):
            batcher.put_nowait(make(tag=i))
        return [len(await batcher.next_batch()) for _ in range(100 // (policy.cap or 100))]

    assert run(scenario(SeedPagePolicy(max_wait_s=0.01))) == [100]
    assert run(scenario(SeedPagePolicy(max_wait_s=0.01, max_batch_size=25))) == [25, 25, 25, 25]


def test_seed_policy_waits_on_an_empty_queue_and_zero_wait_does_not() -> None:
    async def scenario(policy: Policy) -> list[list[int]]:
        batcher = Batcher(policy, max_queue=10)
        batcher.put_nowait(make(tag=0))
        later = make(tag=1)
        asyncio.get_running_loop().call_later(0.05, batcher.put_nowait, later)
        first = await batcher.next_batch()
        second = await batcher.next_batch() if len(first) == 1 else []
        return [[p.inputs[0] for p in first], [p.inputs[0] for p in second]]

    # The seed loop waits its 0.2 s timeout on the empty queue, so the later request joins.
    assert run(scenario(SeedPagePolicy(max_wait_s=0.2))) == [[0, 1], []]
    # max_wait_s=0 starts at once with what is queued; the later request forms the next batch.
    assert run(scenario(BatchPolicy(max_batch_size=32, max_wait_s=0))) == [[0], [1]]


def test_zero_wait_takes_everything_already_queued_up_to_the_cap() -> None:
    async def scenario() -> list[int]:
        batcher = Batcher(BatchPolicy(max_batch_size=4, max_wait_s=0), max_queue=100)
        for i in range(10):
            batcher.put_nowait(make(tag=i))
        return [len(await batcher.next_batch()) for _ in range(3)]

    assert run(scenario()) == [4, 4, 2]


def test_cap_counts_inputs_and_holds_back_a_request_that_would_overflow() -> None:
    async def scenario() -> list[list[int]]:
        batcher = Batcher(BatchPolicy(max_batch_size=4, max_wait_s=0), max_queue=100)
        for size in (3, 2, 1, 6, 1):
            batcher.put_nowait(make(size, tag=size))
        batches = [await batcher.next_batch() for _ in range(4)]
        return [[p.size for p in b] for b in batches]

    # 3+2 would overflow 4, so 2 is held for the next batch; 6 alone exceeds the cap and runs alone.
    assert run(scenario()) == [[3], [2, 1], [6], [1]]


def test_abandoned_requests_are_dropped_before_a_batch_forms() -> None:
    async def scenario() -> tuple[list[int], int]:
        batcher = Batcher(BatchPolicy(max_batch_size=8, max_wait_s=0), max_queue=100)
        items = [make(tag=i) for i in range(5)]
        items[0].future.cancel()
        items[3].future.cancel()
        for item in items:
            batcher.put_nowait(item)
        batch = await batcher.next_batch()
        return [p.inputs[0] for p in batch], batcher.dropped_abandoned

    assert run(scenario()) == ([1, 2, 4], 2)


@pytest.mark.parametrize(
    "policy",
    [
        BatchPolicy(max_batch_size=1),
        BatchPolicy(max_batch_size=5, max_wait_s=0),
        BatchPolicy(max_batch_size=7, max_wait_s=0.003),
        SeedPagePolicy(max_wait_s=0.002),
        SeedPagePolicy(max_wait_s=0.002, max_batch_size=6),
    ],
)
def test_every_request_is_handed_out_exactly_once_in_arrival_order(policy: Policy) -> None:
    async def scenario() -> tuple[list[int], list[list[Pending]]]:
        rng = random.Random(7)
        batcher = Batcher(policy, max_queue=1000)
        items = [make(rng.randint(1, 4), tag=i) for i in range(200)]

        async def feed() -> None:
            for item in items:
                batcher.put_nowait(item)
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.random() * 0.004)

        feeder = asyncio.create_task(feed())
        batches: list[list[Pending]] = []
        while sum(len(b) for b in batches) < len(items):
            batches.append(await asyncio.wait_for(batcher.next_batch(), 5))
        await feeder
        return [p.inputs[0] for b in batches for p in b], batches

    order, batches = run(scenario())
    assert order == list(range(200))  # none lost, none twice, arrival order kept
    cap = policy.cap
    if cap is not None:
        for batch in batches:
            assert len(batch) == 1 or sum(p.size for p in batch) <= cap


# -- length-aware formation: pick_batch is pure logic -------------------------------------


@dataclass(frozen=True)
class Item:
    tag: int
    size: int
    tokens: int


ITEMS = st.lists(
    st.builds(Item, tag=st.integers(), size=st.integers(1, 5), tokens=st.integers(1, 300)), min_size=1, max_size=60
).map(lambda items: [Item(i, x.size, x.tokens) for i, x in enumerate(items)])


@given(
    pool=ITEMS,
    cap=st.none() | st.integers(1, 40),
    max_tokens=st.none() | st.integers(1, 4000),
    by_length=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_picking_until_empty_serves_each_item_once_within_cap_and_budget(
    pool: list[Item], cap: int | None, max_tokens: int | None, by_length: bool
) -> None:
    waiting, served, batches = list(pool), [], []
    while waiting:
        picked = pick_batch(waiting, cap=cap, max_tokens=max_tokens, by_length=by_length)
        assert picked and 0 in picked  # never empty, and the oldest waiting item always goes
        batch = [waiting[i] for i in picked]
        batches.append(batch)
        served += [x.tag for x in batch]
        waiting = [x for i, x in enumerate(waiting) if i not in set(picked)]
    assert sorted(served) == [x.tag for x in pool]  # every item exactly once
    for batch in batches:
        inputs, longest = sum(x.size for x in batch), max(x.tokens for x in batch)
        if len(batch) > 1:  # only a lone request may pass a limit
            assert cap is None or inputs <= cap
            assert max_tokens is None or longest * inputs <= max_tokens
        if by_length:
            assert [x.tokens for x in batch] == sorted(x.tokens for x in batch)  # ordered by length
        else:
            assert [x.tag for x in batch] == sorted(x.tag for x in batch)  # arrival order


def test_batch_mates_are_the_nearest_lengths_to_the_oldest_request() -> None:
    pool = [Item(i, 1, t) for i, t in enumerate([30, 5, 31, 6, 500, 7, 29, 4])]
    assert [pool[i].tokens for i in pick_batch(pool, cap=3, max_tokens=None, by_length=True)] == [29, 30, 31]
    assert [pool[i].tokens for i in pick_batch(pool, cap=3, max_tokens=None, by_length=False)] == [30, 5, 31]
    # a budget of 100 padded tokens: 30 with 29 is 60, a third (31) would be 93, a fourth would pass it
    assert [pool[i].tokens for i in pick_batch(pool, cap=None, max_tokens=100, by_length=True)] == [29, 30, 31]
    lone = [Item(0, 1, 500), *pool[1:4]]
    assert pick_batch(lone, cap=8, max_tokens=200, by_length=True) == [0]  # over the budget alone: runs alone


def test_no_request_waits_behind_more_batches_than_requests_ahead_of_it() -> None:
    """A stream that keeps favouring others: short requests keep arriving, and a batch always
    takes the nearest lengths to its oldest request. Each request still runs within as many
    batches as there were requests waiting ahead of it when it arrived."""

    async def scenario() -> list[tuple[int, int]]:
        rng = random.Random(3)
        batcher = Batcher(BatchPolicy(max_batch_size=4, window_size=64), max_queue=10_000)
        arrived: dict[str, tuple[int, int]] = {}  # tag -> (batches handed out so far, requests ahead)
        handed_out, served, n = 0, [], 0

        def arrive(tokens: int) -> None:
            nonlocal n
            tag = f"r{n}"
            n += 1
            arrived[tag] = (handed_out, batcher.depth())
            batcher.put_nowait(make(tag=tag, tokens=tokens))

        arrive(300)  # one long request, then a flood of short ones
        for _ in range(30):
            arrive(rng.randint(1, 20))
        while len(served) < n:
            batch = await batcher.next_batch()
            handed_out += 1
            for pending in batch:
                first_seen, ahead = arrived[pending.inputs[0]]
                served.append((handed_out - first_seen, ahead))
            for _ in range(3) if n < 300 else ():  # 3 short arrivals per batch of at most 4
                arrive(rng.randint(1, 10))
        return served

    served = run(scenario())
    assert len(served) == 301
    assert max(w for w, _ in served) > 10  # requests did queue up behind others
    for waited_batches, ahead in served:
        assert waited_batches <= ahead + 1


def test_a_pool_of_mixed_lengths_runs_as_batches_of_similar_lengths_oldest_first() -> None:
    async def scenario() -> list[list[int]]:
        batcher = Batcher(BatchPolicy(max_batch_size=3, max_wait_s=0), max_queue=100)
        for i, tokens in enumerate([40, 8, 33, 9, 41, 10, 12]):
            batcher.put_nowait(make(tag=i, tokens=tokens))
        return [[p.tokens for p in await batcher.next_batch()] for _ in range(3)]

    # oldest 40 with its nearest 41 and 33; then oldest 8 with 9 and 10; then 12
    assert run(scenario()) == [[33, 40, 41], [8, 9, 10], [12]]

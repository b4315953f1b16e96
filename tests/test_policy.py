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
from pipeserve_nb._policy import Policy, _cheapest_split, pick_batch


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
        ({"call_overhead_tokens": -1}, "call_overhead_tokens must be a finite number >= 0"),
        ({"call_overhead_tokens": float("inf")}, "call_overhead_tokens must be a finite number >= 0"),
        ({"call_overhead_tokens": "20"}, "call_overhead_tokens must be a number of tokens"),
        ({"call_overhead_tokens": True}, "call_overhead_tokens must be a number of tokens"),
    ],
)
def test_batch_policy_rejects_bad_values_with_the_rule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_policies_are_frozen_keyword_only_and_readable() -> None:
    policy = BatchPolicy(max_batch_size=8, max_wait_s=0.002)
    assert repr(policy) == (
        "BatchPolicy(max_batch_size=8, max_wait_s=0.002, max_batch_tokens=None, sort_by_length=True, "
        "window_size=None, call_overhead_tokens=40.0)"
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
    call_tokens=st.floats(0, 1000),
)
@settings(max_examples=300, deadline=None)
def test_picking_until_empty_serves_each_item_once_within_cap_and_budget(
    pool: list[Item], cap: int | None, max_tokens: int | None, by_length: bool, call_tokens: float
) -> None:
    waiting, served, batches = list(pool), [], []
    while waiting:
        picked = pick_batch(waiting, cap=cap, max_tokens=max_tokens, by_length=by_length, call_tokens=call_tokens)
        assert picked and 0 in picked  # never empty, and the oldest waiting item always goes
        batch = [waiting[i] for i in picked]
        if by_length:  # neighbours in length: nothing left waiting lies strictly between two batch-mates
            low, high = min(x.tokens for x in batch), max(x.tokens for x in batch)
            left = [waiting[i].tokens for i in range(len(waiting)) if i not in set(picked)]
            assert not [t for t in left if low < t < high]
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


def _split_cost(runs: list[list[Item]], call_tokens: float) -> float:
    return sum(call_tokens + sum(x.size for x in run) * max(x.tokens for x in run) for run in runs)


def _all_splits(items: list[Item]) -> list[list[list[Item]]]:
    """Every way to cut ``items`` into consecutive runs (2^(n-1) of them)."""
    if not items:
        return [[]]
    return [[items[:k], *rest] for k in range(1, len(items) + 1) for rest in _all_splits(items[k:])]


@given(
    pool=st.lists(st.builds(Item, tag=st.just(0), size=st.integers(1, 3), tokens=st.integers(1, 60)), max_size=8),
    cap=st.none() | st.integers(1, 6),
    max_tokens=st.none() | st.integers(1, 200),
    call_tokens=st.floats(0, 200),
)
@settings(max_examples=300, deadline=None)
def test_the_split_is_the_cheapest_of_all_splits_by_length(
    pool: list[Item], cap: int | None, max_tokens: int | None, call_tokens: float
) -> None:
    """The dynamic programme against brute force: no other cut of the length-sorted pool into
    runs that fit the limits costs less (calls x price + padded tokens)."""
    items = sorted(pool, key=lambda x: x.tokens)

    def allowed(run: list[Item]) -> bool:
        inputs, longest = sum(x.size for x in run), max(x.tokens for x in run)
        fits = (cap is None or inputs <= cap) and (max_tokens is None or inputs * longest <= max_tokens)
        return len(run) == 1 or fits

    split = [items[lo:hi] for lo, hi in _cheapest_split(items, cap, max_tokens, call_tokens)]
    assert [x for run in split for x in run] == items and all(allowed(run) for run in split)
    best = min(_split_cost(s, call_tokens) for s in _all_splits(items) if all(allowed(run) for run in s))
    assert _split_cost(split, call_tokens) == pytest.approx(best)


def test_the_price_of_a_call_decides_how_much_padding_a_batch_may_carry() -> None:
    def batch(tokens: list[int], **kwargs: object) -> list[int]:
        pool = [Item(i, 1, t) for i, t in enumerate(tokens)]
        return [pool[i].tokens for i in pick_batch(pool, **kwargs)]  # type: ignore[arg-type]

    three_short_one_long = [10, 10, 10, 50]
    # Together: 4 x 50 = 200 padded tokens in one call. Apart: 30 + 50 tokens in two calls.
    assert batch(three_short_one_long, cap=4, max_tokens=None, by_length=True, call_tokens=20) == [10, 10, 10]
    assert batch(three_short_one_long, cap=4, max_tokens=None, by_length=True, call_tokens=200) == [10, 10, 10, 50]
    # Free calls: any difference in length is worth a call of its own.
    assert batch([30, 29, 31], cap=3, max_tokens=None, by_length=True, call_tokens=0) == [30]
    # Arrival order ignores lengths and the price: a FIFO prefix within the cap.
    assert batch([30, 5, 31, 6], cap=3, max_tokens=None, by_length=False, call_tokens=0) == [30, 5, 31]
    # The oldest runs with its neighbours in length, wherever it sits among them.
    mixed = [30, 5, 31, 6, 500, 7, 29, 4]
    assert batch(mixed, cap=3, max_tokens=None, by_length=True, call_tokens=20) == [29, 30, 31]
    # A budget of 100 padded tokens: 29, 30 and 31 make 93; a fourth would pass it.
    assert batch(mixed, cap=None, max_tokens=100, by_length=True, call_tokens=1000) == [29, 30, 31]
    # A lone request over the budget runs alone.
    assert batch([500, 5, 31, 6], cap=8, max_tokens=200, by_length=True, call_tokens=20) == [500]


def test_no_request_waits_behind_more_batches_than_requests_ahead_of_it() -> None:
    """A stream that keeps favouring others: short requests keep arriving, and length-aware
    formation would rather batch them together than with the one long request. Each request still runs within as many
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
        batcher = Batcher(BatchPolicy(max_batch_size=3, max_wait_s=0, call_overhead_tokens=20), max_queue=100)
        for i, tokens in enumerate([40, 8, 33, 9, 41, 10, 14]):
            batcher.put_nowait(make(tag=i, tokens=tokens))
        return [[p.tokens for p in await batcher.next_batch()] for _ in range(3)]

    # Sorted, 8 9 10 14 33 40 41 splits cheapest as [8 9 10] [14] [33 40 41] (50 + 34 + 143 tokens):
    # the oldest, 40, runs first with its run; then the oldest left, 8, with its run; then 14.
    assert run(scenario()) == [[33, 40, 41], [8, 9, 10], [14]]

"""Batch formation as pure logic: ``pick_batch`` over plain records, no queue, no clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeserve_nb._server.core.formation import _cheapest_split, pick_batch


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
        pick = pick_batch(waiting, cap=cap, max_tokens=max_tokens, by_length=by_length, call_tokens=call_tokens)
        picked = [i for i, _ in pick]
        assert picked and 0 in picked  # never empty, and the oldest waiting item always goes
        if cap is not None and waiting[0].size > cap:  # over the cap: alone, cap of its inputs now
            assert pick == [(0, cap)]
            waiting[0] = Item(waiting[0].tag, waiting[0].size - cap, waiting[0].tokens)
            batches.append([Item(waiting[0].tag, cap, waiting[0].tokens)])
            continue
        assert all(n == waiting[i].size for i, n in pick)  # the others run whole
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
        assert cap is None or inputs <= cap  # the cap holds for every batch
        if len(batch) > 1:  # only a lone request may pass the token budget
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
        return [pool[i].tokens for i, _ in pick_batch(pool, **kwargs)]  # type: ignore[arg-type]

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


def test_a_request_over_the_cap_runs_cap_of_its_inputs_alone() -> None:
    pool = [Item(0, 10, 5), Item(1, 1, 5)]
    assert pick_batch(pool, cap=4, max_tokens=None, by_length=True, call_tokens=0) == [(0, 4)]
    assert pick_batch(pool, cap=4, max_tokens=None, by_length=False) == [(0, 4)]
    assert pick_batch(pool, cap=None, max_tokens=None, by_length=False) == [(0, 10), (1, 1)]


def test_an_empty_sequence_has_no_batch() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        pick_batch([], cap=4, max_tokens=None, by_length=True)

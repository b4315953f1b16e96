"""Batch formation, pure logic: which waiting requests run together in the next model call.

``pick_batch`` is the one place the batch cap and the token budget are applied: no batch it
returns holds more than ``cap`` inputs, so a request with more inputs than the cap runs in
consecutive batches of ``cap`` of its inputs (the oldest request always goes next, so they
follow each other). Nothing here waits or knows about asyncio; the batch queue calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["Batchable", "Pick", "pick_batch", "plan_calls"]


class Batchable(Protocol):
    """What batch formation needs to know of a waiting request."""

    @property
    def size(self) -> int:
        """Inputs the request still has to run."""
        ...

    @property
    def tokens(self) -> int:
        """Tokens of its longest input (what the batch is padded to)."""
        ...


B = TypeVar("B", bound=Batchable)

Pick = list[tuple[int, int]]
"""The next batch: ``(index into the waiting requests, how many of its inputs)``, in the order
the batch runs. The count is the request's whole ``size``, except for a request over the cap
(then alone, with ``cap`` of its inputs)."""


def pick_batch(
    waiting: Sequence[B], *, cap: int | None, max_tokens: int | None, by_length: bool, call_tokens: float = 0.0
) -> Pick:
    """The next batch among ``waiting`` (oldest first); never empty for a non-empty sequence.

    The oldest request (``waiting[0]``) is always in the batch, so a request waits behind at
    most as many batches as there were requests ahead of it: nothing is passed over for
    good, however short the requests arriving after it. A batch holds at most ``cap``
    inputs and ``max_tokens`` padded tokens (the longest request's tokens x the inputs);
    a lone request over the budget runs alone, and one over the cap runs ``cap`` of its
    inputs now and the rest in the next batches.

    - ``by_length=False``: the oldest and the requests after it, in arrival order (a FIFO
      prefix), while they fit.
    - ``by_length=True``: the waiting requests, sorted by length, are split into the runs
      of neighbours that cost least in all: each model call costs ``call_tokens`` plus its
      padded tokens (``_cheapest_split``). The batch is the run holding the oldest request,
      sorted by length. ``call_tokens`` is the price of a call: 0 splits at every change of
      length, a large value packs batches full.
    """
    if not waiting:
        raise ValueError("pick_batch needs at least one request")
    oldest = waiting[0]
    if cap is not None and oldest.size > cap:
        return [(0, cap)]
    if not by_length:
        inputs, longest, chosen = oldest.size, oldest.tokens, [0]
        for i in range(1, len(waiting)):
            grown = inputs + waiting[i].size
            if not _fits(grown, max(longest, waiting[i].tokens), cap, max_tokens):
                break
            chosen.append(i)
            inputs, longest = grown, max(longest, waiting[i].tokens)
        return [(i, waiting[i].size) for i in chosen]
    order = sorted(range(len(waiting)), key=lambda i: (waiting[i].tokens, i))
    for lo, hi in _cheapest_split([waiting[i] for i in order], cap, max_tokens, call_tokens):
        run = order[lo:hi]
        if 0 in run:
            return [(i, waiting[i].size) for i in run]
    raise AssertionError("the split covers every request")  # pragma: no cover


def plan_calls(
    waiting: Sequence[Batchable], *, cap: int | None, max_tokens: int | None, by_length: bool
) -> list[tuple[int, int]]:
    """The model calls that would run everything ``waiting``, as ``(inputs, padded tokens)``:
    a quick forecast of how ``pick_batch`` will batch them, for admission by time.

    Requests are packed greedily into calls of at most ``cap`` inputs and ``max_tokens``
    padded tokens, in order of length with ``by_length`` (as the length-aware split groups
    neighbours), else in arrival order. Packing full is what the split does under load,
    when a request's wait matters; O(n log n), cheap enough to run on every admission.
    """
    order = sorted(waiting, key=lambda r: r.tokens) if by_length else list(waiting)
    calls: list[tuple[int, int]] = []
    inputs = longest = 0
    for request in order:
        size, tokens = request.size, request.tokens
        while cap is not None and size > cap:  # a request over the cap runs in slices of it
            calls.append((cap, cap * tokens))
            size -= cap
        if inputs and not _fits(inputs + size, max(longest, tokens), cap, max_tokens):
            calls.append((inputs, inputs * longest))
            inputs = longest = 0
        inputs, longest = inputs + size, max(longest, tokens)
    if inputs:
        calls.append((inputs, inputs * longest))
    return calls


def _fits(inputs: int, longest: int, cap: int | None, max_tokens: int | None) -> bool:
    return (cap is None or inputs <= cap) and (max_tokens is None or longest * inputs <= max_tokens)


def _cheapest_split(
    items: Sequence[Batchable], cap: int | None, max_tokens: int | None, call_tokens: float
) -> list[tuple[int, int]]:
    """Split ``items`` (sorted by tokens) into runs ``[lo, hi)`` that fit the limits (or hold
    one item) with the least ``sum(call_tokens + inputs x longest)``: dynamic programming
    over the split points, O(len(items) x the most items a batch can hold)."""
    n = len(items)
    cost = [0.0] + [float("inf")] * n  # cost[j]: the cheapest split of items[:j]
    start = [0] * (n + 1)  # where the last run of that split starts
    for j in range(1, n + 1):
        longest, inputs = items[j - 1].tokens, 0
        for i in range(j - 1, -1, -1):  # the last run is items[i:j]
            inputs += items[i].size
            if i < j - 1 and not _fits(inputs, longest, cap, max_tokens):
                break
            candidate = cost[i] + call_tokens + inputs * longest
            if candidate < cost[j]:
                cost[j], start[j] = candidate, i
    runs, j = [], n
    while j > 0:
        runs.append((start[j], j))
        j = start[j]
    return runs[::-1]

"""Batching policies: when the worker stops collecting requests, and which ones run together.

Both policies share one loop (see ``_batcher.Batcher``). Requests taken off the queue
wait in a *pool*; whenever the worker is free, the pool is topped up with what is queued
(blocking for a first request, then collecting until the policy's deadline, when the pool
is empty) and the policy ``pick``s the next batch from it. ``BatchPolicy`` sorts the
pool by length, splits it into the batches that cost least to run (padded tokens plus a
fixed price per model call) and runs the one holding the oldest request;
``SeedPagePolicy`` takes the pool as it came. The leftovers stay in the pool, split again
with the next arrivals, so each batch chooses among everything waiting, not among one
fixed window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["BatchPolicy", "SeedPagePolicy", "Policy", "Batchable", "pick_batch"]


class Batchable(Protocol):
    """What batch formation needs to know of a request."""

    @property
    def size(self) -> int:
        """Inputs the request adds to a batch."""
        ...

    @property
    def tokens(self) -> int:
        """Tokens of its longest input (what the batch is padded to)."""
        ...


B = TypeVar("B", bound=Batchable)


def pick_batch(
    pool: Sequence[B], *, cap: int | None, max_tokens: int | None, by_length: bool, call_tokens: float = 0.0
) -> list[int]:
    """Indices into ``pool`` (oldest first) of the next batch; never empty for a non-empty pool.

    The oldest request (``pool[0]``) is always in the batch, so a request waits behind at
    most as many batches as there were requests ahead of it: nothing is passed over for
    good, however short the requests arriving after it. A batch holds at most ``cap``
    inputs and ``max_tokens`` padded tokens (the longest request's tokens x the inputs);
    a lone request over a limit runs alone.

    - ``by_length=False``: the oldest and the requests after it, in arrival order (a FIFO
      prefix of the pool), while they fit.
    - ``by_length=True``: the waiting requests, sorted by length, are split into the runs
      of neighbours that cost least in all: each model call costs ``call_tokens`` plus its
      padded tokens (``_cheapest_split``). The batch is the run holding the oldest request,
      indices sorted by length. ``call_tokens`` is the price of a call: 0 splits at every
      change of length, a large value packs batches full.
    """
    if not pool:
        raise ValueError("pick_batch needs at least one request")
    if not by_length:
        inputs, longest, chosen = pool[0].size, pool[0].tokens, [0]
        for i in range(1, len(pool)):
            grown = inputs + pool[i].size
            if not _fits(grown, max(longest, pool[i].tokens), cap, max_tokens):
                break
            chosen.append(i)
            inputs, longest = grown, max(longest, pool[i].tokens)
        return chosen
    order = sorted(range(len(pool)), key=lambda i: (pool[i].tokens, i))
    for lo, hi in _cheapest_split([pool[i] for i in order], cap, max_tokens, call_tokens):
        run = order[lo:hi]
        if 0 in run:
            return run
    raise AssertionError("the split covers every request")  # pragma: no cover


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


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """Deadline batching with length-aware batch formation.

    Semantics, exactly:

    - When the worker is free and nothing is waiting, block until a request arrives, then
      keep taking requests while less than ``max_wait_s`` has passed *since that first
      request was taken* (later arrivals never extend the deadline) and fewer than
      ``window_size`` inputs wait. Requests already queued are taken at once.
    - ``max_wait_s=0``: take whatever is already queued and start at once; never wait on an
      empty queue. While a batch runs, new requests queue up, so under load batches form
      on their own ("continuous" batching) at no latency cost.
    - The batch is ``pick_batch`` of the waiting requests. With ``sort_by_length`` they
      are sorted by token count and split into the batches that cost least in all, where a
      model call costs its padded tokens plus ``call_overhead_tokens``; the batch that
      runs is the one holding the oldest request. Without, the oldest and those after it
      in arrival order. Either way at most ``max_batch_size`` inputs and
      ``max_batch_tokens`` padded tokens; a lone request over either limit runs alone
      (the worker calls the model on it in chunks of ``max_batch_size``).
    - Fairness: the oldest waiting request is always in the next batch, so no request
      waits behind more batches than there were requests ahead of it when it arrived.
    - ``max_batch_size=1`` means no batching: one request per model call.

    Parameters:
        max_batch_size: most inputs in one model call (>= 1).
        max_wait_s: longest the first request waits for company when none is waiting (>= 0).
        max_batch_tokens: most padded tokens (longest input x inputs) in one model call;
            None for no token budget.
        sort_by_length: choose batch-mates by length (False: in arrival order).
        call_overhead_tokens: the price of one more model call, in padded tokens: what
            splitting a batch in two must save in padding to be worth it. Small values
            split at smaller differences of length; large values pack batches full (on a
            GPU, where a call's fixed cost dwarfs its per-token cost, raise it). The
            default, 40, is near what a call's fixed cost is worth in tokens on a 2-core
            CPU with the bundled model (a call takes 4-10 ms plus 0.08-0.15 ms per padded
            token, the machine's speed varying by day: 50-65 tokens), and the middle of the
            range, 20 to 80, that served fastest there;
            ``make bench`` measures 10 and 160 beside it. It is in the units of
            ``tokens`` (characters for a plain callable).
        window_size: most inputs waiting in the pool to choose from; None for
            ``4 * max_batch_size`` (more waiting requests stay queued, in order).

    Example:
        >>> BatchPolicy(max_batch_size=16, max_wait_s=0.005).window
        64
    """

    max_batch_size: int = 32
    max_wait_s: float = 0.0
    max_batch_tokens: int | None = None
    sort_by_length: bool = True
    window_size: int | None = None
    call_overhead_tokens: float = 40.0

    def __post_init__(self) -> None:
        _check_cap(self.max_batch_size)
        _check_wait(self.max_wait_s)
        for name in ("max_batch_tokens", "window_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if not isinstance(self.sort_by_length, bool):
            raise TypeError(f"sort_by_length must be True or False, got {self.sort_by_length!r}")
        price = self.call_overhead_tokens
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise TypeError(f"call_overhead_tokens must be a number of tokens, got {price!r}")
        if not 0 <= price < float("inf"):
            raise ValueError(f"call_overhead_tokens must be a finite number >= 0, got {price}")

    @property
    def cap(self) -> int | None:
        """The batch cap in inputs, or None for no cap."""
        return self.max_batch_size

    @property
    def window(self) -> int | None:
        """Most inputs waiting in the pool to choose a batch from."""
        return self.window_size if self.window_size is not None else 4 * self.max_batch_size

    def collect_deadline(self, first_taken_at: float, last_taken_at: float) -> float:
        """Monotonic time after which no more requests join the pool before a batch runs."""
        return first_taken_at + self.max_wait_s

    def pick(self, pool: Sequence[B]) -> list[int]:
        """Indices of the next batch in ``pool`` (see ``pick_batch``)."""
        return pick_batch(
            pool,
            cap=self.max_batch_size,
            max_tokens=self.max_batch_tokens,
            by_length=self.sort_by_length,
            call_tokens=self.call_overhead_tokens,
        )


@dataclass(frozen=True, kw_only=True)
class SeedPagePolicy:
    """The Transformers "pipelines for a webserver" page's batching loop, for teaching.

    It reproduces the page's sketch faithfully, pitfalls included: after each request
    is taken, wait up to ``max_wait_s`` for the next one, so *every arrival restarts the
    timer*. Under a steady trickle (one request per < ``max_wait_s``) the batch keeps
    growing and its first request waits far longer than ``max_wait_s``. It also always
    pays ``max_wait_s`` on an empty queue, and has no cap unless ``max_batch_size`` is
    given. Unlike the page, it never drops the first request it takes.

    Parameters:
        max_wait_s: the per-get timeout (the page uses 0.001).
        max_batch_size: optional cap in inputs; None (the page's choice) means no cap.
    """

    max_wait_s: float = 0.001
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size is not None:
            _check_cap(self.max_batch_size)
        _check_wait(self.max_wait_s)

    @property
    def cap(self) -> int | None:
        """The batch cap in inputs, or None for no cap."""
        return self.max_batch_size

    @property
    def window(self) -> int | None:
        """The pool is one batch: the page never reorders."""
        return self.max_batch_size

    def collect_deadline(self, first_taken_at: float, last_taken_at: float) -> float:
        """Monotonic time after which no more requests join: reset by every arrival."""
        return last_taken_at + self.max_wait_s

    def pick(self, pool: Sequence[B]) -> list[int]:
        """Everything waiting, in arrival order (up to the cap, if one is given)."""
        return pick_batch(pool, cap=self.max_batch_size, max_tokens=None, by_length=False)


Policy = BatchPolicy | SeedPagePolicy


def _check_cap(max_batch_size: int) -> None:
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
        raise TypeError(f"max_batch_size must be an int, got {max_batch_size!r}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 (1 means no batching), got {max_batch_size}")


def _check_wait(max_wait_s: float) -> None:
    if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float)):
        raise TypeError(f"max_wait_s must be a number of seconds, got {max_wait_s!r}")
    if not 0 <= max_wait_s < float("inf"):
        raise ValueError(f"max_wait_s must be a finite number of seconds >= 0, got {max_wait_s}")

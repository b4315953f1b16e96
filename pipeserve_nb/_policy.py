"""Batching policies: when the worker stops collecting requests, and which ones run together.

Both policies share one loop (see ``_batcher.Batcher``). Requests taken off the queue
wait in a *pool*; whenever the worker is free, the pool is topped up with what is queued
(blocking for a first request, then collecting until the policy's deadline, when the pool
is empty) and the policy ``pick``s the next batch from it. ``BatchPolicy`` picks the
oldest request and, as its batch-mates, the requests closest to it in length, so little
of a batch is padding; ``SeedPagePolicy`` takes the pool as it came. The leftovers stay
in the pool, sorted again with the next arrivals, so each batch chooses among everything
waiting, not among one fixed window.
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


def pick_batch(pool: Sequence[B], *, cap: int | None, max_tokens: int | None, by_length: bool) -> list[int]:
    """Indices into ``pool`` (oldest first) of the next batch; never empty for a non-empty pool.

    The oldest request (``pool[0]``) is always in the batch, so a request waits behind at
    most as many batches as there were requests ahead of it: nothing is passed over for
    good, however short the requests arriving after it. Its batch-mates are added until the
    next one would take the batch over ``cap`` inputs or ``max_tokens`` padded tokens (the
    longest request's tokens x the inputs); a lone request over a limit runs alone.

    - ``by_length=False``: batch-mates in arrival order (a FIFO prefix of the pool).
    - ``by_length=True``: batch-mates nearest in length to the oldest, so a batch holds texts
      of similar length; the indices come out sorted by length.
    """
    if not pool:
        raise ValueError("pick_batch needs at least one request")
    inputs, longest = pool[0].size, pool[0].tokens

    def fits(item: B) -> bool:
        grown = inputs + item.size
        return (cap is None or grown <= cap) and (max_tokens is None or max(longest, item.tokens) * grown <= max_tokens)

    chosen = [0]
    if not by_length:
        for i in range(1, len(pool)):
            if not fits(pool[i]):
                break
            chosen.append(i)
            inputs, longest = inputs + pool[i].size, max(longest, pool[i].tokens)
        return chosen
    order = sorted(range(len(pool)), key=lambda i: (pool[i].tokens, i))
    lo = hi = order.index(0)
    anchor = pool[0].tokens
    while True:
        sides = [j for j in (lo - 1, hi + 1) if 0 <= j < len(order)]
        sides.sort(key=lambda j: abs(pool[order[j]].tokens - anchor))  # the nearer length first
        taken = next((j for j in sides if fits(pool[order[j]])), None)
        if taken is None:
            break
        item = pool[order[taken]]
        inputs, longest = inputs + item.size, max(longest, item.tokens)
        lo, hi = min(lo, taken), max(hi, taken)
    return order[lo : hi + 1]


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
    - The batch is ``pick_batch`` of the waiting requests: the oldest, plus (with
      ``sort_by_length``) those nearest to it in token count, up to ``max_batch_size``
      inputs and ``max_batch_tokens`` padded tokens. A lone request over either limit runs
      alone (the worker calls the model on it in chunks of ``max_batch_size``).
    - Fairness: the oldest waiting request is always in the next batch, so no request
      waits behind more batches than there were requests ahead of it when it arrived.
    - ``max_batch_size=1`` means no batching: one request per model call.

    Parameters:
        max_batch_size: most inputs in one model call (>= 1).
        max_wait_s: longest the first request waits for company when none is waiting (>= 0).
        max_batch_tokens: most padded tokens (longest input x inputs) in one model call;
            None for no token budget.
        sort_by_length: choose batch-mates by length (False: in arrival order).
        window_size: most inputs waiting in the pool to choose from; None for
            ``4 * max_batch_size`` (more waiting requests stay queued, in order).

    Example:
        >>> BatchPolicy(max_batch_size=16, max_wait_s=0.005).window
        64
    """

    max_batch_size: int = 8
    max_wait_s: float = 0.0
    max_batch_tokens: int | None = None
    sort_by_length: bool = True
    window_size: int | None = None

    def __post_init__(self) -> None:
        _check_cap(self.max_batch_size)
        _check_wait(self.max_wait_s)
        for name in ("max_batch_tokens", "window_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if not isinstance(self.sort_by_length, bool):
            raise TypeError(f"sort_by_length must be True or False, got {self.sort_by_length!r}")

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
            pool, cap=self.max_batch_size, max_tokens=self.max_batch_tokens, by_length=self.sort_by_length
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

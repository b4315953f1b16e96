"""Batching policies: when the worker stops collecting requests and runs a batch.

Both policies share one collection loop (see ``_batcher.Batcher``): block for the first
request, then keep taking requests until the batch is full or the policy's collection
deadline passes. They differ only in how that deadline is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchPolicy", "SeedPagePolicy", "Policy"]


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """Deadline batching: the wait is measured from the first request of the batch.

    Semantics, exactly:

    - Block until a first request arrives; the batch starts with it.
    - Keep taking requests while the batch holds fewer than ``max_batch_size`` inputs and
      less than ``max_wait_s`` has passed *since that first request was taken*. Later
      arrivals never extend the deadline.
    - Requests already queued are taken at once, without waiting.
    - ``max_wait_s=0``: take whatever is already queued (up to the cap) and start at once;
      never wait on an empty queue. While a batch runs, new requests queue up, so under
      load batches still form on their own ("continuous" batching) at no latency cost.
    - ``max_batch_size=1`` means no batching: one request per model call.
    - A single request with more inputs than ``max_batch_size`` forms a batch alone; the
      model is then called with ``batch_size=max_batch_size`` so the cap still bounds
      what runs at once.

    Parameters:
        max_batch_size: most inputs in one batch (>= 1).
        max_wait_s: longest a batch's first request waits for company (>= 0).

    Example:
        >>> BatchPolicy(max_batch_size=16, max_wait_s=0.005)
        BatchPolicy(max_batch_size=16, max_wait_s=0.005)
    """

    max_batch_size: int = 32
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        _check_cap(self.max_batch_size)
        _check_wait(self.max_wait_s)

    @property
    def cap(self) -> int | None:
        """The batch cap in inputs, or None for no cap."""
        return self.max_batch_size

    def collect_deadline(self, first_taken_at: float, last_taken_at: float) -> float:
        """Monotonic time after which no more requests join this batch."""
        return first_taken_at + self.max_wait_s


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

    def collect_deadline(self, first_taken_at: float, last_taken_at: float) -> float:
        """Monotonic time after which no more requests join: reset by every arrival."""
        return last_taken_at + self.max_wait_s


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

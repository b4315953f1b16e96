"""Batching policies: when the batch queue stops waiting for company, and which requests run together.

The batch queue (``batch_queue.BatchQueue``) accepts any ``Policy``: a small protocol of
four members. ``BatchPolicy`` is the production policy (deadline batching with
length-aware formation); the seed page's reset-timer loop, kept for teaching, implements
the same protocol in ``_teaching/seed_policy.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..._options import Flag, Int, Number, check_fields, option
from .formation import Batchable, Pick, pick_batch, plan_calls

__all__ = ["Policy", "BatchPolicy"]


class Policy(Protocol):
    """What the batch queue asks of a batching policy."""

    @property
    def window(self) -> int | None:
        """Most inputs of waiting requests (oldest first) to choose a batch from; None for all.
        Once this many wait, the batch closes without waiting longer."""
        ...

    def collect_deadline(self, first_s: float, last_s: float) -> float:
        """Monotonic time at which the next batch closes. ``first_s``: when the oldest waiting
        request arrived; ``last_s``: when the newest became available to this batch (it
        arrived, or the worker became free, whichever was later)."""
        ...

    def return_wait_s(
        self, answered: int, returned: int, waiting: int, fixed_s: float | None, return_s: float | None
    ) -> float:
        """How long after the worker became free the batch may stay open for the clients of the batch
        it just answered (``answered`` requests) to send again, whatever ``collect_deadline`` says;
        0 for not at all. ``returned``: requests that came since; ``waiting``: inputs that wait;
        ``fixed_s``: the fitted fixed cost of a model call (None before it is fitted); ``return_s``:
        how soon answered batches' clients have lately all sent again (``returns.Returns``)."""
        ...

    def pick(self, waiting: Sequence[Batchable]) -> Pick:
        """The next batch among ``waiting`` (oldest first, all with the same parameters)."""
        ...

    def plan(self, waiting: Sequence[Batchable]) -> list[tuple[int, int]]:
        """A forecast of the model calls that will run all of ``waiting``, each as
        ``(inputs, padded tokens)`` (admission by time prices them with the call cost)."""
        ...


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """Deadline batching with length-aware batch formation.

    Semantics, exactly:

    - A batch closes when ``max_wait_s`` has passed since its oldest waiting request
      *arrived* (later arrivals never extend the deadline), or at once when ``window_size``
      inputs wait. So batching adds at most ``max_wait_s`` to any request's wait, and a
      request that already waited that long (behind a running batch) never waits more,
      but for the one wait below.
    - With ``wait_for_returns`` (the default): when the worker becomes free and fewer
      requests came since than the batch it just answered held, and such clients have
      lately all sent again within one model call's fitted fixed cost (a closed loop, a
      chat, a pipeline: not independent arrivals), the batch stays open for them for at
      most that fixed cost after the worker became free, and closes as soon as as many
      came, or the batch is full. Without it, at 8 clients the batches settle at 4 and 4
      in turn: the 4 answered come back while the other 4 run. A wait for company pays
      only while the company comes faster than a call's fixed cost (two calls would run
      the same inputs in that time), hence both conditions; before the cost is fitted (the
      first few calls) it does not wait. A lone client is never held: it is the one
      answered, and it came back.
    - ``max_wait_s=0``: take whatever is waiting and start (but for the wait for returns);
      never wait on an empty queue. While a batch runs, new requests queue up, so under
      load batches form on their own ("continuous" batching) at no latency cost.
    - The batch is ``pick_batch`` of the waiting requests with the oldest one's parameters.
      With ``sort_by_length`` they are sorted by token count and split into the batches
      that cost least in all, where a model call costs its padded tokens plus
      ``call_overhead_tokens``; the batch that runs is the one holding the oldest request.
      Without, the oldest and those after it in arrival order. Either way at most
      ``max_batch_size`` inputs and ``max_batch_tokens`` padded tokens; a lone request over
      the budget runs alone, and one with more inputs than ``max_batch_size`` runs in
      consecutive batches of that many.
    - Fairness: the oldest waiting request is always in the next batch, so no request
      waits behind more batches than there were requests ahead of it when it arrived.
    - ``max_batch_size=1`` means no batching: one input per model call.

    Parameters:
        max_batch_size: most inputs in one model call (>= 1).
        max_wait_s: longest a request waits for company after it arrives (>= 0).
        max_batch_tokens: most padded tokens (longest input x inputs) in one model call;
            None for no token budget.
        sort_by_length: choose batch-mates by length (False: in arrival order).
        call_overhead_tokens: the price of one more model call, in padded tokens: what
            splitting a batch in two must save in padding to be worth it. Small values
            split at smaller differences of length; large values pack batches full (on a
            GPU, where a call's fixed cost dwarfs its per-token cost, raise it). The
            default, 40, is near what a call's fixed cost is worth in tokens on a small CPU
            with the bundled model (its fitted cost, ``/stats``' ``call_cost``, says so for
            yours); ``make bench`` measures 10 and 160 beside it (``docs/performance.md``).
            It is in the units of ``tokens`` (characters for a plain callable).
        window_size: most inputs of waiting requests to choose from; None for
            ``4 * max_batch_size`` (requests beyond it wait their turn, in order).
        wait_for_returns: after a batch, wait for its clients to send again (see above).

    Example:
        >>> BatchPolicy(max_batch_size=16, max_wait_s=0.005).window
        64
    """

    max_batch_size: int = option(32, Int(), "most inputs in one model call", unit="inputs", hint="1 means no batching")
    max_wait_s: float = option(0.0, Number(of="seconds"), "longest a request waits for company", unit="s")
    max_batch_tokens: int | None = option(
        None, Int(optional=True), "most padded tokens in one model call (None: no budget)", unit="tokens"
    )
    sort_by_length: bool = option(True, Flag(), "choose batch-mates by length (False: arrival order)")
    window_size: int | None = option(
        None, Int(optional=True), "inputs to choose a batch from (None: 4 x max_batch_size)", unit="inputs"
    )
    call_overhead_tokens: float = option(
        40.0, Number(), "price of one more model call, when grouping by length", unit="tokens"
    )
    wait_for_returns: bool = option(
        True, Flag(), "wait (at most a call's fixed cost) for a batch's clients to send again, if they lately did fast"
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def cap(self) -> int | None:
        """The batch cap in inputs."""
        return self.max_batch_size

    @property
    def window(self) -> int | None:
        """Most inputs of waiting requests to choose a batch from."""
        return self.window_size if self.window_size is not None else 4 * self.max_batch_size

    def collect_deadline(self, first_s: float, last_s: float) -> float:
        """``max_wait_s`` after the oldest waiting request arrived."""
        return first_s + self.max_wait_s

    def return_wait_s(
        self, answered: int, returned: int, waiting: int, fixed_s: float | None, return_s: float | None
    ) -> float:
        """The fitted fixed cost while fewer came back than were answered, the batch is not full, and
        returns lately completed within it; else 0."""
        if not self.wait_for_returns or fixed_s is None or return_s is None or return_s > fixed_s:
            return 0.0
        return fixed_s if returned < answered and waiting < self.max_batch_size else 0.0

    def pick(self, waiting: Sequence[Batchable]) -> Pick:
        """The next batch (see ``pick_batch``)."""
        return pick_batch(
            waiting,
            cap=self.max_batch_size,
            max_tokens=self.max_batch_tokens,
            by_length=self.sort_by_length,
            call_tokens=self.call_overhead_tokens,
        )

    def plan(self, waiting: Sequence[Batchable]) -> list[tuple[int, int]]:
        """The calls that will run ``waiting`` (see ``plan_calls``)."""
        return plan_calls(
            waiting, cap=self.max_batch_size, max_tokens=self.max_batch_tokens, by_length=self.sort_by_length
        )

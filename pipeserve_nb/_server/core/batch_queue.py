"""The batch queue: where a request waits, and where the next batch is formed.

A request is *expected* from the moment it is accepted (``expect``) until it has been prepared
(``put``; its inputs and token counts are then known), then *waiting*. Both count in ``depth()``
and in the forecast of what waits (``plan()``; an expected request is priced at the mean tokens of
the requests put lately), but only waiting requests can be batched. Waiting requests are kept in
arrival order. ``next_batch()`` is the only consumer (the
batch loop); its semantics, exactly:

- It blocks while nothing waits.
- The *candidates* are the waiting requests with the same parameters as the oldest, oldest
  first, up to the policy's ``window`` of inputs (requests beyond it wait their turn).
- It waits for more arrivals until the policy's ``collect_deadline`` (given when the oldest
  candidate arrived and when the newest became available), or until the window is full,
  then forms the batch at once: the policy ``pick``s it among the candidates. The deadline
  is moved to the policy's ``return_wait_s`` after the worker became free, if that is later:
  the time given to the clients of the batch just answered to send again (priced with
  ``call_cost``, the batch loop's fit, once it is fitted).
- Requests already answered (expired, their client gone, the server stopping) are dropped
  here and never reach the model; a request whose deadline has passed is expired here
  (``Request.expire``) rather than run, even if its timer has not fired yet.
- A request with more inputs than one batch takes stays at the head, its next inputs
  forming the next batch. Nothing is lost: each input is handed out exactly once.

``closes_at()`` and ``form()`` are the synchronous core, so the semantics can be tested on
a fake clock; ``next_batch()`` only adds the waiting. Create a queue on the event loop that
uses it (asyncio objects bind to one loop) and call it from that loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..observe.stats import clock
from .cost import CallCost
from .policy import Policy
from .request import Batch, Request, Slice
from .returns import Returns

__all__ = ["BatchQueue"]


class BatchQueue:
    """Admitted requests waiting for the model, handed out in batches (see the module docstring)."""

    def __init__(self, policy: Policy, now: Callable[[], float] = clock) -> None:
        self.policy = policy
        self._now = now
        self._waiting: list[Request] = []
        self._expected: list[Request] = []
        self._mean_tokens: float | None = None  # of the requests put lately: the price of an expected one
        self._arrived = asyncio.Event()
        self.worker_free_since = now()
        """When the batch loop last asked for a batch (the worker became free)."""
        self.version = 0
        """Counts changes to what waits (so a forecast of it can be kept until it changes)."""
        self.call_cost: CallCost | None = None
        """The fitted cost of a model call, for the policy's wait for returns (the batch loop that runs this
        queue's batches sets it: it fits the cost)."""
        self._answered = 0  # requests in the batch formed last (answered when the worker is free again)
        self.returns = Returns()
        """How soon the clients of an answered batch have lately all sent again."""

    def expect(self, request: Request) -> None:
        """Count an accepted request that is being prepared (the engine has checked there is room)."""
        request.tokens = max(1, round(self._mean_tokens or 1))
        self.returns.arrived(self._now())
        self._expected.append(request)
        self.version += 1

    def put(self, request: Request) -> None:
        """Add a prepared request: it waits for a batch from now on."""
        if request in self._expected:
            self._expected.remove(request)
        mean = self._mean_tokens
        self._mean_tokens = request.tokens if mean is None else 0.9 * mean + 0.1 * request.tokens
        self._waiting.append(request)
        self.version += 1
        self._arrived.set()

    def depth(self) -> int:
        """Requests accepted and not yet started, prepared or not (a request whose inputs run in slices
        counts until its last)."""
        return len(self._waiting) + len(self._expected)

    def waiting(self) -> list[Request]:
        """The waiting requests, oldest first (do not change the list)."""
        return self._waiting

    def plan(self) -> list[tuple[int, int]]:
        """A forecast of the model calls that will run what waits and what is expected, each as
        ``(inputs, padded tokens)`` (the policy's ``plan``; admission by time prices them with the call cost)."""
        return self.policy.plan(self._waiting + self._expected if self._expected else self._waiting)

    def discard(self, request: Request) -> None:
        """Forget a request that was answered while it waited or was being prepared."""
        for kept in (self._waiting, self._expected):
            if request in kept:
                kept.remove(request)
                self.version += 1

    def drain_nowait(self) -> list[Request]:
        """Remove and return every expected and waiting request (the server stops)."""
        found, self._waiting, self._expected = self._expected + self._waiting, [], []
        self.version += 1
        return found

    async def next_batch(self) -> Batch:
        """The next batch to run; blocks until one can be formed (see the module docstring)."""
        self.freed()
        while True:
            closes = self.closes_at()
            if closes is None:
                await self._arrival(None)
                continue
            delay = closes - self._now()
            if delay > 0:
                await self._arrival(delay)  # an arrival may fill the window or move the deadline
                continue
            return self.form()

    def freed(self) -> None:
        """The worker became free: the batch formed last was answered (``next_batch`` says so first)."""
        self.worker_free_since = self._now()
        self.returns.freed(self.worker_free_since, self._answered)

    def closes_at(self) -> float | None:
        """When the next batch closes (now or earlier: form it at once); None while nothing waits."""
        candidates = self._candidates()
        if not candidates:
            return None
        window = self.policy.window
        if window is not None and sum(r.size for r in candidates) >= window:
            return self._now()
        free = self.worker_free_since
        closes = self.policy.collect_deadline(candidates[0].arrived_s, max(candidates[-1].arrived_s, free))
        hold = self._return_wait_s(sum(r.size for r in candidates))
        return max(closes, free + hold) if hold > 0 else closes

    def _return_wait_s(self, inputs: int) -> float:
        """The policy's wait for the clients of the batch just answered (0 while the cost is not fitted)."""
        cost, free = self.call_cost, self.worker_free_since
        fixed_s = cost.fixed_s if cost is not None and cost.fitted else None
        returned = len(self._expected) + sum(1 for r in self._waiting if r.arrived_s > free)
        return self.policy.return_wait_s(self._answered, returned, inputs, fixed_s, self.returns.seconds)

    def form(self) -> Batch:
        """The next batch among the candidates, as the policy picks it; removes what it takes."""
        candidates = self._candidates()
        if not candidates:
            raise RuntimeError("form() needs a waiting request; await next_batch() instead")
        slices = []
        for index, count in self.policy.pick(candidates):
            request = candidates[index]
            slices.append(Slice(request, request.taken, request.taken + count))
            request.taken += count
        self._waiting = [r for r in self._waiting if r.size > 0]
        self.version += 1
        self._answered = len(slices)
        return Batch(slices, candidates[0].parameters)

    def _candidates(self) -> list[Request]:
        """Drop what was answered or has expired; the oldest's group, up to the window."""
        now = self._now()
        for request in self._waiting:
            if request.deadline_s <= now:
                request.expire()
        left = [r for r in self._waiting if not r.future.done()]
        if len(left) != len(self._waiting):
            self._waiting, self.version = left, self.version + 1
        if not self._waiting:
            return []
        key, window = self._waiting[0].key, self.policy.window
        candidates, inputs = [], 0
        for request in self._waiting:
            if window is not None and inputs >= window:
                break
            if request.key == key:
                candidates.append(request)
                inputs += request.size
        return candidates

    async def _arrival(self, timeout_s: float | None) -> None:
        """Return when a request arrives, or after ``timeout_s``."""
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout_s)

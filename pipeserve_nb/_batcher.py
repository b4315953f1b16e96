"""The request queue and batch collection: where a request waits.

A request is one ``Pending`` record on a bounded ``asyncio.Queue``. ``Batcher.next_batch``
moves records from the queue into a *pool* (blocking for a first record, then collecting
until the policy's deadline, when the pool is empty; taking only what is already queued
otherwise), then lets the policy pick the next batch from the pool (see ``_policy``).
Records not picked stay in the pool for the next batch: none is lost. Records whose
future is already done (the caller timed out or went away) are dropped here and counted,
so a request nobody waits for never reaches the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._policy import Policy

__all__ = ["Pending", "Batcher", "clock"]

clock = time.monotonic
"""The one clock used for every wait, deadline and duration."""


@dataclass(eq=False, slots=True)
class Pending:
    """One request waiting for the worker.

    Parameters:
        inputs: the texts (or other model inputs) of this request, at least one.
        parameters: keyword arguments for the model call (requests batch only with equal ones).
        future: resolved with the list of outputs, or failed with a ``RequestFailed``.
        enqueued_at: ``clock()`` when the request was queued.
        deadline: ``clock()`` after which the request is answered with a timeout.
        tokens: tokens of its longest input (characters where the model has no tokenizer).
    """

    inputs: list[Any]
    parameters: Mapping[str, Any]
    future: asyncio.Future[Any]
    enqueued_at: float
    deadline: float
    tokens: int = 0
    taken_at: float = field(default=0.0)

    @property
    def size(self) -> int:
        """How many inputs this request adds to a batch."""
        return len(self.inputs)


class Batcher:
    """A bounded queue of ``Pending`` requests that hands them out in batches.

    Create it on the event loop that will use it (asyncio queues bind to one loop).
    """

    def __init__(self, policy: Policy, max_queue: int) -> None:
        self.policy = policy
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=max_queue)
        self._pool: list[Pending] = []  # taken off the queue, not yet run; oldest first
        self.dropped_abandoned = 0

    def put_nowait(self, pending: Pending) -> None:
        """Queue a request; raises ``asyncio.QueueFull`` when the queue is full."""
        self._queue.put_nowait(pending)

    def depth(self) -> int:
        """Requests waiting for the model: queued or in the pool."""
        return self._queue.qsize() + len(self._pool)

    def drain_nowait(self) -> list[Pending]:
        """Remove and return every waiting request (used when the server stops)."""
        items, self._pool = self._pool, []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def next_batch(self) -> list[Pending]:
        """The next batch: at least one request whose future is not done, as the policy picks.

        Blocks while nothing waits. A batch holds at most ``policy.cap`` inputs unless its
        oldest request alone is larger.
        """
        while True:
            if not self._pool:
                self._pool.append(await self._take_first())
            await self._top_up()
            self._drop_abandoned()
            if self._pool:
                break
        picked = self.policy.pick(self._pool)  # in the order the batch runs
        batch = [self._pool[i] for i in picked]
        chosen = set(picked)
        self._pool = [p for i, p in enumerate(self._pool) if i not in chosen]
        return batch

    async def _top_up(self) -> None:
        """Take queued requests into the pool until it holds ``policy.window`` inputs, waiting
        for more only until the policy's collection deadline."""
        limit = self.policy.window
        size = sum(p.size for p in self._pool)
        first_taken_at, last_taken_at = self._pool[0].taken_at, self._pool[-1].taken_at
        while limit is None or size < limit:
            item = self._take_nowait()
            if item is None:
                remaining = self.policy.collect_deadline(first_taken_at, last_taken_at) - clock()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                item.taken_at = clock()
                if item.future.done():
                    self.dropped_abandoned += 1
                    last_taken_at = item.taken_at
                    continue
            last_taken_at = item.taken_at
            self._pool.append(item)
            size += item.size

    def _drop_abandoned(self) -> None:
        live = [p for p in self._pool if not p.future.done()]
        self.dropped_abandoned += len(self._pool) - len(live)
        self._pool = live

    async def _take_first(self) -> Pending:
        while True:
            item = await self._queue.get()
            item.taken_at = clock()
            if not item.future.done():
                return item
            self.dropped_abandoned += 1

    def _take_nowait(self) -> Pending | None:
        """The next live queued request, or None if none is queued right now."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            item.taken_at = clock()
            if not item.future.done():
                return item
            self.dropped_abandoned += 1
        return None

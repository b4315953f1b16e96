"""The request queue and the batch-collection loop: where a request waits.

A request is one ``Pending`` record on a bounded ``asyncio.Queue``. ``Batcher.next_batch``
blocks for the first record, then keeps taking records until the policy says stop (see
``_policy``). Every record taken is either returned in a batch or, when it would
overflow the cap, held back as the first record of the next batch: none is lost.
Records whose future is already done (the caller timed out or went away) are dropped
here and counted, so a request nobody waits for never reaches the model.
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
    """

    inputs: list[Any]
    parameters: Mapping[str, Any]
    future: asyncio.Future[Any]
    enqueued_at: float
    deadline: float
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
        self._held: Pending | None = None
        self.dropped_abandoned = 0

    def put_nowait(self, pending: Pending) -> None:
        """Queue a request; raises ``asyncio.QueueFull`` when the queue is full."""
        self._queue.put_nowait(pending)

    def depth(self) -> int:
        """Requests waiting for a batch (the queue plus one held back, if any)."""
        return self._queue.qsize() + (self._held is not None)

    def drain_nowait(self) -> list[Pending]:
        """Remove and return every waiting request (used when the server stops)."""
        items = [self._held] if self._held is not None else []
        self._held = None
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def next_batch(self) -> list[Pending]:
        """Block for the first request, then collect more until the policy says stop.

        Returns at least one request whose future is not done. The batch holds at most
        ``policy.cap`` inputs unless its first request alone is larger.
        """
        cap = self.policy.cap
        first = await self._take_first()
        batch, size = [first], first.size
        first_taken_at = last_taken_at = first.taken_at
        while cap is None or size < cap:
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
            if cap is not None and size + item.size > cap:
                self._held = item
                break
            batch.append(item)
            size += item.size
        return batch

    async def _take_first(self) -> Pending:
        while True:
            if self._held is not None:
                item, self._held = self._held, None
            else:
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

"""The batch loop: drains the batch queue into the inference thread, one batch at a time.

``BatchLoop.run()``, exactly:

1. ``await queue.next_batch()`` (where requests wait; see ``batch_queue``);
2. mark each request started the first time any of its inputs runs, and record its wait;
3. hand the batch to the inference thread (``worker.run_batch`` there) and await the
   outcomes: the event loop stays free while the model runs;
4. resolve every slice: its outputs go to its request, which is answered with its
   ``Result`` once its last slice ran; a slice that failed answers its request with the
   error the worker chose (``InferenceFailed``, or ``InvalidInput`` for parameter values
   the model rejected). A request answered meanwhile (its deadline, its client gone) is
   left as it is.

Every request of the running batch is answered also when the loop ends abnormally: with
``WorkerDied`` when the inference thread died (then ``run()`` raises ``WorkerCrashed``), with
``ServerStopping`` when the loop is cancelled. Requests still queued are the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from .._models.spec import BatchFn
from .batch_queue import BatchQueue
from .request import Batch, clock, stopping, worker_died
from .stats import Stats
from .worker import InferenceThread, WorkerCrashed, run_batch

__all__ = ["BatchLoop"]


class BatchLoop:
    """Runs the batches of one ``BatchQueue`` with one model on one ``InferenceThread``."""

    def __init__(self, queue: BatchQueue, model: BatchFn, worker: InferenceThread, stats: Stats) -> None:
        self.queue = queue
        self.model = model
        self.worker = worker
        self.stats = stats
        self.running: Batch | None = None
        """The batch in the model right now, if any."""

    async def run(self) -> None:
        """Run batches until cancelled or until the inference thread dies (see the module docstring)."""
        try:
            while True:
                batch = await self.queue.next_batch()
                self.running = batch
                await self._run(batch)
                self.running = None
        except WorkerCrashed as crash:
            self._fail_running(partial(worker_died, crash.__cause__ or crash))
            raise
        except asyncio.CancelledError:
            self._fail_running(stopping)
            raise

    async def _run(self, batch: Batch) -> None:
        started = clock()
        waits = []
        for piece in batch.slices:
            if piece.request.started_s is None:
                piece.request.started_s = started
                waits.append(started - piece.request.arrived_s)
        job = partial(run_batch, self.model, [s.inputs for s in batch.slices], batch.parameters)
        outcomes = await asyncio.wrap_future(self.worker.submit(job))
        inference_s = clock() - started
        self.stats.record_batch(batch.size, inference_s, waits)
        for piece, outcome in zip(batch.slices, outcomes, strict=True):
            if outcome.outputs is not None:
                piece.request.ran(outcome.outputs, batch.size, inference_s)
            else:
                piece.request.fail(outcome.error or RuntimeError("the worker returned no outcome"))

    def _fail_running(self, error: Callable[[], BaseException]) -> None:
        if self.running is not None:
            for piece in self.running.slices:
                piece.request.fail(error())
            self.running = None

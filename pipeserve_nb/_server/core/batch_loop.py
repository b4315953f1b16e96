"""The batch loop: drains the batch queue into the inference thread, one batch at a time.

``BatchLoop.run()``, exactly:

1. ``await queue.next_batch()`` (where requests wait; see ``batch_queue``);
2. mark each request started the first time any of its inputs runs, and record its wait;
3. hand the batch to the inference thread (``worker.run_batch`` there) and await the
   outcomes: the event loop stays free while the model runs. A request that was queued
   unprepared (the engine's fast lane: one input, arriving at an idle server) is prepared
   there first, at the start of its own call (``prepare_and_run``);
4. resolve every slice: its outputs go to its request, which is answered with its
   ``Result`` once its last slice ran; a slice that failed answers its request with the
   error the worker chose (``InferenceFailed``, or ``InvalidInput`` for parameter values
   the model rejected). A request answered meanwhile (its deadline, its client gone) is
   left as it is.

Each call is also an observation of what a call costs (``cost``, fitted online), from
which ``start_wait_s()`` predicts when a request arriving now would start (admission by
time) and ``predicted_s`` says how long the running call should take (the health check).

Every request of the running batch is answered also when the loop ends abnormally: with
``WorkerDied`` when the inference thread died (then ``run()`` raises ``WorkerCrashed``), with
``ServerStopping`` when the loop is cancelled. Requests still queued are the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ..._exceptions import RequestFailed
from ..._models.runner import Runner
from ..observe.stats import Stats, clock
from .batch_queue import BatchQueue
from .cost import CallCost, Forecast, WaitCalibration, backlog_s
from .inference import InferenceThread, Outcome, WorkerCrashed, run_batch
from .preparation import Prepare, prepare_one
from .request import Batch, stopping, worker_died

__all__ = ["BatchLoop", "prepare_and_run"]


class BatchLoop:
    """Runs the batches of one ``BatchQueue`` with one model on one ``InferenceThread``."""

    def __init__(
        self,
        queue: BatchQueue,
        runner: Runner,
        worker: InferenceThread,
        stats: Stats,
        bound_s: float | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.prepare = prepare
        self.worker = worker
        self.stats = stats
        self.cost = CallCost()
        queue.call_cost = self.cost  # what the policy's wait for returns is priced with, fitted here
        self.calibration = WaitCalibration(bound_s)
        self._backlog: tuple[tuple[int, int], float, int] = ((-1, -1), 0.0, 0)  # (version, fits): seconds, calls
        self.running: Batch | None = None
        """The batch in the model right now, if any."""
        self.predicted_s: float | None = None
        """How long the running call is predicted to take (None before the first call's cost is known)."""

    def start_wait_s(self) -> Forecast | None:
        """When a request arriving now would start: the rest of the running call, then the calls
        that will run what waits (``BatchQueue.plan``), priced by the call cost (``raw_s``), times how
        far real waits ran past such forecasts (``wait_s``); None before the cost is fitted."""
        if not self.cost.fitted:
            return None
        rest = 0.0
        if self.running is not None and self.predicted_s is not None:
            rest = max(self.predicted_s - (self.worker.busy_for_s() or 0.0), 0.0)
        key = (self.queue.version, self.cost.calls)
        if self._backlog[0] != key:  # under overload many refusals ask while nothing changed
            calls = self.queue.plan()
            self._backlog = (key, backlog_s(self.cost, calls) or 0.0, len(calls))
        raw = rest + self._backlog[1]
        return Forecast(raw, raw * self.calibration.factor, self._backlog[2])

    def running_for_s(self) -> float | None:
        """How long the running call has run (the inference thread's clock); None while the model is idle."""
        return self.worker.busy_for_s() if self.running is not None else None

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
        self.predicted_s = self.cost.predict(batch.padded_tokens)
        waits = []
        for piece in batch.slices:
            request = piece.request
            if request.started_s is None:
                request.started_s = started
                waits.append(started - request.arrived_s)
                if request.forecast is not None:
                    self.calibration.observe(request.forecast, waits[-1])
        if all(s.request.ready for s in batch.slices) or self.prepare is None:
            call = partial(_run_prepared, self.runner, [s.inputs for s in batch.slices], batch.parameters)
        else:
            call = partial(prepare_and_run, self.prepare, self.runner, batch)
        submitted = clock()
        outcomes, prepare_s, began = await asyncio.wrap_future(self.worker.submit(partial(_timed, call)))
        # the model's time: not the preparing, nor a wait behind another model's call on a shared device thread
        inference_s = clock() - started - prepare_s - (began - submitted)
        if any(s.request.ready for s in batch.slices):  # a call ran (not only refusals found in preparing)
            self.cost.observe(batch.padded_tokens, inference_s)
            self.stats.record_batch(batch.size, inference_s, waits, batch.real_tokens, batch.padded_tokens)
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


def _run_prepared(
    runner: Runner, inputs: list[list[Any]], parameters: Mapping[str, Any]
) -> tuple[list[Outcome], float]:
    """``run_batch`` of a batch with nothing left to prepare (no time spent preparing)."""
    return run_batch(runner, inputs, parameters), 0.0


def _timed(call: Callable[[], tuple[list[Outcome], float]]) -> tuple[list[Outcome], float, float]:
    """On the inference thread: ``call``'s outcomes, its seconds preparing, and when it began (``clock``)."""
    began = clock()
    outcomes, prepare_s = call()
    return outcomes, prepare_s, began


def prepare_and_run(prepare: Prepare, runner: Runner, batch: Batch) -> tuple[list[Outcome], float]:
    """On the inference thread: prepare the batch's requests that were queued unprepared, then run the
    batch (``run_batch``); a request its preparation refuses gets that error and is left out of the call.
    Returns the outcomes and the seconds spent preparing (not the model's: the caller leaves them out of
    the call's time)."""
    started = clock()
    refused: dict[int, RequestFailed] = {}
    for index, piece in enumerate(batch.slices):
        request = piece.request
        if not request.ready:
            prepared = prepare_one(prepare, request)
            if isinstance(prepared, RequestFailed):
                refused[index] = prepared
            else:
                request.prepared(*prepared)
    prepare_s = clock() - started
    kept = [s for i, s in enumerate(batch.slices) if i not in refused]
    ran = iter(run_batch(runner, [s.inputs for s in kept], batch.parameters) if kept else [])
    return [Outcome(error=refused[i]) if i in refused else next(ran) for i in range(len(batch.slices))], prepare_s

"""The engine: the queue, the batch loop and the worker thread, wired together.

Data flows one way: ``submit()`` (called by a web handler) puts a ``Pending`` request on
the ``Batcher``; the batch loop takes batches off it, hands each to the
``InferenceThread`` and resolves every request's future, on success and on failure;
``submit()`` returns the result or raises a ``RequestFailed`` subclass. The engine knows
nothing of HTTP.

Lifecycle: CREATED -> (load) -> RUNNING -> DRAINING -> STOPPED, or RUNNING -> FAILED when
the batch loop dies; in FAILED every request gets ``WorkerDied`` at once (no restart).
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._batcher import Batcher, Pending, clock
from ._config import ServerConfig
from ._exceptions import (
    InferenceFailed,
    Overloaded,
    RequestFailed,
    RequestTimeout,
    ServerStopping,
    WorkerDied,
)
from ._models import BatchFn, LoadedModel, ModelSpec, load
from ._policy import Policy
from ._stats import Stats
from ._worker import InferenceThread, Outcome, run_batch

__all__ = ["Engine", "EngineState", "Result"]


def _stopped() -> RequestFailed:
    return ServerStopping("the server stopped before this request was answered")


class EngineState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    """A request's outputs and how it was served."""

    outputs: list[Any]
    queue_wait_s: float
    batch_size: int
    inference_s: float


class Engine:
    """One model copy, one queue, one worker thread.

    ``load()`` may be called from any thread but the server's loop, to load the model
    before the server starts (so a load error raises in the caller); ``start()``,
    ``submit()``, ``drain()`` and ``close()`` run on the server's event loop.
    """

    def __init__(self, spec: ModelSpec, policy: Policy, config: ServerConfig) -> None:
        self.spec = spec
        self.policy = policy
        self.config = config
        self.stats = Stats()
        self.state = EngineState.CREATED
        self.failure: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.model_name = spec.describe()
        self._model: LoadedModel | None = None
        self._thread: InferenceThread | None = None
        self._batcher: Batcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: list[Pending] = []
        self._inflight = 0

    # -- lifecycle ---------------------------------------------------------------------

    def load(self) -> None:
        """Load the model on the inference thread and wait for it (blocking)."""
        if self._model is None:
            self._set_model(self._load_on_worker().result())

    async def start(self) -> None:
        """Load the model if needed, then start the batch loop on the running loop."""
        if self.state is not EngineState.CREATED:
            raise RuntimeError(f"an engine starts once; this one is {self.state.value}")
        self.loop = asyncio.get_running_loop()
        model = self._model
        if model is None:
            try:
                model = await asyncio.wrap_future(self._load_on_worker())
            except BaseException as exc:
                self.failure = exc
                self.state = EngineState.FAILED
                self.release()
                raise
            self._set_model(model)
        self._batcher = Batcher(self.policy, self.config.max_queue)
        batch_loop = self._serve_batches(self._batcher, model.run, self._inference_thread())
        self._task = asyncio.create_task(batch_loop, name="pipeserve-batch-loop")
        self._task.add_done_callback(self._on_batch_loop_exit)
        self.state = EngineState.RUNNING

    async def drain(self, timeout_s: float) -> None:
        """Take no new requests; let queued and running ones finish for up to ``timeout_s``;
        answer whatever is left with ``ServerStopping``."""
        if self.state is EngineState.RUNNING:
            self.state = EngineState.DRAINING
        deadline = clock() + timeout_s
        while self._inflight and clock() < deadline and self.state is EngineState.DRAINING:
            await asyncio.sleep(0.01)
        self._fail_waiting(_stopped)

    async def close(self) -> None:
        """Drain, stop the batch loop and the worker thread, and drop the model."""
        if self.state in (EngineState.RUNNING, EngineState.DRAINING):
            await self.drain(self.config.drain_timeout_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail_waiting(_stopped)
        self.release()
        if self.state is not EngineState.FAILED:
            self.state = EngineState.STOPPED

    def release(self, timeout_s: float = 0.0) -> bool:
        """Tell the worker thread to end after its current batch, wait up to ``timeout_s``
        for it, and drop the model. True if the thread has ended. Safe to call again."""
        self._model = None
        return self._thread is None or self._thread.close(timeout_s)

    # -- requests ----------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while the model is loaded, the batch loop runs and the worker thread lives."""
        return (
            self.state is EngineState.RUNNING
            and self._task is not None
            and not self._task.done()
            and self._thread is not None
            and self._thread.is_alive()
        )

    def dropped_before_inference(self) -> int:
        """Requests dropped unrun: expired while queued, or abandoned by their caller."""
        abandoned = self._batcher.dropped_abandoned if self._batcher is not None else 0
        return self.stats.dropped_expired + abandoned

    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return self._batcher.depth() if self._batcher is not None else 0

    async def submit(self, inputs: list[Any], parameters: Mapping[str, Any]) -> Result:
        """Queue one request and wait for its result.

        Raises ``Overloaded`` at once when the queue is full, ``RequestTimeout`` at the
        request's deadline, ``InferenceFailed`` if the model raised for these inputs,
        ``ServerStopping`` or ``WorkerDied`` when the engine cannot serve.
        """
        if self.state is not EngineState.RUNNING or self._batcher is None:
            raise self._unavailable()
        now = clock()
        timeout_s = self.config.timeout_s
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        try:
            self._batcher.put_nowait(Pending(inputs, parameters, future, now, now + timeout_s))
        except asyncio.QueueFull:
            raise Overloaded(
                f"the queue is full ({self.config.max_queue} requests waiting); retry later",
                retry_after_s=self._retry_after_s(),
            ) from None
        self._inflight += 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"no answer within timeout_s={timeout_s:g}") from None
        finally:
            self._inflight -= 1
            if not future.done():
                future.cancel()  # timed out or the caller went away: never run it

    # -- the batch loop ----------------------------------------------------------------

    async def _serve_batches(self, batcher: Batcher, run: BatchFn, thread: InferenceThread) -> None:
        while True:
            batch = await batcher.next_batch()
            self._running = self._live(batch)
            if not self._running:
                continue
            requests = [(p.inputs, p.parameters) for p in self._running]
            started = clock()
            job = partial(run_batch, run, requests, self.policy.cap)
            outcomes = await asyncio.wrap_future(thread.submit(job))
            inference_s = clock() - started
            size = sum(p.size for p in self._running)
            self.stats.record_batch(size, inference_s, (started - p.enqueued_at for p in self._running))
            for pending, outcome in zip(self._running, outcomes, strict=True):
                self._resolve(pending, outcome, started, size, inference_s)
            self._running = []

    def _live(self, batch: list[Pending]) -> list[Pending]:
        """Drop requests whose deadline passed while they waited: they never run."""
        now, live = clock(), []
        for pending in batch:
            if pending.future.done():
                continue
            if pending.deadline <= now:
                self.stats.dropped_expired += 1
                pending.future.set_exception(
                    RequestTimeout(f"expired in the queue after timeout_s={self.config.timeout_s:g}")
                )
            else:
                live.append(pending)
        return live

    def _resolve(self, pending: Pending, outcome: Outcome, started: float, size: int, inference_s: float) -> None:
        if pending.future.done():
            return
        if outcome.error is None and outcome.outputs is not None:
            pending.future.set_result(Result(outcome.outputs, started - pending.enqueued_at, size, inference_s))
        else:
            error = outcome.error
            failed = InferenceFailed(f"the model raised {type(error).__name__}: {error}")
            failed.__cause__ = error
            pending.future.set_exception(failed)

    def _on_batch_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self.failure = task.exception()
        self.state = EngineState.FAILED
        self._fail_waiting(self._unavailable)

    # -- helpers -----------------------------------------------------------------------

    def _load_on_worker(self) -> Future[LoadedModel]:
        """Load the model on the inference thread, the only thread that will run it."""
        return self._inference_thread().submit(partial(load, self.spec))

    def _set_model(self, model: LoadedModel) -> None:
        self._model = model
        self.model_name = model.name

    def _inference_thread(self) -> InferenceThread:
        if self._thread is None:
            self._thread = InferenceThread()
        return self._thread

    def _fail_waiting(self, error: Callable[[], RequestFailed]) -> None:
        """Fail every queued or running request with a fresh ``error()``."""
        waiting = list(self._running)
        if self._batcher is not None:
            waiting += self._batcher.drain_nowait()
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(error())

    def _unavailable(self) -> RequestFailed:
        if self.state is EngineState.FAILED:
            cause = f"{type(self.failure).__name__}: {self.failure}" if self.failure else "unknown cause"
            return WorkerDied(f"the inference worker died ({cause}); restart the server")
        if self.state is EngineState.CREATED:
            return ServerStopping("the server has not started yet")
        return ServerStopping("the server is stopping and takes no new requests")

    def _retry_after_s(self) -> float:
        """Rough time to work off the current queue, from recent batch timings."""
        stats = self.stats
        if not stats.inference_s or not stats.batches:
            return 1.0
        per_batch_s = sum(stats.inference_s) / len(stats.inference_s)
        mean_batch = sum(k * v for k, v in stats.batch_sizes.items()) / stats.batches
        return max(1.0, math.ceil(self.queue_depth() / max(mean_batch, 1.0) * per_batch_s))

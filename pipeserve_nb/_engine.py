"""The engine: the queue, the batch loop and the worker thread, wired together.

Data flows one way: ``submit()`` (called by a web handler) puts a ``Pending`` request on
the ``Batcher``; the batch loop takes batches off it, hands each to the
``InferenceThread`` and resolves every request's future, on success and on failure;
``submit()`` returns the result or raises a ``RequestFailed`` subclass. The engine knows
nothing of HTTP.

Before a request is queued, ``submit()`` checks what can be checked without the model:
parameter names the model does not take (``InvalidInput``) and inputs with more tokens
than the model accepts (``TooLarge``), so such requests never cost a batch.

Lifecycle: CREATED -> (load) -> RUNNING -> DRAINING -> STOPPED, or RUNNING -> FAILED when
the batch loop or the inference thread dies; in FAILED every queued and new request gets
``WorkerDied`` at once and ``failure`` holds the cause. Nothing restarts by itself: a
model that killed its thread once is likely to do it again, so the owner decides
(``stop()`` and ``serve()`` again).
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
    InvalidInput,
    Overloaded,
    RequestFailed,
    RequestTimeout,
    ServerStopping,
    TooLarge,
    WorkerDied,
)
from ._models import BatchFn, LoadedModel, ModelSpec, load
from ._policy import Policy
from ._stats import Stats
from ._worker import InferenceThread, Outcome, WorkerCrashed, run_batch

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
        self._torch_threads_before: int | None = None

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
        for it, drop the model, and give PyTorch back the thread count it had. True if the
        thread has ended. Safe to call again."""
        self._model = None
        if self._torch_threads_before is not None:
            import torch

            torch.set_num_threads(self._torch_threads_before)
            self._torch_threads_before = None
        return self._thread is None or self._thread.close(timeout_s)

    # -- requests ----------------------------------------------------------------------

    @property
    def model(self) -> LoadedModel | None:
        """The loaded model (None before ``load()`` and after ``close()``)."""
        return self._model

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

    def submit(self, inputs: list[Any], parameters: Mapping[str, Any]) -> asyncio.Future[Result]:
        """Queue one request; return the future of its ``Result`` (call on the server's loop).

        Raises ``InvalidInput`` or ``TooLarge`` for a request the model would refuse,
        ``Overloaded`` at once when the queue is full, ``ServerStopping`` or ``WorkerDied``
        when the engine cannot serve. The future fails with ``RequestTimeout`` at the
        request's deadline, ``InferenceFailed`` or ``InvalidInput`` if the model raised for
        these inputs or parameters, ``ServerStopping`` or ``WorkerDied`` if the engine
        stops first. Cancel it when the caller goes away: a cancelled request never runs
        (if it is still queued) and is counted.
        """
        if self.state is not EngineState.RUNNING or self._batcher is None or self._model is None:
            raise self._unavailable()
        inputs, tokens = self._prepare(self._model, inputs, parameters)
        loop = asyncio.get_running_loop()
        now = clock()
        timeout_s = self.config.timeout_s
        future: asyncio.Future[Result] = loop.create_future()
        try:
            self._batcher.put_nowait(Pending(inputs, parameters, future, now, now + timeout_s, tokens))
        except asyncio.QueueFull:
            raise Overloaded(
                f"the queue is full ({self.config.max_queue} requests waiting); retry later",
                retry_after_s=self._retry_after_s(),
            ) from None
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        self._inflight += 1
        future.add_done_callback(partial(self._settled, timer))
        return future

    def _settled(self, timer: asyncio.TimerHandle, future: asyncio.Future[Result]) -> None:
        self._inflight -= 1
        timer.cancel()
        if future.cancelled():
            self.stats.cancelled_by_caller += 1

    def _prepare(self, model: LoadedModel, inputs: list[Any], parameters: Mapping[str, Any]) -> tuple[list[Any], int]:
        """Refuse parameters the model does not take and inputs longer than it accepts;
        return the inputs as the worker will pass them to the model (tokenized, where the
        model takes tokens) and the longest input's tokens (characters without a tokenizer)."""
        names = model.parameter_names
        if names is not None and not set(parameters) <= names:
            unknown = sorted(set(parameters) - names)
            accepted = ", ".join(sorted(names)) or "none"
            raise InvalidInput(f"unknown parameter(s) {unknown} for this model; it takes: {accepted}")
        if model.prepare is None:
            return inputs, max(len(x) if isinstance(x, str) else 1 for x in inputs)
        prepared, counts = model.prepare(inputs)
        limit = model.max_tokens
        if limit is None:
            return prepared, max(counts)
        if not parameters.get("truncation"):
            for i, n in enumerate(counts):
                if n > limit:
                    hint = (
                        ' or send "parameters": {"truncation": true}' if names is None or "truncation" in names else ""
                    )
                    where = "the input" if len(inputs) == 1 else f"input {i}"
                    raise TooLarge(f"{where} has {n} tokens; this model takes at most {limit}: shorten it{hint}")
        return prepared, min(max(counts), limit)

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
            outcomes = await asyncio.wrap_future(thread.submit(job))  # WorkerCrashed ends the loop
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
            return
        kind = type(outcome.error).__name__
        failed: RequestFailed
        if outcome.rejected_parameters:
            names = sorted(pending.parameters)
            failed = InvalidInput(f"the model rejected the parameter value(s) of {names} ({kind}); they run without")
        else:
            failed = InferenceFailed(f"the model raised {kind} for this request's inputs")
        failed.__cause__ = outcome.error
        pending.future.set_exception(failed)

    def _on_batch_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self.failure = error.__cause__ if isinstance(error, WorkerCrashed) and error.__cause__ else error
        self.state = EngineState.FAILED
        self._fail_waiting(self._unavailable)

    # -- helpers -----------------------------------------------------------------------

    def _load_on_worker(self) -> Future[LoadedModel]:
        """Load the model on the inference thread, the only thread that will run it."""
        return self._inference_thread().submit(self._load)

    def _load(self) -> LoadedModel:
        threads = self.config.torch_threads
        if threads is not None:
            import torch

            self._torch_threads_before = torch.get_num_threads()
            torch.set_num_threads(threads)
        return load(self.spec)

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
            died = WorkerDied(
                f"the inference worker died ({type(self.failure).__name__}); it is not restarted: "
                "stop the server and start it again"
            )
            died.__cause__ = self.failure
            return died
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


def _expire(future: asyncio.Future[Result], timeout_s: float) -> None:
    """The request's deadline passed: answer it with a timeout (if queued, it never runs)."""
    if not future.done():
        future.set_exception(RequestTimeout(f"no answer within timeout_s={timeout_s:g}"))

"""The inference worker: the one thread that owns the model and runs every batch.

The event loop never runs the model. It hands a whole batch to this thread
(``InferenceThread.submit``) and awaits the returned future, so health checks and new
requests are served while a batch runs (PyTorch releases the GIL inside its ops).

``run_batch`` is what the thread executes for a batch (one model call through the runner, its
inputs sharing one set of parameters, then each output encoded): if the call raises, each
request's inputs are run alone, so only the requests that fail alone get an error and their
batch-mates still get results. A request's error is what the runner raised when it is a
``RequestFailed`` (``InvalidInput``: the runner refused the request, e.g. a parameter value),
else ``InferenceFailed``, with the exception as its cause. The model is never called again to
find out why: that would be hidden work on the one inference thread. An output that cannot be
encoded fails its own request only.

An ``Exception`` from the model fails its job only. Anything else (``SystemExit``,
``KeyboardInterrupt``, other ``BaseException``) ends the thread: that job and every job
still queued fail with ``WorkerCrashed`` (its ``__cause__`` is the original), and no
further job is accepted. The thread is not restarted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from ..._exceptions import InferenceFailed, RequestFailed
from ..._models.runner import Runner

__all__ = ["InferenceThread", "Outcome", "WorkerCrashed", "run_batch", "set_torch_threads"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request's inputs in a batch got: their outputs, or the error to answer with
    (its ``__cause__`` is what the model raised)."""

    outputs: list[Any] | None = None
    error: RequestFailed | None = None


class WorkerCrashed(RuntimeError):
    """The inference thread ended because the model raised a non-``Exception``."""


class InferenceThread:
    """A single daemon thread that runs submitted jobs in order.

    It is a daemon so a notebook kernel can exit while a long batch is running; jobs
    that raise resolve their future with the exception and the thread keeps going.
    """

    def __init__(self, name: str = "pipeserve-inference") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._closing = False
        self.crash: WorkerCrashed | None = None
        self.ended: Future[None] = Future()
        """Done when the thread has ended (await it with ``asyncio.wrap_future``); it cannot be cancelled."""
        self.ended.set_running_or_notify_cancel()
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` on the thread; the future holds its result or exception."""
        if self.crash is not None:
            raise self.crash
        if self._closing or not self._thread.is_alive():
            raise RuntimeError("the inference thread has stopped")
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future

    def others_waiting(self) -> bool:
        """Whether jobs wait behind the one running now (a job that runs in parts yields to them: ``StepLoop``)."""
        return not self._jobs.empty()

    def is_alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    def busy_for_s(self) -> float | None:
        """How long the job running now has run (None while idle)."""
        since = self._busy_since
        return None if since is None else time.monotonic() - since

    def close(self, timeout_s: float) -> bool:
        """Let queued jobs finish, then end the thread; wait up to ``timeout_s`` for that.

        Returns True if the thread has ended. A batch still running past the wait keeps
        the (daemon) thread alive until it returns; nothing can interrupt PyTorch.
        """
        if self._thread.is_alive() and not self._closing:
            self._closing = True
            self._jobs.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            self._loop()
        finally:
            self.ended.set_result(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            self._busy_since = time.monotonic()
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)
            except BaseException as exc:
                self._die(exc, future)
                return
            finally:
                self._busy_since = None
            del fn, future, job  # drop references to inputs and outputs between batches

    def _die(self, cause: BaseException, future: Future[Any]) -> None:
        crash = WorkerCrashed(f"the inference thread died: the model raised {type(cause).__name__}")
        crash.__cause__ = cause
        self.crash = crash
        future.set_exception(crash)
        while True:  # fail what is still queued; submit() refuses from now on
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job[1].set_running_or_notify_cancel():
                job[1].set_exception(crash)


def run_batch(runner: Runner, inputs: Sequence[list[Any]], parameters: Mapping[str, Any]) -> list[Outcome]:
    """Run one batch: ``inputs`` holds each request's inputs, all with ``parameters``; one
    model call for all of them, then, only if it raises, one call per request."""
    flat = [x for part in inputs for x in part]
    try:
        outputs = _called(runner, flat, parameters)
    except Exception as exc:
        if len(inputs) == 1:
            return [_failed(exc)]
        return [_run_alone(runner, part, parameters) for part in inputs]
    outcomes, start = [], 0
    for part in inputs:
        outcomes.append(_encoded(runner, outputs[start : start + len(part)]))
        start += len(part)
    return outcomes


def _called(runner: Runner, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
    outputs = runner.run(inputs, parameters)
    if len(outputs) != len(inputs):
        raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(inputs)} inputs")
    return outputs


def _run_alone(runner: Runner, inputs: list[Any], parameters: Mapping[str, Any]) -> Outcome:
    try:
        outputs = _called(runner, inputs, parameters)
    except Exception as exc:
        return _failed(exc)
    return _encoded(runner, outputs)


def _encoded(runner: Runner, outputs: list[Any]) -> Outcome:
    try:
        return Outcome(outputs=[runner.encode(output) for output in outputs])
    except Exception as exc:
        error = InferenceFailed(f"the model's output could not be encoded ({type(exc).__name__})")
        error.__cause__ = exc
        return Outcome(error=error)


def _failed(cause: Exception) -> Outcome:
    """The answer for inputs that failed on their own with ``cause``: the runner's own refusal
    (a ``RequestFailed``), else ``InferenceFailed``."""
    if isinstance(cause, RequestFailed):
        return Outcome(error=cause)
    error = InferenceFailed(f"the model raised {type(cause).__name__} for this request's inputs")
    error.__cause__ = cause
    return Outcome(error=error)


def set_torch_threads(threads: int) -> int:
    """Set PyTorch's threads per op (process-wide); return the count it had."""
    import torch

    before = int(torch.get_num_threads())
    torch.set_num_threads(threads)
    return before

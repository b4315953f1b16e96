"""The inference worker: the one thread that owns the model and runs every batch.

The event loop never runs the model. It hands a whole batch to this thread
(``InferenceThread.submit``) and awaits the returned future, so health checks and new
requests are served while a batch runs (PyTorch releases the GIL inside its ops).

``run_batch`` is what the thread executes for a batch: it groups requests by their
parameters, calls the model on each group in chunks of at most the batch cap, and, if
a call raises, retries that group's requests one at a time, so only the requests that
fail alone get an error and their batch-mates still get results. A request with
parameters that fails alone but runs without them is marked as rejected parameters (the
caller's mistake, not the model's).

An ``Exception`` from the model fails its job only. Anything else (``SystemExit``,
``KeyboardInterrupt``, other ``BaseException``) ends the thread: that job and every job
still queued fail with ``WorkerCrashed`` (its ``__cause__`` is the original), and no
further job is accepted. The thread is not restarted.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from ._models import BatchFn

__all__ = ["InferenceThread", "Outcome", "WorkerCrashed", "run_batch"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request of a batch got: its outputs, or the exception its inputs raised."""

    outputs: list[Any] | None = None
    error: BaseException | None = None
    rejected_parameters: bool = False


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
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
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

    def is_alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

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

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)
            except BaseException as exc:
                self._die(exc, future)
                return
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


def run_batch(
    run: BatchFn, requests: Sequence[tuple[list[Any], Mapping[str, Any]]], chunk_size: int | None
) -> list[Outcome]:
    """Run a batch of requests, each ``(inputs, parameters)``; one ``Outcome`` per request."""
    outcomes: dict[int, Outcome] = {}
    for indices in _group_by_parameters(requests).values():
        parameters = requests[indices[0]][1]
        flat = [x for i in indices for x in requests[i][0]]
        try:
            outputs = _call_in_chunks(run, flat, parameters, chunk_size)
        except Exception:
            for i in indices:  # the batch failed: find out which requests fail on their own
                outcomes[i] = _run_alone(run, requests[i][0], parameters, chunk_size)
            continue
        start = 0
        for i in indices:
            n = len(requests[i][0])
            outcomes[i] = Outcome(outputs=outputs[start : start + n])
            start += n
    return [outcomes[i] for i in range(len(requests))]


def _run_alone(run: BatchFn, inputs: list[Any], parameters: Mapping[str, Any], chunk_size: int | None) -> Outcome:
    try:
        return Outcome(outputs=_call_in_chunks(run, inputs, parameters, chunk_size))
    except Exception as exc:
        return Outcome(error=exc, rejected_parameters=bool(parameters) and _runs(run, inputs, chunk_size))


def _runs(run: BatchFn, inputs: list[Any], chunk_size: int | None) -> bool:
    """Whether ``inputs`` run without parameters (to tell bad parameters from bad inputs)."""
    try:
        _call_in_chunks(run, inputs, {}, chunk_size)
    except Exception:
        return False
    return True


def _call_in_chunks(
    run: BatchFn, inputs: list[Any], parameters: Mapping[str, Any], chunk_size: int | None
) -> list[Any]:
    if chunk_size is None or len(inputs) <= chunk_size:
        return run(inputs, parameters)
    outputs: list[Any] = []
    for start in range(0, len(inputs), chunk_size):
        outputs.extend(run(inputs[start : start + chunk_size], parameters))
    return outputs


def _group_by_parameters(requests: Sequence[tuple[list[Any], Mapping[str, Any]]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (_, parameters) in enumerate(requests):
        key = json.dumps(parameters, sort_keys=True, default=repr)
        groups.setdefault(key, []).append(i)
    return groups

"""Preparation: a request's texts become the model's inputs on a thread of their own, never on the
event loop that parses HTTP, nor on the inference thread that runs the model.

Tokenizing is the largest piece of a request's work outside the model. On the event loop it would
hold up every other connection while it runs; on the inference thread it would delay the next
batch. So one preparation thread takes admitted requests in arrival order, prepares each
(``Admission.prepare``: the runner's ``prepare``, the token limits, the batching key), and hands
them back to the event loop in groups: whatever it prepared while the loop was busy comes back in
one call (``loop.call_soon_threadsafe``), so a busy server pays one wake-up of its loop for many
requests, and a request alone pays two thread hand-offs.

A request answered meanwhile (its deadline, its client gone) is skipped. Preparing a request
either gives its inputs, or the error it is answered with (``TooLarge``, ``InvalidInput`` from the
runner, or ``InferenceFailed`` for an exception the runner did not mean).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from ..._exceptions import InferenceFailed, RequestFailed
from .request import Request

__all__ = ["Preparation", "Prepared", "Prepare", "Deliver", "prepare_one"]

Prepared = tuple[list[Any], int, str, int] | RequestFailed
"""What preparing one request gave: ``(inputs, tokens, key)`` (``Request.prepared``), or its error."""

Prepare = Callable[[list[str], Mapping[str, Any]], tuple[list[Any], int, str, int]]
Deliver = Callable[[list[tuple[Request, Prepared]]], None]


class Preparation:
    """One daemon thread that prepares requests in arrival order and delivers them to the event loop."""

    def __init__(
        self, prepare: Prepare, deliver: Deliver, loop: asyncio.AbstractEventLoop, name: str = "pipeserve-prepare"
    ) -> None:
        self._prepare = prepare
        self._deliver = deliver
        self._loop = loop
        self._jobs: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self.ended: Future[None] = Future()
        """Done when the thread has ended (await it with ``asyncio.wrap_future``); it cannot be cancelled."""
        self.ended.set_running_or_notify_cancel()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        """Prepare ``request`` (its ``inputs`` are its texts) and deliver it; called on the event loop."""
        self._jobs.put(request)

    def close(self, timeout_s: float = 1.0) -> bool:
        """End the thread once it has delivered what it holds; True if it has ended. On the event loop, close
        with ``timeout_s=0`` and await ``ended``."""
        self._jobs.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            self._serve()
        finally:
            self.ended.set_result(None)

    def _serve(self) -> None:
        while (first := self._jobs.get()) is not None:
            group, stop = [first], False
            while not stop:  # everything that arrived meanwhile goes back in one delivery
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                else:
                    group.append(job)
            done = [(r, prepare_one(self._prepare, r)) for r in group if not r.future.done()]  # answered: skipped
            if done:
                try:
                    self._loop.call_soon_threadsafe(self._deliver, done)
                except RuntimeError:  # the loop has closed: nobody is left to answer
                    return
            if stop:
                return


def prepare_one(prepare: Prepare, request: Request) -> Prepared:
    """``request``'s inputs prepared, or the error to answer it with (an exception the runner did not mean
    becomes ``InferenceFailed``, its cause kept)."""
    try:
        return prepare(request.inputs, request.parameters)
    except RequestFailed as exc:
        return exc
    except Exception as exc:
        failed = InferenceFailed(f"preparing this request's inputs raised {type(exc).__name__}")
        failed.__cause__ = exc
        return failed

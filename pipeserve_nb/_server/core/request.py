"""One request's record, from admission to its one answer, and the one place a request expires.

A ``Request`` is created when the engine admits it, is prepared off the event loop (its texts
become the model's inputs, counted in tokens: ``prepared()``), waits in the batch queue, runs in one
or more batches (a request with more inputs than the batch cap runs in slices of it), and
is answered exactly once through its ``future``: a ``Result`` when its last slice ran, or a
``RequestFailed`` subclass. ``expire()`` is the only code that answers a request for its
deadline, whoever notices it first (its timer, or the batch queue about to pick it).

A request answered before any of its inputs reached the model was *dropped before
inference*; ``drop_reason()`` says why (the one counter of those, by reason, is in ``Stats``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._exceptions import RequestTimeout, ServerStopping, WorkerDied
from .cost import Forecast

__all__ = ["Request", "Result", "Slice", "Batch", "stopping", "worker_died"]


@dataclass(frozen=True, slots=True)
class Result:
    """A request's outputs and how it was served."""

    outputs: list[Any]
    queue_wait_s: float
    batch_size: int
    inference_s: float
    input_tokens: int = 0
    """Tokens of all its inputs as the model read them (characters where the model has no tokenizer)."""


@dataclass(eq=False, slots=True)
class Request:
    """One admitted request.

    Parameters:
        inputs: its texts, until prepared; then what the model is called with, one per text
            (token ids where it takes them).
        parameters: keyword arguments for the model call.
        future: resolved with a ``Result``, or failed with a ``RequestFailed``.
        arrived_s: ``clock()`` when it was admitted; ``deadline_s``: when it expires.
        key: ``parameters`` in a canonical form (set when prepared): requests batch only with the same key.
        tokens: tokens of its longest input, at most the model's limit (set when prepared;
            characters where the model has no tokenizer).
    """

    inputs: list[Any]
    parameters: Mapping[str, Any]
    future: asyncio.Future[Result]
    arrived_s: float
    deadline_s: float
    key: str = ""
    tokens: int = 0
    input_tokens: int = 0  # of all its inputs (set when prepared)
    ready: bool = False  # prepared: ``inputs`` are the model's, ``tokens`` counted
    taken: int = 0  # inputs handed to a batch so far
    started_s: float | None = None  # when its first slice reached the model
    outputs: list[Any] = field(default_factory=list)
    inference_s: float = 0.0
    batch_size: int = 0  # the largest batch it ran in
    timer: asyncio.TimerHandle | None = None
    forecast: Forecast | None = None  # its start wait as forecast at admission (admission by time)

    @property
    def size(self) -> int:
        """Inputs it still has to run (what it adds to the next batch)."""
        return len(self.inputs) - self.taken

    def prepared(self, inputs: list[Any], tokens: int, key: str, input_tokens: int = 0) -> None:
        """Its texts were prepared: the model's ``inputs``, the longest one's ``tokens``, the batching ``key``,
        the tokens of all its inputs."""
        self.inputs, self.tokens, self.key, self.ready = inputs, tokens, key, True
        self.input_tokens = input_tokens

    def expire(self) -> None:
        """Answer the request with ``RequestTimeout``, unless it was answered already."""
        if self.future.done():
            return
        where = "" if self.started_s is not None else "; it never reached the model"
        timeout_s = self.deadline_s - self.arrived_s
        self.future.set_exception(RequestTimeout(f"no answer within timeout_s={timeout_s:g}{where}"))

    def fail(self, error: BaseException) -> None:
        """Answer the request with ``error``, unless it was answered already."""
        if not self.future.done():
            self.future.set_exception(error)

    def ran(self, outputs: list[Any], batch_size: int, inference_s: float) -> None:
        """One slice ran: keep its outputs; answer the request if that was its last slice."""
        if self.future.done():
            return
        self.outputs.extend(outputs)
        self.batch_size = max(self.batch_size, batch_size)
        self.inference_s += inference_s
        if len(self.outputs) == len(self.inputs):
            started = self.started_s if self.started_s is not None else self.arrived_s
            wait = started - self.arrived_s
            result = Result(self.outputs, wait, self.batch_size, self.inference_s, self.input_tokens)
            self.future.set_result(result)

    def drop_reason(self) -> str | None:
        """Why it was answered before reaching the model (one of ``DROP_REASONS``), or None when it
        reached the model, is not answered yet, or was refused for what it is (too large, invalid:
        a refusal, counted by its status, not a drop)."""
        if self.started_s is not None or not self.future.done():
            return None
        if self.future.cancelled():
            return "client_gone"
        error = self.future.exception()
        for kind, reason in ((RequestTimeout, "expired"), (WorkerDied, "worker_died"), (ServerStopping, "stopping")):
            if isinstance(error, kind):
                return reason
        return None


@dataclass(frozen=True, slots=True)
class Slice:
    """Inputs ``start:stop`` of one request, in one batch."""

    request: Request
    start: int
    stop: int

    @property
    def inputs(self) -> list[Any]:
        return self.request.inputs[self.start : self.stop]


@dataclass(frozen=True, slots=True)
class Batch:
    """What one model call runs: slices of requests that share their parameters."""

    slices: list[Slice]
    parameters: Mapping[str, Any]

    @property
    def size(self) -> int:
        """Inputs in the call."""
        return sum(s.stop - s.start for s in self.slices)

    @property
    def padded_tokens(self) -> int:
        """Inputs x the longest input's tokens: what the call computes, padding included."""
        return self.size * max(s.request.tokens for s in self.slices)

    @property
    def real_tokens(self) -> int:
        """Tokens of the inputs themselves (each request's longest, for each of its inputs): an upper
        bound of the real tokens, exact for one-input requests, the usual case."""
        return sum((s.stop - s.start) * s.request.tokens for s in self.slices)


def stopping(message: str = "the server stopped before this request was answered") -> ServerStopping:
    """The error of a request the server will not answer because it stops."""
    return ServerStopping(message)


def worker_died(cause: BaseException | None) -> WorkerDied:
    """The error of a request the server cannot answer because the inference thread died."""
    died = WorkerDied(
        f"the inference worker died ({type(cause).__name__}); it is not restarted: stop the server and start it again"
    )
    died.__cause__ = cause
    return died

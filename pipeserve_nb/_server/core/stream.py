"""A generation's stream: one request's pieces of text, made and read on the event loop, fed by the step loop.

A ``Generation`` is one request: its prompt (token ids), its ``Sampling`` settings and deadline in;
``Piece``s out, as an async iterator (``pieces()``), ending with ``Finished`` (its reason, token counts and
times) or with the ``RequestFailed`` that ended it before any text. The step loop (``generation``) feeds it
from the inference thread: it turns each token into text (``TextStream``, stop strings held back) and
sends what a model call wrote to the event loop in one wake-up (``deliver``); the event loop sets a
generation's cancel reason (``cancel``), which the inference thread reads between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..._exceptions import InferenceFailed, RequestFailed, RequestTimeout
from ..._models.generation.sampling import Sampling
from ..._models.generation.text import TextStream
from ..observe.stats import clock
from .request import stopping

__all__ = ["Event", "Finished", "Generation", "Piece", "deliver"]


@dataclass(frozen=True, slots=True)
class Piece:
    """Text written since the last piece (never empty), and the tokens generated so far."""

    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    """How a generation ended (``reason``, one of ``STOP_REASONS``), its whole text and its numbers."""

    reason: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None
    """Seconds from arrival to the first token (None: none was written)."""
    duration_s: float

    @property
    def inter_token_s(self) -> float | None:
        """Mean seconds between two tokens after the first (None: fewer than two were written)."""
        if self.first_token_s is None or self.completion_tokens < 2:
            return None
        return (self.duration_s - self.first_token_s) / (self.completion_tokens - 1)

    def failure(self) -> RequestFailed | None:
        """What a whole answer that ended so is answered with: None when the model ended it (``stop``,
        ``length``); for the server's reasons their errors (504 at the deadline, 503 when stopping, 500 when the
        model failed): a whole answer is whole or an error."""
        if self.reason in ("stop", "length"):
            return None
        if self.reason == "expired":
            return RequestTimeout("the request's deadline passed during the answer")
        if self.reason == "stopping":
            return stopping("the server stopped during the answer")
        if self.reason == "failed":
            return InferenceFailed("the model failed during the answer")
        return InferenceFailed(f"the answer ended early ({self.reason})")


class Generation:
    """One request's generation: made and read on the event loop, run on the inference thread."""

    def __init__(self, prompt: list[int], sampling: Sampling, deadline_s: float | None = None) -> None:
        """``prompt``: token ids; ``deadline_s``: on the server's clock (``clock``), None for none."""
        self.prompt = prompt
        self.sampling = sampling
        self.deadline_s = deadline_s
        self.arrived_s = clock()
        self.cancelled: str | None = None
        """Why the event loop asked the generation to end (read by the inference thread between steps)."""
        self.finished: Finished | None = None
        self.tokens_written = 0
        """Tokens generated so far (written by the inference thread)."""
        self._events: asyncio.Queue[Piece | Finished | RequestFailed] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._text: TextStream | None = None
        self._first_token_s: float | None = None
        self._outbox: list[tuple[Generation, Event]] | None = None
        self.ended = asyncio.Event()
        """Set on the event loop once its last event (``Finished`` or its error) has been delivered."""

    def cancel(self, reason: str) -> None:
        """Ask for the generation to end (``client_gone`` or ``stopping``); it leaves the batch before the next step."""
        if self.cancelled is None:
            self.cancelled = reason

    async def pieces(self) -> AsyncIterator[Piece]:
        """The text pieces as they are written; ends when the generation does (then ``finished`` is set),
        or raises the ``RequestFailed`` that ended it before any text."""
        while True:
            event = await self._events.get()
            if isinstance(event, Piece):
                yield event
            elif isinstance(event, Finished):
                self.finished = event
                return
            else:
                raise event

    async def result(self) -> Finished:
        """The whole generation, once it has ended."""
        async for _ in self.pieces():
            pass
        assert self.finished is not None
        return self.finished

    # The inference thread's side.

    def _send(self, event: Piece | Finished | RequestFailed) -> None:
        """Queue ``event`` for the event loop: in the step loop's outbox while it runs a step (one wake-up of
        the event loop per model call, not one per row), else at once."""
        if self._outbox is not None:
            self._outbox.append((self, event))
        else:
            deliver(self._loop, [(self, event)])

    def _started(self, tokenizer: Any, ends: frozenset[int]) -> None:
        self._text = TextStream(tokenizer, self.sampling.stop)
        self._ends = ends

    def _took(self, token: int, count: int) -> str | None:
        """Hand out what ``token`` completes; return the reason the generation ends with it, or None."""
        assert self._text is not None
        self.tokens_written = count
        if self._first_token_s is None:
            self._first_token_s = clock() - self.arrived_s
        if token in self._ends:
            self._flush(count)
            return "stop"
        text = self._text.push(token)
        if text:
            self._send(Piece(text, count))
        if self._text.stopped:
            return "stop"
        if count >= self.sampling.max_new_tokens:
            self._flush(count)
            return "length"
        return None

    def _flush(self, count: int) -> None:
        assert self._text is not None
        if text := self._text.finish():
            self._send(Piece(text, count))

    def _end(self, reason: str, completion_tokens: int) -> Finished | None:
        """Send the one last event: ``Finished`` (returned), or the error when no token was written and it did
        not finish (None returned)."""
        if completion_tokens == 0 and reason in ("expired", "stopping", "client_gone"):
            self._send(RequestTimeout("no token before the request's deadline") if reason == "expired" else stopping())
            return None
        text = self._text.text if self._text is not None else ""
        first = self._first_token_s
        finished = Finished(reason, text, len(self.prompt), completion_tokens, first, clock() - self.arrived_s)
        self._send(finished)
        return finished


Event = Piece | Finished | RequestFailed
"""What a generation's stream receives: a piece, its end, or the error that ended it before any text."""


def deliver(loop: asyncio.AbstractEventLoop, events: list[tuple[Generation, Event]]) -> None:
    """Hand ``events`` to their generations on ``loop``, in one wake-up of it (from any thread)."""

    def put() -> None:
        for generation, event in events:
            generation._events.put_nowait(event)
            if not isinstance(event, Piece):
                generation.ended.set()

    with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is left to read them
        loop.call_soon_threadsafe(put)

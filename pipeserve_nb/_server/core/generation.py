"""Generation served one model step at a time: the step loop.

A ``Generation`` (``stream``) is one request: prompt ids, ``Sampling`` and deadline in, text pieces out, as an
async iterator on the event loop. ``StepLoop.submit`` hands it to the loop, which runs on the inference thread
in jobs of a few model steps, each step exactly: (1) drop the rows that were cancelled (the client left,
``stop()``) or whose deadline passed; (2) let newcomers join by the rule (``JOIN_RULES``): *continuous* at
every step, up to ``max_rows`` rows and ``prefill_tokens`` prompt tokens (a long prompt delays the running
streams by one bounded call), prefilled in chunks of ``prefill_chunk_tokens``, *static* only when the batch is
empty, *one at a time* one row; newcomers are prefilled and each gets its first token; (3) one decode step for
every row; (4) hand each row's new text to its stream and drop the rows that finished: the model's end token
or a stop string (``"stop"``), ``max_new_tokens`` (``"length"``).

The loop times its model calls (``prefill_cost``, ``step_cost``: fitted lines, ``cost.CallCost``) and
says what it holds (``occupancy``), from which admission forecasts a newcomer's first token (``first_token``).
A row that leaves frees its slot for the next step. Each generation ends exactly once: with
``Finished`` (its reason, token counts and times), or, when nothing was written yet, with an error
(``RequestTimeout``, ``ServerStopping``, ``InferenceFailed``, ``WorkerDied``). The inference thread
reaches the event loop only through ``call_soon_threadsafe``; the event loop sets a generation's
cancel reason, which the inference thread reads between steps.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..._exceptions import InferenceFailed, InvalidSetting, RequestFailed
from ..observe.stats import clock
from .config import JOIN_RULES
from .cost import CallCost
from .first_token import Occupancy
from .inference import InferenceThread
from .request import stopping, worker_died
from .stream import Event, Finished, Generation, deliver

if TYPE_CHECKING:
    from ..._models.generation.step_batch import Row

__all__ = ["StepLoop", "STOP_REASONS"]

STOP_REASONS = ("stop", "length", "client_gone", "expired", "stopping", "failed")
"""Why a generation ended: the model's end or a stop string, its token budget, the client left, its deadline
passed, the server stopped, the model raised."""


class StepLoop:
    """Runs every generation of one model on the inference thread (see the module docstring).

    Parameters:
        model: a transformers causal LM; tokenizer: its tokenizer (decoding, the end token).
        worker: the inference thread the model runs on.
        join: one of ``JOIN_RULES``.
        max_rows: the most generations in one step.
        prefill_tokens: the most prompt tokens prefilled before one step (a longer prompt still joins, alone).
        prefill_chunk_tokens: newcomers are prefilled in calls of at most this many padded tokens, one after the
            other, each call's first tokens sent at once: the first of a burst see a token sooner, and calls this
            size still run near the per-token cost of a large prefill (measured in ``docs/generation.md``).
        steps_per_job: model steps per job on the worker at most, so that other jobs (a stop, another model) get
            turns; a job ends after its current step when another job waits (another model's batch).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        worker: InferenceThread,
        *,
        join: str = "continuous",
        max_rows: int = 16,
        prefill_tokens: int = 512,
        prefill_chunk_tokens: int = 192,
        steps_per_job: int = 8,
    ) -> None:
        if join not in JOIN_RULES:
            raise InvalidSetting(f"join must be one of {', '.join(JOIN_RULES)}, got {join!r}")
        self.join = join
        self.max_rows = 1 if join == "one_at_a_time" else max_rows
        self.prefill_tokens = prefill_tokens
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.steps_per_job = steps_per_job
        self.tokenizer = tokenizer
        self.worker = worker
        from ..._models.generation.step_batch import Row, StepBatch  # PyTorch: imported when a model is served

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batch = StepBatch(model, pad_id=int(pad or 0))
        self._row = Row
        self.ends = _end_tokens(model, tokenizer)
        self.stopped_by: Counter[str] = Counter()
        """How many generations ended, by reason (``STOP_REASONS``)."""
        self.rows_per_step: deque[int] = deque(maxlen=10_000)
        """How many rows each recent decode step ran."""
        self.written: deque[tuple[float, int]] = deque(maxlen=100_000)
        """When each recent model call ended (``clock``) and how many tokens it wrote."""
        self.completion_tokens = 0
        """Tokens generated since the loop started (written on the inference thread)."""
        self.recent: deque[Finished] = deque(maxlen=10_000)
        """The generations that ended most recently, with their numbers (appended on the inference thread)."""
        self.on_finished: Callable[[Finished], None] | None = None
        """Called on the inference thread with each generation that finished (the metrics' histograms)."""
        self.prefill_cost = CallCost()
        """A prefill call's seconds against its padded prompt tokens (fitted as the loop runs)."""
        self.step_cost = CallCost()
        """A decode step's seconds against the rows it ran."""
        self._pending: deque[Generation] = deque()
        self._outbox: list[tuple[Generation, Event]] = []  # filled on the inference thread, flushed after each call
        self._lock = threading.Lock()  # guards _pending and _scheduled
        self._scheduled = False

    @property
    def waiting(self) -> int:
        """Generations submitted that have not joined the batch yet."""
        return len(self._pending)

    @property
    def running(self) -> int:
        """Generations in the batch now."""
        return len(self.batch)

    def occupancy(self) -> Occupancy:
        """What the loop holds now, for the forecast of a newcomer's first token (read from the event loop)."""
        recent = [f.completion_tokens for f in list(self.recent)[-64:] if f.reason in ("stop", "length")]
        typical = sorted(recent)[len(recent) // 2] if recent else None
        left = []
        for row in list(self.batch.rows):
            budget = row.sampling.max_new_tokens - len(row.tokens)
            left.append(max(1, min(budget, typical - len(row.tokens))) if typical is not None else max(1, budget))
        with self._lock:
            waiting = tuple(len(g.prompt) for g in self._pending)
        return Occupancy(self.join, self.max_rows, tuple(left), waiting, typical or max(left, default=1))

    def submit(self, generation: Generation) -> None:
        """Queue ``generation``; it joins the batch by the join rule (call from the event loop)."""
        generation._outbox = self._outbox
        with self._lock:
            self._pending.append(generation)
            if self._scheduled:
                return
            self._scheduled = True
        self._schedule()

    def _schedule(self) -> None:
        try:
            self.worker.submit(self._drive)
        except Exception:  # the worker has stopped or died: nothing can run these any more
            crash = self.worker.crash
            self._fail_everything(lambda: worker_died(crash.__cause__) if crash is not None else stopping())

    def _drive(self) -> None:
        """A job on the inference thread: a few steps, then schedule the next job if work is left."""
        try:
            for _ in range(self.steps_per_job):
                self._drop_cancelled()
                self._admit()
                if not self.batch:
                    break
                self._step(self.batch.step)
                if self.worker.others_waiting():  # another model's call (one thread per device): its turn now
                    break
        except BaseException as error:  # a fault of the loop itself, or the thread dying: nothing is left running
            self._fail_everything(partial(worker_died, error))
            raise
        with self._lock:
            if not self.batch and not self._pending:
                self._scheduled = False
                return
        self._schedule()

    def _drop_cancelled(self) -> None:
        now = clock()
        gone: dict[Generation, str] = {}
        for row in self.batch.rows:
            generation: Generation = row.key  # type: ignore[assignment]
            reason = _cancel_reason(generation, now)
            if reason is not None:
                gone[generation] = reason
        for row in self.batch.leave(set(gone)):
            self._finish(row, gone[row.key])  # type: ignore[index]
        self._flush()

    def _admit(self) -> None:
        if self.join != "continuous" and self.batch:
            return
        joining: list[Generation] = []
        budget = self.prefill_tokens
        now = clock()
        with self._lock:
            ended = [(g, reason) for g in self._pending if (reason := _cancel_reason(g, now)) is not None]
            for generation, reason in ended:
                self._pending.remove(generation)  # a waiting one that was cancelled or expired never runs
                self._count(reason)
                generation._end(reason, 0)
            while self._pending and len(self.batch) + len(joining) < self.max_rows:
                generation = self._pending[0]
                if joining and len(generation.prompt) > budget:
                    break
                joining.append(self._pending.popleft())
                budget -= len(generation.prompt)
        self._flush()
        for group in _chunks(joining, self.prefill_chunk_tokens):  # each chunk's first tokens go out at once
            rows = [self._row(g, g.sampling, g.sampling.generator()) for g in group]
            for generation in group:
                generation._started(self.tokenizer, self.ends)
            padded = len(group) * max(len(g.prompt) for g in group)
            self._step(lambda: self.batch.join([g.prompt for g in group], rows), rows, prefilled=padded)  # noqa: B023

    def _step(self, call: Callable[[], list[int]], rows: list[Row] | None = None, prefilled: int = 0) -> None:
        """Run one model call (a prefill of ``prefilled`` padded tokens with ``join``, else a decode ``step``) and
        hand out its tokens; a call that raises fails its rows."""
        rows = list(self.batch.rows) if rows is None else rows
        started = clock()
        try:
            tokens = call()
        except Exception as error:
            self._fail(rows, error)
            return
        finished_s = clock()
        self.written.append((finished_s, len(rows)))
        if prefilled:
            self.prefill_cost.observe(prefilled, finished_s - started)
        else:
            self.step_cost.observe(len(rows), finished_s - started)
            self.rows_per_step.append(len(rows))
        ended: dict[Row, str] = {}
        for row, token in zip(rows, tokens, strict=True):
            generation: Generation = row.key  # type: ignore[assignment]
            reason = generation._took(token, len(row.tokens))
            if reason is not None:
                ended[row] = reason
        for row in self.batch.leave({row.key for row in ended}):
            self._finish(row, ended[row])
        self._flush()

    def _flush(self) -> None:
        """Send what the last call wrote, one wake-up per event loop."""
        events, self._outbox[:] = list(self._outbox), []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Generation, Event]]] = {}
        for generation, event in events:
            by_loop.setdefault(generation._loop, []).append((generation, event))
        for loop, batch in by_loop.items():
            deliver(loop, batch)

    def _fail(self, rows: list[Row], error: Exception) -> None:
        """The model raised for a call: its rows end (``failed``), the others go on."""
        self.batch.leave({row.key for row in rows})
        for row in rows:
            generation: Generation = row.key  # type: ignore[assignment]
            self._count("failed")
            self.completion_tokens += len(row.tokens)
            if row.tokens:
                generation._end("failed", len(row.tokens))
            else:
                failed = InferenceFailed(f"the model raised {type(error).__name__} while generating")
                failed.__cause__ = error
                generation._send(failed)
        self._flush()

    def _finish(self, row: Row, reason: str) -> None:
        self._count(reason)
        self.completion_tokens += len(row.tokens)
        generation: Generation = row.key  # type: ignore[assignment]
        finished = generation._end(reason, len(row.tokens))
        if finished is not None:
            self.recent.append(finished)
            if self.on_finished is not None:
                self.on_finished(finished)

    def _fail_everything(self, error: Callable[[], RequestFailed]) -> None:
        """Answer every generation, waiting or running, with ``error()``; nothing runs them any more."""
        with self._lock:
            self._scheduled = False
            pending = list(self._pending)
            self._pending.clear()
        for generation in pending:
            generation._send(error())
        for row in self.batch.leave({row.key for row in self.batch.rows}):
            row.key._send(error())  # type: ignore[attr-defined]
        self._flush()

    def _count(self, reason: str) -> None:
        self.stopped_by[reason] += 1


def _chunks(joining: list[Generation], tokens: int) -> list[list[Generation]]:
    """``joining`` in order, cut into groups whose prompts, padded to the group's longest, hold at most ``tokens``
    tokens (a longer prompt is a group of its own)."""
    groups: list[list[Generation]] = []
    longest = 0
    for generation in joining:
        longer = max(longest, len(generation.prompt))
        if groups and (len(groups[-1]) + 1) * longer <= tokens:
            groups[-1].append(generation)
            longest = longer
        else:
            groups.append([generation])
            longest = len(generation.prompt)
    return groups


def _cancel_reason(generation: Generation, now: float) -> str | None:
    if generation.cancelled is not None:
        return generation.cancelled
    if generation.deadline_s is not None and now >= generation.deadline_s:
        return "expired"
    return None


def _end_tokens(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end an answer: the tokenizer's end token and those of the model's generation config."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ends = configured if isinstance(configured, list) else [configured]
    return frozenset(int(t) for t in [tokenizer.eos_token_id, *ends] if t is not None)

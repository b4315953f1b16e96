"""The engine's generations: admission, the step loop, deadlines, stopping, and their numbers.

An engine whose model can be served one token at a time (``LoadedModel.chat``) has a ``Generating``:
``prompts`` checks a request and turns it into prompt ids (``ChatPrompts``, off the event loop in the caller's
hands), ``start`` admits it (a fast ``Overloaded`` when ``max_queue`` generations already wait for a slot, or
when it is forecast to wait longer than ``max_queue_wait_s`` for its turn: ``first_token``) and hands it to the
``StepLoop`` with the request's deadline (``timeout_s``); ``stop`` ends every generation within one model step
(``ServerStopping`` for those with no text yet), and ``report`` gives ``/stats`` its generation section. It
runs on the engine's inference thread, so a model never runs two calls at once, whether they are whole batches
or generation steps.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..._exceptions import Overloaded
from ..._models.generation.chat import ChatModel, ChatPrompts, PromptRequest
from ..._percentile import percentiles
from ..observe.stats import PERCENTILES, clock
from .config import ServerConfig
from .first_token import FirstToken, first_token
from .generation import STOP_REASONS, StepLoop
from .inference import InferenceThread
from .stream import Generation

__all__ = ["Generating", "RECENT_S"]

RECENT_S = 10.0
"""The window of ``/stats``'s ``generation.recent`` (as the server's ``recent`` section)."""


class Generating:
    """Generations of one model on one inference thread (see the module docstring)."""

    def __init__(self, chat: ChatModel, worker: InferenceThread, config: ServerConfig) -> None:
        self.config = config
        self.prompts = ChatPrompts(chat.tokenizer, chat.context_tokens, config.max_new_tokens)
        self.steps = StepLoop(chat.model, chat.tokenizer, worker, join=config.generation, max_rows=config.max_streams)
        self.active: set[Generation] = set()
        """Generations started and not yet ended (on the event loop)."""

    def start(self, request: PromptRequest) -> Generation:
        """Admit ``request`` and start its generation (on the event loop); ``Overloaded`` when too many wait,
        or when it is forecast to wait longer than ``max_queue_wait_s`` for its turn (its own prefill not counted)."""
        waiting = self.steps.waiting
        if waiting >= self.config.max_queue:
            raise Overloaded(
                f"{waiting} generations are waiting for one of {self.config.max_streams} slots; retry later",
                self._retry_after_s(),
            )
        bound = self.config.max_queue_wait_s
        forecast = self.forecast(len(request.ids))
        if bound is not None and forecast is not None and forecast.wait_s > bound:
            raise Overloaded(
                f"it would wait about {forecast.wait_s:.1f} s for its turn, over the server's bound of {bound:g} s "
                f"(max_queue_wait_s): {self.steps.running} generations are running and {waiting} waiting; retry later",
                forecast.wait_s,
            )
        generation = Generation(request.ids, request.sampling, deadline_s=clock() + self.config.timeout_s)
        self.active.add(generation)
        task = asyncio.ensure_future(generation.ended.wait())
        task.add_done_callback(lambda _: self.active.discard(generation))
        self.steps.submit(generation)
        return generation

    def forecast(self, prompt_tokens: int) -> FirstToken | None:
        """When a newcomer with ``prompt_tokens`` would start and see its first token (None: not known yet)."""
        return first_token(self.steps.occupancy(), prompt_tokens, self.steps.prefill_cost, self.steps.step_cost)

    async def stop(self, timeout_s: float) -> None:
        """End every generation within one model step (reason ``stopping``) and wait up to ``timeout_s`` for them."""
        for generation in list(self.active):
            generation.cancel("stopping")
        if self.active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(g.ended.wait() for g in list(self.active))), timeout_s)

    def numbers(self) -> dict[str, Any]:
        """What ``/metrics`` reads at each scrape: streams running and waiting, ends by reason, tokens generated."""
        return {
            "running": self.steps.running,
            "waiting": self.steps.waiting,
            "ended": {reason: self.steps.stopped_by.get(reason, 0) for reason in STOP_REASONS},
            "completion_tokens": self.steps.completion_tokens,
        }

    def report(self) -> dict[str, Any]:
        """The generation section of ``/stats``: streams, how they ended, tokens, time to first token, step sizes."""
        recent = list(self.steps.recent)
        rows = list(self.steps.rows_per_step)
        firsts = [f.first_token_s * 1000 for f in recent if f.first_token_s is not None]
        per_token = [f.inter_token_s * 1000 for f in recent if f.inter_token_s is not None]
        return {
            "join": self.steps.join,
            "max_streams": self.steps.max_rows,
            **self.numbers(),
            "time_to_first_token_ms": _percentiles(firsts),
            "inter_token_ms": _percentiles(per_token),
            "mean_streams_per_step": sum(rows) / len(rows) if rows else None,
            "recent": self._recent(),
            "prefill_cost": self.steps.prefill_cost.snapshot(),
            "step_cost": self.steps.step_cost.snapshot(),
        }

    def _recent(self) -> dict[str, float]:
        """Tokens written per second over the last ``RECENT_S`` seconds (or since the first call, if later)."""
        now = clock()
        calls = [(t, n) for t, n in list(self.steps.written) if t >= now - RECENT_S]
        span = min(RECENT_S, now - self.steps.written[0][0]) if self.steps.written else 0.0
        tokens = sum(n for _, n in calls)
        return {"span_s": round(span, 3), "tokens_per_s": round(tokens / span, 3) if span > 0 else 0.0}

    def _retry_after_s(self) -> float:
        """How long a refused client should wait: the mean time a recent generation took (at least 1 s)."""
        recent = list(self.steps.recent)[-32:]
        return max(1.0, sum(f.duration_s for f in recent) / len(recent)) if recent else 1.0


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{q}": round(v, 3) for q, v in zip(PERCENTILES, percentiles(values, PERCENTILES), strict=True)}

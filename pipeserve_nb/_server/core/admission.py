"""Admission: what a request must pass before it is queued, checked without running the model.

In order, for each request (the cheap checks first: under overload most requests are refused,
and a refusal should cost little):

1. there is room (``room()``; the edge asks it once per request, before it reads the body, and
   holds the room while the body is read: ``Engine.reserve``), by count: fewer than ``max_queue``
   requests are accepted and not yet started (reserved, being prepared, or queued); and, with
   ``max_queue_wait_s`` set, by time: the forecast wait before the request would start
   (``BatchLoop.start_wait_s``: the rest of the running call, then the calls that will run what
   waits, priced by the call cost fitted online and calibrated by how far real waits ran past such
   forecasts) is within the bound, or what waits fits in the next model call. Else ``Overloaded``,
   503, carrying the forecast wait (1 s with no forecast yet; before the first calls only the count
   applies), which the edge sends as ``Retry-After``;
2. its parameter names are ones the model takes (``check_names``; else ``InvalidInput``, 400);
3. on the preparation thread, not the event loop (``prepare``): its texts are prepared once by the
   model's runner (tokenized, where it has a tokenizer) and no input has more tokens than the model
   accepts, unless the request asks for ``"parameters": {"truncation": true}`` (else ``TooLarge``,
   413).

What passes is queued with its inputs as the model takes them (token ids where it takes those, so
nothing is tokenized twice), the longest input's tokens (what batch formation sorts by), and the
parameters' canonical key (what requests must share to run in one batch). The body's shape was
checked before (``edge.body``); what only the model can find out (a parameter value it rejects) it
says itself, raising ``InvalidInput`` from its runner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..._exceptions import InvalidInput, Overloaded, TooLarge
from ..._models.runner import Runner
from .config import ServerConfig
from .cost import Forecast

__all__ = ["Admission", "batching_key"]


def batching_key(parameters: Mapping[str, Any]) -> str:
    """``parameters`` in a canonical form: requests batch only with requests of the same key."""
    return json.dumps(parameters, sort_keys=True, default=repr)


class Admission:
    """The checks before the queue, for one model and one queue bound."""

    def __init__(
        self,
        runner: Runner,
        config: ServerConfig,
        depth: Callable[[], int],
        start_wait_s: Callable[[], Forecast | None],
    ) -> None:
        self.runner = runner
        self.max_queue = config.max_queue
        self.max_queue_wait_s = config.max_queue_wait_s
        self._depth = depth
        self._start_wait_s = start_wait_s

    def room(self) -> Forecast | None:
        """Raise ``Overloaded`` unless a request arriving now has room, by count and by time; return
        its forecast start wait when admission by time made one. Cheap (no input is looked at)."""
        if self._depth() >= self.max_queue:
            forecast = self._start_wait_s()
            raise Overloaded(
                f"the queue is full ({self.max_queue} requests waiting); retry later",
                retry_after_s=forecast.wait_s if forecast is not None else 1.0,
            )
        if self.max_queue_wait_s is None:
            return None
        forecast = self._start_wait_s()
        # What waits fits in the next call: this request starts right after the running one, and a
        # refusal would spare it at most that call (a cold server's first forecasts can be far off).
        if forecast is not None and forecast.calls >= 2 and forecast.wait_s > self.max_queue_wait_s:
            raise Overloaded(
                f"this request would wait about {forecast.wait_s:.2f} s to start, over max_queue_wait_s="
                f"{self.max_queue_wait_s:g}; retry later",
                retry_after_s=forecast.wait_s,
            )
        return forecast

    def check_names(self, parameters: Mapping[str, Any]) -> None:
        """Raise ``InvalidInput`` for a parameter name the model does not take."""
        names = self.runner.parameter_names
        if names is not None and not set(parameters) <= names:
            unknown = sorted(set(parameters) - names)
            accepted = ", ".join(sorted(names)) or "none"
            raise InvalidInput(f"unknown parameter(s) {unknown} for this model; it takes: {accepted}")

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> tuple[list[Any], int, str, int]:
        """The model's inputs for ``texts``, the longest one's tokens (at most the model's limit), the
        batching key and the tokens of all its inputs (each at most the limit: what the model reads);
        ``TooLarge`` for an input over the limit. Runs on the preparation thread."""
        runner = self.runner
        prepared = runner.prepare(texts, parameters)
        counts, limit = prepared.tokens, runner.max_tokens
        key = batching_key(parameters)
        if limit is None:
            return prepared.inputs, max(counts), key, sum(counts)
        if not parameters.get("truncation"):
            for i, n in enumerate(counts):
                if n > limit:
                    names = runner.parameter_names
                    hint = (
                        ' or send "parameters": {"truncation": true}' if names is None or "truncation" in names else ""
                    )
                    where = "the input" if len(texts) == 1 else f"input {i}"
                    raise TooLarge(f"{where} has {n} tokens; this model takes at most {limit}: shorten it{hint}")
        return prepared.inputs, min(max(counts), limit), key, sum(min(n, limit) for n in counts)

"""Admission: what a request must pass before it is queued, checked without running the model.

In order, for each request (the cheap checks first: under overload most requests are
refused, and a refusal should cost little):

1. its parameter names are ones the model takes (else ``InvalidInput``, 400);
2. there is room (``room()``, which the app also asks before it reads a body), by count:
   fewer than ``max_queue`` requests wait, queued or pooled for the next batch; and, with
   ``max_queue_wait_s`` set, by time: the forecast wait before the request would start
   (``BatchLoop.start_wait_s``: the rest of the running call, then the calls that will run
   what waits, priced by the call cost fitted online and calibrated by how far real waits
   ran past such forecasts) is within the bound, or what waits fits in the next model call.
   Else ``Overloaded``, 503, carrying the forecast wait (1 s with no forecast yet; before the
   first calls only the count applies), which the edge sends as ``Retry-After``;
3. its texts are tokenized once, with the model's own tokenizer where it has one, and no
   input has more tokens than the model accepts, unless the request asks for
   ``"parameters": {"truncation": true}`` (else ``TooLarge``, 413).

What passes becomes an ``Admitted``: the inputs as the worker will pass them to the model
(token ids where the model takes them, so nothing is tokenized twice), the longest input's
tokens (what batch formation sorts by), and the parameters' canonical key (what requests
must share to run in one batch). The body's shape was checked before (``protocol``); what
only the model can find out (a parameter value it rejects) is found by the worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import InvalidInput, Overloaded, TooLarge
from ..._models.spec import LoadedModel
from .config import ServerConfig
from .cost import Forecast

__all__ = ["Admission", "Admitted"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may be queued: its model inputs, longest token count and batching key."""

    inputs: list[Any]
    tokens: int
    key: str
    forecast: Forecast | None = None
    """Its start wait as forecast at admission, when admission by time made one."""


class Admission:
    """The checks before the queue, for one model and one queue bound."""

    def __init__(
        self,
        model: LoadedModel,
        config: ServerConfig,
        depth: Callable[[], int],
        start_wait_s: Callable[[], Forecast | None],
    ) -> None:
        self.model = model
        self.max_queue = config.max_queue
        self.max_queue_wait_s = config.max_queue_wait_s
        self._depth = depth
        self._start_wait_s = start_wait_s

    def admit(self, inputs: list[Any], parameters: Mapping[str, Any]) -> Admitted:
        """Check a request against the model, then against what waits (see the module docstring)."""
        self._check_names(parameters)
        forecast = self.room()
        prepared, tokens = self._prepare(inputs, parameters)  # tokenizing costs most: only for what has room
        return Admitted(prepared, tokens, json.dumps(parameters, sort_keys=True, default=repr), forecast)

    def room(self) -> Forecast | None:
        """Raise ``Overloaded`` unless a request arriving now has room, by count and by time; return
        its forecast start wait when admission by time made one. Cheap (no input is looked at), so
        the app asks it before it reads a body: under overload a refusal costs little."""
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

    def _check_names(self, parameters: Mapping[str, Any]) -> None:
        names = self.model.parameter_names
        if names is not None and not set(parameters) <= names:
            unknown = sorted(set(parameters) - names)
            accepted = ", ".join(sorted(names)) or "none"
            raise InvalidInput(f"unknown parameter(s) {unknown} for this model; it takes: {accepted}")

    def _prepare(self, inputs: list[Any], parameters: Mapping[str, Any]) -> tuple[list[Any], int]:
        model = self.model
        if model.prepare is None:
            return inputs, max(len(x) if isinstance(x, str) else 1 for x in inputs)
        prepared, counts = model.prepare(inputs)
        limit = model.max_tokens
        if limit is None:
            return prepared, max(counts)
        if not parameters.get("truncation"):
            for i, n in enumerate(counts):
                if n > limit:
                    names = model.parameter_names
                    hint = (
                        ' or send "parameters": {"truncation": true}' if names is None or "truncation" in names else ""
                    )
                    where = "the input" if len(inputs) == 1 else f"input {i}"
                    raise TooLarge(f"{where} has {n} tokens; this model takes at most {limit}: shorten it{hint}")
        return prepared, min(max(counts), limit)

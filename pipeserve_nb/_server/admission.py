"""Admission: what a request must pass before it is queued, checked without running the model.

In order, for each request:

1. its parameter names are ones the model takes (else ``InvalidInput``, 400);
2. its texts are tokenized once, with the model's own tokenizer where it has one, and no
   input has more tokens than the model accepts, unless the request asks for
   ``"parameters": {"truncation": true}`` (else ``TooLarge``, 413);
3. the queue has room: fewer than ``max_queue`` requests wait (else ``Overloaded``, 503,
   with a ``Retry-After`` estimated from the recent batches).

What passes becomes an ``Admitted``: the inputs as the worker will pass them to the model
(token ids where the model takes them, so nothing is tokenized twice), the longest input's
tokens (what batch formation sorts by), and the parameters' canonical key (what requests
must share to run in one batch). The body's shape was checked before (``protocol``); what
only the model can find out (a parameter value it rejects) is found by the worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidInput, Overloaded, TooLarge
from .._models.spec import LoadedModel
from .stats import Stats

__all__ = ["Admission", "Admitted"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may be queued: its model inputs, longest token count and batching key."""

    inputs: list[Any]
    tokens: int
    key: str


class Admission:
    """The checks before the queue, for one model and one queue bound."""

    def __init__(self, model: LoadedModel, max_queue: int, stats: Stats) -> None:
        self.model = model
        self.max_queue = max_queue
        self.stats = stats

    def admit(self, inputs: list[Any], parameters: Mapping[str, Any], waiting: int) -> Admitted:
        """Check a request against the model and a queue holding ``waiting`` requests."""
        self._check_names(parameters)
        prepared, tokens = self._prepare(inputs, parameters)
        if waiting >= self.max_queue:
            raise Overloaded(
                f"the queue is full ({self.max_queue} requests waiting); retry later",
                retry_after_s=self._retry_after_s(waiting),
            )
        return Admitted(prepared, tokens, json.dumps(parameters, sort_keys=True, default=repr))

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

    def _retry_after_s(self, waiting: int) -> float:
        """Rough time to work off ``waiting`` requests, from the mean recent batch."""
        mean = self.stats.mean_batch()
        if mean is None:
            return 1.0
        inputs, seconds = mean
        return max(1.0, math.ceil(waiting / max(inputs, 1.0) * seconds))

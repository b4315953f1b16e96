"""The runner protocol: what is served, in three steps around the model.

A request's texts meet the model in three steps, each on the thread where it costs least:

1. ``prepare(texts, parameters)``, on the server's preparation thread (never on the event loop that
   parses HTTP), before the request is queued: turn the texts into what the model takes (token ids,
   say) and count each one's tokens. Batching sorts requests by those counts; a text over
   ``max_tokens`` is refused with 413 unless the request asks for ``truncation``.
2. ``run(inputs, parameters)``, on the one inference thread: one model call for a whole batch (the
   prepared inputs of several requests that share their parameters); one output per input, in order.
3. ``encode(output)``, right after the call, one output at a time: a JSON value for the answer. An
   output that cannot be encoded fails its own request only.

``max_tokens`` and ``parameter_names`` tell the server what to refuse before the queue.

A runner raises ``InvalidInput`` (from ``prepare`` or ``run``) for a request the model cannot take:
the caller gets 400 with the message. Any other exception from ``run`` is the model failing: if a
batch fails, each of its requests runs alone, and those that fail alone get 500 ``InferenceFailed``
(their batch-mates are still answered). The server never calls the model again to find out why.

Nothing in a runner is shared between batches by the server: a runner holds the model and whatever
it loaded once, and each call gets only its own inputs and parameters.

Example (a runner of your own, served as ``serve(Shout())``)::

    class Shout(Runner):
        parameter_names = frozenset({"times"})

        def run(self, inputs, parameters):
            return [text.upper() * parameters.get("times", 1) for text in inputs]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Prepared", "Runner", "to_jsonable"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request's texts made ready for the model: ``inputs`` for ``run`` (one per text), and each
    text's ``tokens`` (special tokens included, nothing truncated: what batching sorts by and what
    ``max_tokens`` limits)."""

    inputs: list[Any]
    tokens: list[int]


class Runner:
    """What is served: subclass it and override ``run`` (and ``prepare``, ``encode`` where the
    defaults do not fit). See the module docstring for where each step runs and why.

    Attributes:
        max_tokens: the most tokens one input may have (None: no limit).
        parameter_names: the parameter names ``run`` takes; a request naming another gets 400
            before the queue (None: any name is passed on).
        task: the pipeline task it serves (``"fill-mask"``), when it has one: what the try-it page
            draws its answers for and asks it (None: the page draws the answer by its shape).
    """

    max_tokens: int | None = None
    parameter_names: frozenset[str] | None = None
    task: str | None = None

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        """The texts as ``run`` takes them, and their lengths; by default the texts themselves,
        counted in characters (a model without a tokenizer)."""
        return Prepared(list(texts), [len(text) for text in texts])

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        """One model call on a batch: one output per input, in order."""
        raise NotImplementedError(f"{type(self).__name__} must define run(inputs, parameters)")

    def encode(self, output: Any) -> Any:
        """One output as a JSON value (tensors, numpy values and tuples become lists and numbers)."""
        return to_jsonable(output)


def to_jsonable(value: Any) -> Any:
    """Convert model outputs (tensors, numpy values, tuples) into plain JSON values.

    Non-finite floats become None, since JSON has no NaN or infinity.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"model output of type {type(value).__name__} cannot be sent as JSON")

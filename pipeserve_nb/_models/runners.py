"""The batch functions the worker calls: a pipeline, or a user's callable, made JSON-ready."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["PipelineRunner", "CallableRunner", "to_jsonable"]


class PipelineRunner:
    """Calls a transformers pipeline on a list, in one go, with ``batch_size``.

    A single input is passed on its own: some pipelines (fill-mask among them) unwrap a
    one-item list, so its answer could not be told apart from a list of answers.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __call__(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        if len(inputs) == 1:
            return [to_jsonable(self.pipe(inputs[0], **parameters))]
        outputs = self.pipe(inputs, batch_size=len(inputs), **parameters)
        return _checked(inputs, to_jsonable(list(outputs)))


class CallableRunner:
    """Calls a user function ``fn(inputs, **parameters)``."""

    def __init__(self, fn: Callable[..., Sequence[Any]]) -> None:
        self.fn = fn

    def __call__(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        return _checked(inputs, to_jsonable(list(self.fn(inputs, **parameters))))


def _checked(inputs: list[Any], outputs: list[Any]) -> list[Any]:
    if len(outputs) != len(inputs):
        raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(inputs)} inputs")
    return outputs


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

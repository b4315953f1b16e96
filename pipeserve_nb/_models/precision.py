"""Precision: the floating-point type a model runs in, chosen for what its device executes natively.

``dtype`` (a ``ModelSpec`` option, so ``serve()``, ``load_model()``, the command line and the
environment all take it) is one of:

- ``"auto"`` (the default): ``bfloat16`` where the device executes it natively (a CPU with
  AVX512-BF16 or AMX, a CUDA device of compute capability 8.0 or later), else ``float32``;
- ``"float32"``, ``"bfloat16"``, ``"float16"``: that type, refused (``InvalidSetting``) where
  the device does not execute it natively: emulated, a reduced type is slower than float32
  and still less exact, so there is nothing to gain.

A model pipeserve loads is loaded in float32 and its weights are then cast (``cast``): that
halves the one copy's memory, and measured on this machine's CPU it ran the bundled model
faster than autocast, which keeps the weights in float32 and converts them on every call
(``docs/precision.md``). What leaves the model is float32 again: the bundled embedder pools
and normalises in float32, pipelines' own post-processing turns logits into Python floats.

Detection asks torch itself (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``;
``torch.cuda.get_device_capability`` of the model's device): it reads the CPU's feature flags,
the same ones the kernels that would run the model dispatch on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidSetting

__all__ = ["DTYPES", "Native", "native", "resolve", "cast"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""The values the ``dtype`` option takes."""


@dataclass(frozen=True, slots=True)
class Native:
    """Which reduced types a device executes natively, and how that was found out."""

    bfloat16: bool
    float16: bool
    found: str

    def runs(self, dtype: str) -> bool:
        return dtype == "float32" or bool(getattr(self, dtype))


def _probe(module: Any, name: str) -> bool:
    """A torch capability probe, False where this torch build does not have it."""
    fn = getattr(module, name, None)
    return bool(fn()) if callable(fn) else False


def native(device: Any) -> Native:
    """What ``device`` (a ``torch.device`` or its name) executes natively."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        cpu = torch.cpu
        avx512, amx = _probe(cpu, "_is_avx512_bf16_supported"), _probe(cpu, "_is_amx_tile_supported")
        fp16 = _probe(cpu, "_is_amx_fp16_supported") or _probe(cpu, "_is_avx512_fp16_supported")
        features = [n for n, on in (("AVX512-BF16", avx512), ("AMX", amx), ("FP16", fp16)) if on]
        return Native(avx512 or amx, fp16, f"CPU features: {', '.join(features) or 'none for reduced types'}")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)  # of this device, not the current one
        return Native(major >= 8, major * 10 + minor >= 53, f"CUDA compute capability {major}.{minor}")
    if device.type == "mps":
        return Native(False, True, "Apple MPS")
    return Native(False, False, f"{device.type}: not known to pipeserve")


def resolve(requested: str, device: Any, found: Native | None = None) -> str:
    """The dtype to run in on ``device`` for the option value ``requested`` (see the module docstring)."""
    found = native(device) if found is None else found
    if requested == "auto":
        return "bfloat16" if found.bfloat16 else "float32"
    if not found.runs(requested):
        raise InvalidSetting(
            f"dtype={requested!r}: {device} does not run {requested} natively ({found.found}); emulated it is "
            "slower than float32. Use dtype='auto' (the fastest exact-enough type here) or 'float32'"
        )
    return requested


def cast(model: Any, dtype: str) -> None:
    """Cast a torch module's floating-point weights to ``dtype`` in place, where they are another
    type (transformers loads a checkpoint in the type it was saved in)."""
    import torch

    target = getattr(torch, dtype)
    if getattr(model, "dtype", None) != target:
        model.to(target)

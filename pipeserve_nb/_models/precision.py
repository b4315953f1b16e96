"""Precision: the floating-point type a model runs in, chosen for what its device executes natively.

``dtype`` (a ``ModelSpec`` option, so ``serve()``, ``load_model()``, the command line and the
environment all take it) is one of:

- ``"auto"`` (the default): ``bfloat16`` where the device executes it natively (a CPU with
  AVX512-BF16 or AMX, a CUDA device of compute capability 8.0 or later), else ``float32``;
- ``"float32"``, ``"bfloat16"``, ``"float16"``: that type, refused (``InvalidSetting``) where
  the device does not execute it natively: emulated, a reduced type is slower than float32
  and still less exact, so there is nothing to gain.

A model pipeserve loads is loaded in float32 and its weights are then cast (``cast``): that
halves the one copy's memory and spares the conversion that autocast, which keeps the weights
in float32, makes on every call (``docs/precision.md`` compares the two). What leaves the model
is float32 again: the bundled embedder pools and normalises in float32, pipelines' own
post-processing turns logits into Python floats.

Detection asks torch itself (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``,
``_is_amx_fp16_supported``; ``torch.cuda.get_device_capability`` of the model's device): it reads
the CPU's feature flags, the same ones the kernels that would run the model dispatch on. torch has no
probe for AVX512-FP16, which its float16 kernels also use; on Linux that flag is read from
``/proc/cpuinfo``.

Native is not always faster on a CPU: the same flag runs bfloat16 layers slower than float32 on
some CPUs and faster on others (``docs/precision.md`` has the ones measured). So on a CPU ``"auto"``
also times a layer of the model's width in both types (``speedup``, a fraction of a second, once per
process and width) and keeps float32 unless bfloat16 is clearly faster. On CUDA a
native bfloat16 is always faster and is taken without timing.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import InvalidSetting

__all__ = ["DTYPES", "Native", "native", "speedup", "resolve", "cast"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""The values the ``dtype`` option takes."""

AUTO_MIN_SPEEDUP = 1.1
"""On a CPU, ``"auto"`` takes bfloat16 only when its layers ran at least this much faster than
float32's: less exact answers for a gain within the timing's noise would be a bad trade."""


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


@functools.cache
def _linux_cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere): for those torch has no probe for."""
    cpuinfo = Path("/proc/cpuinfo")
    if not sys.platform.startswith("linux") or not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native(device: Any) -> Native:
    """What ``device`` (a ``torch.device`` or its name) executes natively."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        cpu = torch.cpu
        avx512, amx = _probe(cpu, "_is_avx512_bf16_supported"), _probe(cpu, "_is_amx_tile_supported")
        fp16 = _probe(cpu, "_is_amx_fp16_supported") or "avx512_fp16" in _linux_cpu_flags()
        features = [n for n, on in (("AVX512-BF16", avx512), ("AMX", amx), ("FP16", fp16)) if on]
        return Native(avx512 or amx, fp16, f"CPU features: {', '.join(features) or 'none for reduced types'}")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)  # of this device, not the current one
        return Native(major >= 8, major * 10 + minor >= 53, f"CUDA compute capability {major}.{minor}")
    if device.type == "mps":
        return Native(False, True, "Apple MPS")
    return Native(False, False, f"{device.type}: not known to pipeserve")


@functools.cache
def speedup(dtype: str, width: int, threads: int) -> float:
    """How many times faster than float32 this CPU runs a layer of ``width`` in ``dtype``: the
    feed-forward up-projection of a transformer block (``width`` -> 4 x ``width``) on a batch of rows,
    best of 5 rounds, the two types interleaved. ``threads`` is torch's thread count (part of the key:
    the answer depends on it). Measured once per process and key."""
    import torch

    rows = max(16, min(512, 100_000_000 // (width * width)))  # a batch of 32 x 16 tokens, fewer rows when wide
    inputs = {t: torch.randn(rows, width).to(getattr(torch, t)) for t in ("float32", dtype)}
    weights = {t: torch.randn(4 * width, width).to(getattr(torch, t)) for t in ("float32", dtype)}
    best = dict.fromkeys(inputs, float("inf"))
    with torch.inference_mode():
        for round_ in range(7):
            for t in inputs:
                start = time.perf_counter()
                for _ in range(3):
                    torch.nn.functional.linear(inputs[t], weights[t])
                if round_ >= 2:  # the first rounds warm the kernels and their caches
                    best[t] = min(best[t], time.perf_counter() - start)
    return best["float32"] / best[dtype]


def resolve(requested: str, device: Any, found: Native | None = None, *, width: int = 384) -> str:
    """The dtype to run in on ``device`` for the option value ``requested`` (see the module docstring);
    ``width`` is the model's hidden size, the shape ``"auto"`` times on a CPU."""
    import torch

    found = native(device) if found is None else found
    if requested == "auto":
        if not found.bfloat16:
            return "float32"
        if torch.device(device).type != "cpu":
            return "bfloat16"
        return "bfloat16" if speedup("bfloat16", width, torch.get_num_threads()) >= AUTO_MIN_SPEEDUP else "float32"
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

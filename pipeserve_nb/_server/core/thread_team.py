"""PyTorch's CPU thread teams, and letting the calling thread's go (``ServerConfig(cores="own")``).

PyTorch's OpenMP runtime on Linux (libgomp, shipped in PyTorch's wheels) keeps a team of worker threads
for every thread that ran a parallel op, until that thread ends. In a notebook the kernel's thread loads
the model (where ``dtype="auto"`` times bfloat16 at load, that runs a parallel op) or calls it, so its idle
team stays beside the one the server's inference thread uses.
libgomp chooses how idle workers wait from how many threads it manages against the cores: with more
threads than cores (two teams of two on two cores) they sleep at once and every op pays to wake its
worker; with no more (the server's team alone) they spin between ops. Spinning is faster alone, and
several times slower when another process computes on the same cores; sleeping is polite and slower
alone. libgomp reads its own settings only when it loads, before a notebook runs any of our code; what
can be changed later is how many teams there are. ``docs/performance.md`` has the figures.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Literal

__all__ = ["Released", "release_team"]

Released = Literal["released", "not libgomp"]
"""What ``release_team`` did: the calling thread has no team now, or the runtime is not libgomp."""

_OMP_PAUSE_SOFT = 1  # OpenMP 5.0's omp_pause_soft


def release_team() -> Released:
    """End the calling thread's idle OpenMP team (OpenMP 5.0's ``omp_pause_resource_all``, which libgomp
    implements for the calling thread's pool of workers): a thread with no team, or a process where
    PyTorch is not imported yet, has none to end. The thread gets a new team at its next parallel op.

    ``"not libgomp"`` where PyTorch's OpenMP runtime is another (macOS and Windows builds, some conda
    builds) or cannot be found: nothing changed.
    """
    if "torch" not in sys.modules:
        return "released"  # no PyTorch op has run in this process: no thread has a team
    library = _libgomp()
    if library is None:
        return "not libgomp"
    pause = library.omp_pause_resource_all
    pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
    return "released" if pause(_OMP_PAUSE_SOFT) == 0 else "not libgomp"


def _libgomp() -> ctypes.CDLL | None:
    """The libgomp this process has loaded (PyTorch's own copy, e.g. ``torch/lib/libgomp.so.1``), if any."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    loaded = {line.split()[-1] for line in maps.read_text().splitlines() if "libgomp" in line.rsplit("/", 1)[-1]}
    return ctypes.CDLL(min(loaded)) if loaded else None  # already loaded: the same library, not a second copy

"""Where a load's time went on the server: how long the model was busy, how fast it served while
busy, and which threads took the machine's cores (from the server's counters and CPU clocks).

Goodput is the product of the first two: ``model_busy_share * items_per_busy_s``, so two runs'
goodput ratio splits into a ratio of busy time and a ratio of speed while busy. The server's event
loop is the thread named ``pipeserve-server-<name>``, as ``serve()`` names it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pipeserve_nb as ps


@dataclass(frozen=True)
class Split:
    """One load's share of time and cores; the server ran in this process."""

    model_busy_share: float
    """Seconds the model was inside a call, over the load's wall time (first send to last answer)."""
    items_per_busy_s: float
    """Answers with status 200 per second the model was busy."""
    padding_efficiency: float | None
    """Real tokens over padded tokens in the load's batches."""
    loop_cores: float
    """CPU of the server's event-loop thread over the wall time (HTTP, parsing, refusals)."""
    model_cores: float
    """CPU of the rest of this process over the wall time: the model's threads (and, little, this
    benchmark's own)."""
    generator_cores: float | None
    """CPU of the load generator (its own process) over the wall time."""


def measured(server: ps.ServerHandle, run: Callable[[], ps.LoadResult]) -> tuple[ps.LoadResult, Split]:
    """Run ``run()`` (a load against ``server``, in this process) and say where its time went."""
    loop = next(t for t in threading.enumerate() if t.name == f"pipeserve-server-{server.name}")
    assert loop.ident is not None
    loop_clock = time.pthread_getcpuclockid(loop.ident)
    first, loop_first, process_first = server.stats(), time.clock_gettime(loop_clock), time.process_time()
    result = run()
    wall = result.summary.wall_s  # first send to last answer: not the generator's start-up, when all idles
    loop_s, process_s = time.clock_gettime(loop_clock) - loop_first, time.process_time() - process_first
    last = server.stats()
    busy = last["model_busy_s"] - first["model_busy_s"]
    real, padded = (_delta(first, last, k) for k in ("real_tokens", "padded_tokens"))
    ok = last["requests_by_status"].get("200", 0) - first["requests_by_status"].get("200", 0)
    cpu = result.generator_cpu_s
    return result, Split(
        model_busy_share=round(busy / wall, 3),
        items_per_busy_s=round(ok / busy, 1) if busy else 0.0,
        padding_efficiency=round(real / padded, 3) if padded else None,
        loop_cores=round(loop_s / wall, 3),
        model_cores=round((process_s - loop_s) / wall, 3),
        generator_cores=None if cpu is None else round(cpu / wall, 3),
    )


def _delta(first: dict[str, Any], last: dict[str, Any], key: str) -> int:
    return int(last[key]) - int(first[key])

"""What ``make bench`` runs: the server configurations and their labels, shared by the
measuring (``bench.py``) and the report (``report.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import pipeserve_nb as ps


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the full run, or a quick smoke run."""

    corpus: int
    limit_repeats: int
    batch_sizes: tuple[int, ...]
    c1_requests: int
    closed_duration_s: float
    open_duration_s: float


# closed loops of 10 s: c=32's p99 rests on ~20 samples
FULL = Sizes(corpus=256, limit_repeats=3, batch_sizes=(8, 16, 32, 64), c1_requests=150,
             closed_duration_s=10.0, open_duration_s=6.0)  # fmt: skip
QUICK = Sizes(corpus=32, limit_repeats=1, batch_sizes=(8, 16), c1_requests=10,
              closed_duration_s=0.4, open_duration_s=0.4)  # fmt: skip

SERVER_CONFIG = ps.ServerConfig()
"""Every pipeserve target runs with the defaults a user gets (the queue bound sheds overload)."""

DEFAULT_POLICY = ps.BatchPolicy()
BEST = (
    f"pipeserve: default (length-aware, cap {DEFAULT_POLICY.max_batch_size}, "
    f"call price {DEFAULT_POLICY.call_overhead_tokens:g})"
)
BEFORE = f"pipeserve: arrival order (cap {DEFAULT_POLICY.max_batch_size})"
CHEAP_CALLS = "pipeserve: length-aware, call price 10"
DEAR_CALLS = "pipeserve: length-aware, call price 160"
OURS = {
    "pipeserve: no batching": ps.BatchPolicy(max_batch_size=1),
    BEFORE: ps.BatchPolicy(sort_by_length=False),
    CHEAP_CALLS: ps.BatchPolicy(call_overhead_tokens=10),
    DEAR_CALLS: ps.BatchPolicy(call_overhead_tokens=160),
    BEST: DEFAULT_POLICY,
}
THREADS_ONE = "pipeserve: default, torch threads 1"
FLOAT32 = "pipeserve: default, float32 (dtype='float32')"
SEED = {
    "seed page: model on the event loop, one at a time": lambda model: ps.seed_page_app(model),
    "seed page: reset-timeout batching (1 ms, no cap, first-request bug fixed)": lambda model: ps.seed_page_app(
        model, batching=True
    ),
}
"""The seed page's two designs, each built around a model given to it."""

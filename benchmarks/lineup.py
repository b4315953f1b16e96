"""What ``make bench`` runs: the server configurations and their labels, shared by the
measuring (``bench.py``) and the report (``report.py``)."""

from __future__ import annotations

import pipeserve_nb as ps

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
SEED = {
    "seed page: model on the event loop, one at a time": lambda: ps.seed_page_app(),
    "seed page: reset-timeout batching (1 ms, no cap, first-request bug fixed)": lambda: ps.seed_page_app(
        batching=True
    ),
}

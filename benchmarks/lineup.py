"""What ``make bench`` runs: the server configurations and their labels, shared by the
measuring (``bench.py``) and the report (``report.py``)."""

from __future__ import annotations

import pipeserve_nb as ps

SERVER_CONFIG = ps.ServerConfig()
"""Every pipeserve target runs with the defaults a user gets (the queue bound sheds overload)."""

BEST = "pipeserve: default (length-aware, cap 8)"
BEFORE = "pipeserve: arrival order (cap 32)"
ARRIVAL_SAME_CAP = "pipeserve: arrival order (cap 8)"
OURS = {
    "pipeserve: no batching": ps.BatchPolicy(max_batch_size=1),
    BEFORE: ps.BatchPolicy(max_batch_size=32, sort_by_length=False),
    ARRIVAL_SAME_CAP: ps.BatchPolicy(max_batch_size=8, sort_by_length=False),
    "pipeserve: length-aware, cap 16": ps.BatchPolicy(max_batch_size=16),
    BEST: ps.BatchPolicy(),
}
THREADS_ONE = "pipeserve: default, torch threads 1"
SEED = {
    "seed page: model on the event loop, one at a time": lambda: ps.seed_page_app(),
    "seed page: reset-timeout batching (1 ms, no cap, first-request bug fixed)": lambda: ps.seed_page_app(
        batching=True
    ),
}

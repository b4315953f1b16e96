"""Serving metrics: counters, the batch-size histogram and latency percentiles.

Written only from the event loop's thread; ``snapshot()`` returns plain JSON values.
Percentiles are computed over a bounded window of the most recent requests.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

__all__ = ["Stats", "percentile"]

PERCENTILES = (50, 90, 99)


class Stats:
    """Counters and recent timings of one server."""

    def __init__(self, window: int = 10_000) -> None:
        self.requests_by_status: Counter[int] = Counter()
        self.batches = 0
        self.batch_sizes: Counter[int] = Counter()
        self.dropped_expired = 0
        self.cancelled_by_caller = 0
        self.queue_wait_s: deque[float] = deque(maxlen=window)
        self.inference_s: deque[float] = deque(maxlen=window)
        self.latency_s: deque[float] = deque(maxlen=window)

    def record_batch(self, size: int, inference_s: float, queue_waits_s: Iterable[float]) -> None:
        """A batch of ``size`` inputs ran in ``inference_s``; its requests waited as given."""
        self.batches += 1
        self.batch_sizes[size] += 1
        self.inference_s.append(inference_s)
        self.queue_wait_s.extend(queue_waits_s)

    def record_response(self, status: int, latency_s: float) -> None:
        """A request to ``POST /`` was answered with ``status`` after ``latency_s``."""
        self.requests_by_status[status] += 1
        self.latency_s.append(latency_s)

    def snapshot(self) -> dict[str, Any]:
        """The metrics as JSON-ready values (milliseconds for times)."""
        return {
            "requests": sum(self.requests_by_status.values()),
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "batches": self.batches,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "mean_batch_size": (
                sum(k * v for k, v in self.batch_sizes.items()) / self.batches if self.batches else None
            ),
            "queue_wait_ms": _summary(self.queue_wait_s),
            "inference_ms": _summary(self.inference_s),
            "latency_ms": _summary(self.latency_s),
        }


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q}")
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _summary(values_s: deque[float]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {"count": len(values_s)}
    for q in PERCENTILES:
        out[f"p{q}"] = round(percentile(values_s, q) * 1000, 3) if values_s else None
    out["max"] = round(max(values_s) * 1000, 3) if values_s else None
    return out

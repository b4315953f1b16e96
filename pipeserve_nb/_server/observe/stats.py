"""Serving metrics: every counter of one server, the batch-size histogram, latency percentiles.

The one home of the server's numbers: the edge records every answer and refusal, the batch loop records
batches, the engine records requests dropped before inference (by reason). Written only
from the event loop's thread; ``snapshot()`` returns plain JSON values for ``/stats``, and
every record also feeds the server's Prometheus metrics (``metrics``, ``/metrics``) and
its last seconds (``window``, ``/stats``' ``recent``), so they never disagree. Percentiles
are computed over a bounded window of the most recent requests.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from ..._percentile import percentiles
from .metrics import Metrics
from .window import RecentWindow

__all__ = ["Stats", "DROP_REASONS", "clock"]

clock = time.monotonic
"""The server's one clock for every wait, deadline and duration (the numbers are stamped with it too)."""

DROP_REASONS = ("expired", "client_gone", "stopping", "worker_died")
"""Why a request was answered before it reached the model, as ``/stats`` counts them."""

PERCENTILES = (50, 90, 99)


class Stats:
    """Counters and recent timings of one server."""

    def __init__(
        self, server: str = "default", window: int = 10_000, replica: str | None = None, model: str | None = None
    ) -> None:
        self.metrics = Metrics(server, replica, model or "default")
        self.metrics.declare_reasons(DROP_REASONS)
        self.recent = RecentWindow(clock)
        self.model_busy_s = 0.0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.requests_by_status: Counter[int] = Counter()
        self.batches = 0
        self.batch_sizes: Counter[int] = Counter()
        self.dropped: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
        self.queue_wait_s: deque[float] = deque(maxlen=window)
        self.inference_s: deque[float] = deque(maxlen=window)
        self.latency_s: deque[float] = deque(maxlen=window)

    def record_batch(
        self,
        size: int,
        inference_s: float,
        queue_waits_s: Iterable[float],
        real_tokens: int = 0,
        padded_tokens: int = 0,
    ) -> None:
        """A batch of ``size`` inputs (``real_tokens``, ``padded_tokens`` with padding) ran in
        ``inference_s``; the requests it started waited as given."""
        self.batches += 1
        self.batch_sizes[size] += 1
        self.inference_s.append(inference_s)
        self.model_busy_s += inference_s
        self.real_tokens += real_tokens
        self.padded_tokens += padded_tokens
        self.metrics.batch(size, inference_s, real_tokens, padded_tokens)
        self.recent.call(size, inference_s, real_tokens, padded_tokens)
        for wait in queue_waits_s:
            self.queue_wait_s.append(wait)
            self.metrics.queue_wait.observe(wait)

    def record_drop(self, reason: str) -> None:
        """A request was answered before it reached the model, for ``reason`` (``DROP_REASONS``)."""
        self.dropped[reason] += 1
        self.metrics.dropped(reason)

    def record_response(self, status: int, latency_s: float) -> None:
        """A request was answered with ``status`` after ``latency_s``: an answer of the model's route,
        or a refusal on any route (the edge's ``Counting`` decides which answers count)."""
        self.requests_by_status[status] += 1
        self.latency_s.append(latency_s)
        self.metrics.response(status, latency_s)
        self.recent.answer(status, latency_s)

    def mean_batch(self) -> tuple[float, float] | None:
        """``(inputs, seconds)`` of the mean recent batch, or None before the first."""
        if not self.batches or not self.inference_s:
            return None
        inputs = sum(k * v for k, v in self.batch_sizes.items()) / self.batches
        return inputs, sum(self.inference_s) / len(self.inference_s)

    def snapshot(self) -> dict[str, Any]:
        """The metrics as JSON-ready values (milliseconds for times)."""
        mean = self.mean_batch()
        return {
            "requests": sum(self.requests_by_status.values()),
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "dropped_before_inference": dict(self.dropped),
            "batches": self.batches,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "mean_batch_size": mean[0] if mean else None,
            "padding_efficiency": round(self.real_tokens / self.padded_tokens, 4) if self.padded_tokens else None,
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "model_busy_s": round(self.model_busy_s, 6),
            "queue_wait_ms": _summary(self.queue_wait_s),
            "inference_ms": _summary(self.inference_s),
            "latency_ms": _summary(self.latency_s),
            "recent": self.recent.snapshot(),
        }


def _summary(values_s: deque[float]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {"count": len(values_s)}
    found = percentiles(values_s, PERCENTILES) if values_s else [None] * len(PERCENTILES)
    for q, value in zip(PERCENTILES, found, strict=True):
        out[f"p{q}"] = None if value is None else round(value * 1000, 3)
    out["max"] = round(max(values_s) * 1000, 3) if values_s else None
    return out

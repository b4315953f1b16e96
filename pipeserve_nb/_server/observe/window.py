"""The server's recent numbers: what happened in the last ``window_s`` seconds, for ``/stats``.

``/stats``' other figures are totals since the start (or over the last 10,000 requests),
which change slowly once a server has run a while. A live view wants *now*: answers per
second, latency percentiles, batch sizes, padding and the model's busy share over the last
few seconds. ``RecentWindow`` keeps time-stamped records of answers and model calls and
forgets those older than its window whenever it is written or read.

Written and read on the event loop's thread only (like ``Stats``, which feeds it).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..._percentile import percentiles

__all__ = ["RecentWindow", "DEFAULT_WINDOW_S"]

DEFAULT_WINDOW_S = 10.0
"""How far back ``/stats``' ``recent`` section looks."""

_MAX_RECORDS = 200_000
"""A bound on memory whatever the rate (20,000 answers per second over 10 s)."""


class RecentWindow:
    """Answers and model calls of the last ``window_s`` seconds on ``clock``."""

    def __init__(self, clock: Callable[[], float], window_s: float = DEFAULT_WINDOW_S) -> None:
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        self._answers: deque[tuple[float, int, float]] = deque(maxlen=_MAX_RECORDS)  # (at, status, latency_s)
        self._calls: deque[tuple[float, int, float, int, int]] = deque(maxlen=_MAX_RECORDS)
        # (ended at, size, seconds, real tokens, padded tokens)

    def answer(self, status: int, latency_s: float) -> None:
        """A request was answered now with ``status`` after ``latency_s``."""
        self._answers.append((self._clock(), status, latency_s))

    def call(self, size: int, seconds: float, real_tokens: int, padded_tokens: int) -> None:
        """A model call of ``size`` inputs ended now after ``seconds``."""
        self._calls.append((self._clock(), size, seconds, real_tokens, padded_tokens))

    def snapshot(self) -> dict[str, Any]:
        """The window's numbers as JSON values (milliseconds for latencies).

        ``span_s`` is the time the window covers (shorter than ``window_s`` just after the
        start); rates and the busy share are over it. Latency percentiles are of answers
        with status 200 only: a fast refusal is not a fast answer.
        """
        now = self._clock()
        self._forget(now - self.window_s)
        span = min(self.window_s, now - self._started)
        statuses = Counter(status for _, status, _ in self._answers)
        ok = [latency for _, status, latency in self._answers if status == 200]
        p50, p99 = percentiles(ok, (50, 99)) if ok else (None, None)
        sizes = Counter(size for _, size, *_ in self._calls)
        real = sum(c[3] for c in self._calls)
        padded = sum(c[4] for c in self._calls)
        busy = sum(c[2] for c in self._calls)
        return {
            "span_s": round(span, 3),
            "answers_per_s": round(len(self._answers) / span, 2) if span > 0 else None,
            "ok_per_s": round(len(ok) / span, 2) if span > 0 else None,
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms": {
                "p50": None if p50 is None else round(p50 * 1000, 3),
                "p99": None if p99 is None else round(p99 * 1000, 3),
            },
            "batches": len(self._calls),
            "batch_size_histogram": {str(k): v for k, v in sorted(sizes.items())},
            "padding_efficiency": round(real / padded, 4) if padded else None,
            "model_busy_share": round(min(busy / span, 1.0), 4) if span > 0 else None,
        }

    def _forget(self, before: float) -> None:
        for records in (self._answers, self._calls):
            while records and records[0][0] < before:
                records.popleft()

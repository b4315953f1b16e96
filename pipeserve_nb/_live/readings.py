"""What the live view knows: successive readings of a server's ``/stats``, and the numbers it shows.

``History`` keeps the readings of the last minute; ``Numbers`` is what one panel shows,
derived from them: rates from the difference of the server's counters between readings
about ``RATE_LOOKBACK_S`` apart, the rest from the latest reading (its ``recent`` section
covers the server's last seconds). The panel draws ``Numbers``; tests compare them with
``/stats``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Reading",
    "History",
    "GenerationNumbers",
    "Numbers",
    "numbers",
    "trends",
    "status_groups",
    "size_buckets",
    "RATE_LOOKBACK_S",
]

RATE_LOOKBACK_S = 2.0
"""Rates are over about this long: short enough to follow a load, long enough not to flicker."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One ``/stats`` answer and when it was read (``time.monotonic()``)."""

    at_s: float
    stats: Mapping[str, Any]


class History:
    """The readings of the last ``keep_s`` seconds, oldest first."""

    def __init__(self, keep_s: float = 60.0) -> None:
        self.keep_s = keep_s
        self.readings: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        while self.readings and self.readings[0].at_s < reading.at_s - self.keep_s:
            self.readings.popleft()

    @property
    def latest(self) -> Reading | None:
        return self.readings[-1] if self.readings else None

    def of_model(self, name: str) -> History:
        """The readings of one model of a server with several (``/stats``' ``models`` section)."""
        history = History(self.keep_s)
        for reading in self.readings:
            stats = (reading.stats.get("models") or {}).get(name)
            if stats is not None:
                history.readings.append(Reading(reading.at_s, stats))
        return history

    def rate(self, index: int, count: Callable[[Mapping[str, Any]], float]) -> float | None:
        """Per second, how fast ``count(stats)`` grew up to reading ``index``, over about
        ``RATE_LOOKBACK_S``; None for the first reading."""
        now = self.readings[index]
        before = None
        for i in range(index - 1, -1, -1):
            before = self.readings[i]
            if now.at_s - before.at_s >= RATE_LOOKBACK_S:
                break
        if before is None or now.at_s <= before.at_s:
            return None
        return max(count(now.stats) - count(before.stats), 0.0) / (now.at_s - before.at_s)

    def series(self, value: Callable[[int], float | None]) -> list[float | None]:
        """``value(i)`` for every reading, oldest first."""
        return [value(i) for i in range(len(self.readings))]


@dataclass(frozen=True, slots=True)
class GenerationNumbers:
    """What a panel shows of a chat model's generations (``/stats`` ``generation``)."""

    tokens_per_s: float | None
    running: int
    waiting: int
    first_token_p50_ms: float | None
    first_token_p99_ms: float | None
    inter_token_p50_ms: float | None
    ended: dict[str, int]


@dataclass(frozen=True, slots=True)
class Numbers:
    """What one panel shows (None where the server has no such number yet)."""

    state: str
    model: str
    device: str | None
    dtype: str | None
    ok_per_s: float | None
    answers_per_s: float | None
    queue_depth: int
    running_batch: int | None
    batch_sizes: list[tuple[str, int]]
    padding_efficiency: float | None
    p50_ms: float | None
    p99_ms: float | None
    model_busy_share: float | None
    by_status: dict[str, int]
    requests: int
    window_s: float
    generation: GenerationNumbers | None = None
    """Set for a server of a chat model."""


def _ok_count(stats: Mapping[str, Any]) -> float:
    return float(stats["requests_by_status"].get("200", 0))


def _answer_count(stats: Mapping[str, Any]) -> float:
    return float(stats["requests"])


def numbers(history: History) -> Numbers:
    """The numbers of the latest reading (``history`` must have one)."""
    stats = history.readings[-1].stats
    recent = stats["recent"]
    running = stats.get("running_batch")
    last = len(history.readings) - 1
    return Numbers(
        state=str(stats["state"]),
        model=str(stats["model"]),
        device=stats.get("device"),
        dtype=stats.get("dtype"),
        ok_per_s=history.rate(last, _ok_count),
        answers_per_s=history.rate(last, _answer_count),
        queue_depth=int(stats["queue_depth"]),
        running_batch=running["size"] if running else None,
        batch_sizes=size_buckets(recent["batch_size_histogram"]),
        padding_efficiency=recent["padding_efficiency"],
        p50_ms=recent["latency_ms"]["p50"],
        p99_ms=recent["latency_ms"]["p99"],
        model_busy_share=recent["model_busy_share"],
        by_status=status_groups(stats["requests_by_status"]),
        requests=int(stats["requests"]),
        window_s=float(recent["span_s"]),
        generation=_generation(history, last),
    )


def _tokens(stats: Mapping[str, Any]) -> float:
    report = stats.get("generation")
    return 0.0 if report is None else float(report["completion_tokens"])


def _generation(history: History, index: int) -> GenerationNumbers | None:
    report = history.readings[index].stats.get("generation")
    if report is None:
        return None
    first, between = report["time_to_first_token_ms"] or {}, report["inter_token_ms"] or {}
    return GenerationNumbers(
        tokens_per_s=history.rate(index, _tokens),
        running=int(report["running"]),
        waiting=int(report["waiting"]),
        first_token_p50_ms=first.get("p50"),
        first_token_p99_ms=first.get("p99"),
        inter_token_p50_ms=between.get("p50"),
        ended={reason: int(n) for reason, n in report["ended"].items()},
    )


def status_groups(by_status: Mapping[str, int]) -> dict[str, int]:
    """Answers grouped as a reader of a serving dashboard groups them: 200, 4xx (499: the
    client left), 503 (refused), 504 (timed out), other 5xx."""
    groups = {"200": 0, "4xx": 0, "503": 0, "504": 0, "5xx": 0}
    for status, n in by_status.items():
        code = int(status)
        if str(code) in ("200", "503", "504"):
            groups[str(code)] += n
        elif 400 <= code < 500:
            groups["4xx"] += n
        elif code >= 500:
            groups["5xx"] += n
    return groups


def size_buckets(histogram: Mapping[str, int]) -> list[tuple[str, int]]:
    """Model calls by batch size in powers of two, labelled by their upper end (1, 2, ≤4 for 3-4,
    ≤8 for 5-8, ...), up to the largest seen."""
    if not histogram:
        return []
    largest = max(int(k) for k in histogram)
    buckets: list[tuple[str, int]] = []
    low, high = 1, 1
    while low <= largest:
        count = sum(n for k, n in histogram.items() if low <= int(k) <= high)
        buckets.append((str(high) if low == high else f"≤{high}", count))
        low, high = high + 1, high * 2
    return buckets


def trends(history: History) -> dict[str, list[float | None]]:
    """The series the panel draws, one value per reading: answers with status 200 per second,
    requests waiting, and the p99 latency (ms) of the server's recent window; for a chat model's server
    also tokens generated per second and generations running and waiting."""
    readings = history.readings
    series = {
        "ok_per_s": history.series(lambda i: history.rate(i, _ok_count)),
        "queue_depth": history.series(lambda i: float(readings[i].stats["queue_depth"])),
        "p99_ms": history.series(lambda i: readings[i].stats["recent"]["latency_ms"]["p99"]),
    }
    if readings[-1].stats.get("generation") is not None:

        def streams(i: int, kind: str) -> float | None:
            report = readings[i].stats.get("generation")
            return None if report is None else float(report[kind])

        series["tokens_per_s"] = history.series(lambda i: history.rate(i, _tokens))
        series["streams"] = history.series(lambda i: streams(i, "running"))
        series["streams_waiting"] = history.series(lambda i: streams(i, "waiting"))
    return series

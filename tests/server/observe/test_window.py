"""``/stats``' recent window: only the last seconds count, rates over the time covered, latency
percentiles of successful answers only."""

from __future__ import annotations

import httpx

from pipeserve_nb import LoadedModel, serve
from pipeserve_nb._server.observe.window import RecentWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_window_forgets_what_is_older_than_it_and_rates_over_the_span_covered() -> None:
    clock = Clock()
    window = RecentWindow(clock, window_s=10.0)
    clock.now += 4.0
    for ms in (10, 20, 30, 40):
        window.answer(200, ms / 1000)
    window.answer(503, 0.001)  # a fast refusal is not a fast answer
    window.call(size=4, seconds=0.5, real_tokens=30, padded_tokens=40)
    first = window.snapshot()
    assert first["span_s"] == 4.0 and first["answers_per_s"] == 1.25 and first["ok_per_s"] == 1.0
    assert first["by_status"] == {"200": 4, "503": 1}
    assert first["latency_ms"] == {"p50": 20.0, "p99": 40.0}
    assert first["batch_size_histogram"] == {"4": 1} and first["padding_efficiency"] == 0.75
    assert first["model_busy_share"] == 0.125

    clock.now += 10.5  # everything above is now older than the window
    window.answer(200, 0.5)
    later = window.snapshot()
    assert later["span_s"] == 10.0 and later["by_status"] == {"200": 1} and later["batches"] == 0
    assert later["latency_ms"] == {"p50": 500.0, "p99": 500.0}
    assert later["padding_efficiency"] is None and later["model_busy_share"] == 0.0


def test_stats_shows_the_recent_window_and_the_running_batch(embedder: LoadedModel) -> None:
    with serve(embedder, name="window-test") as server:
        for i in range(5):
            assert httpx.post(server.url, content=f"text {i}".encode(), timeout=30).status_code == 200
        stats = server.stats()
    recent = stats["recent"]
    assert recent["by_status"] == {"200": 5} and sum(recent["batch_size_histogram"].values()) == stats["batches"]
    assert recent["padding_efficiency"] == stats["padding_efficiency"]
    assert stats["running_batch"] is None  # nothing runs between requests
    assert stats["real_tokens"] <= stats["padded_tokens"] and stats["model_busy_s"] > 0

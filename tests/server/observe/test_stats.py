"""The server's numbers: each record feeds the counters, the percentiles, the last seconds and the
Prometheus metrics alike, so ``/stats`` and ``/metrics`` never disagree."""

from __future__ import annotations

import re

from pipeserve_nb._server.observe.stats import DROP_REASONS, Stats


def _sample(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{[^}}]*{selector}[^}}]*\}} ([\d.e+-]+)$", text, flags=re.M)
    assert found is not None, (name, labels)
    return float(found.group(1))


def test_every_record_reaches_the_snapshot_the_window_and_the_metrics() -> None:
    stats = Stats("numbers")
    stats.record_batch(3, 0.030, [0.001, 0.002, 0.003], real_tokens=30, padded_tokens=45)
    stats.record_batch(1, 0.010, [0.004], real_tokens=10, padded_tokens=10)
    for status, seconds in ((200, 0.05), (200, 0.07), (503, 0.001), (401, 0.0)):
        stats.record_response(status, seconds)
    stats.record_drop("expired")
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 4 and snapshot["requests_by_status"] == {"200": 2, "401": 1, "503": 1}
    assert snapshot["batches"] == 2 and snapshot["batch_size_histogram"] == {"1": 1, "3": 1}
    assert snapshot["mean_batch_size"] == 2.0 and snapshot["padding_efficiency"] == round(40 / 55, 4)
    assert snapshot["model_busy_s"] == 0.04 and snapshot["queue_wait_ms"]["count"] == 4
    assert snapshot["queue_wait_ms"]["max"] == 4.0 and snapshot["latency_ms"]["p50"] == 1.0  # nearest rank
    assert snapshot["dropped_before_inference"] == {reason: int(reason == "expired") for reason in DROP_REASONS}
    recent = snapshot["recent"]
    assert recent["by_status"] == {"200": 2, "401": 1, "503": 1} and recent["batches"] == 2
    metrics = stats.metrics.render().decode()
    assert _sample(metrics, "pipeserve_requests_total", server="numbers", status="200") == 2
    assert _sample(metrics, "pipeserve_requests_total", server="numbers", status="401") == 1
    assert _sample(metrics, "pipeserve_dropped_before_inference_total", reason="expired") == 1
    assert _sample(metrics, "pipeserve_dropped_before_inference_total", reason="client_gone") == 0  # declared
    assert _sample(metrics, "pipeserve_padded_tokens_total", server="numbers") == 55


def test_an_idle_server_reports_nothing_rather_than_made_up_numbers() -> None:
    snapshot = Stats().snapshot()
    assert snapshot["requests"] == 0 and snapshot["mean_batch_size"] is None
    assert snapshot["padding_efficiency"] is None and snapshot["latency_ms"]["p50"] is None
    assert Stats().mean_batch() is None

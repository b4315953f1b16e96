"""``python -m pipeserve_nb demo`` (what ``make demo`` runs), at a small size."""

from __future__ import annotations

import pytest

from pipeserve_nb._teaching.demo import run_demo


def test_demo_compares_policies_on_the_same_load_and_answers_every_request(capsys: pytest.CaptureFixture[str]) -> None:
    results = run_demo(requests=48, concurrency=8)
    out = capsys.readouterr().out
    labels = list(results)
    assert [label.split(" (")[0] for label in labels] == ["no batching", "dynamic batching", "dynamic batching"]
    rows = list(results.values())
    assert all(s.ok == s.requests == 48 for s in rows)
    assert rows[0].mean_batch_size == 1.0  # max_batch_size=1 never batches
    assert all(s.mean_batch_size is not None and 1.0 <= s.mean_batch_size <= 32 for s in rows[1:])
    assert all(s.goodput_rps > 0 and s.p50_ms is not None and s.p99_ms is not None for s in rows)
    assert "curl -X POST -d 'test sentence' http://127.0.0.1:" in out and "-> 384 floats" in out
    for label in labels[1:]:
        assert f"{label}: {results[label].goodput_rps / rows[0].goodput_rps:.2f}x" in out

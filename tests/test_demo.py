"""``python -m pipeserve_nb demo`` (what ``make demo`` runs), at a small size."""

from __future__ import annotations

import pytest

from pipeserve_nb._demo import run_demo


def test_demo_compares_policies_on_the_same_load_and_answers_every_request(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_demo(requests=48, concurrency=8)
    out = capsys.readouterr().out
    assert [r.label.split(" (")[0] for r in rows] == ["no batching", "dynamic batching", "dynamic batching"]
    assert all(r.ok == r.requests == 48 for r in rows)
    assert rows[0].mean_batch == 1.0  # max_batch_size=1 never batches
    assert all(1.0 <= r.mean_batch <= 32 for r in rows[1:])
    assert all(r.throughput_rps > 0 and 0 < r.p50_ms <= r.p99_ms for r in rows)
    assert "curl -X POST -d 'test sentence' http://127.0.0.1:" in out and "-> 384 floats" in out
    for r in rows[1:]:
        assert f"{r.label}: {r.throughput_rps / rows[0].throughput_rps:.2f}x" in out

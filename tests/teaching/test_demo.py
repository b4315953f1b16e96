"""``python -m pipeserve_nb demo`` (what ``make demo`` runs), at a small size."""

from __future__ import annotations

import statistics

import pytest

from pipeserve_nb._teaching.demo import POLICIES, ratios, run_demo


def test_demo_measures_each_policy_in_turning_rounds_on_one_model_copy(capsys: pytest.CaptureFixture[str]) -> None:
    results = run_demo(rounds=2, duration_s=1.0, concurrency=8)
    out = capsys.readouterr().out
    labels = list(results)
    assert labels == list(POLICIES)
    assert all(len(runs) == 2 for runs in results.values())  # every policy measured in every round
    runs = [run for runs in results.values() for run in runs]
    assert all(run.requests > 0 and run.ok == run.answered == run.requests for run in runs)  # each answered once
    assert all(run.mean_batch_size == 1.0 for run in results[labels[0]])  # max_batch_size=1 never batches
    assert all(run.mean_batch_size is not None and 1.0 <= run.mean_batch_size <= 32 for run in runs)
    assert "curl -X POST -d 'test sentence' http://127.0.0.1:" in out and "-> 384 floats" in out
    assert "one copy, under 3 policies" in out
    for label in labels[1:]:  # each ratio is the median of the rounds' own ratios, with their range
        found = ratios(results, label, labels[0])
        assert f"{label}: {statistics.median(found):.2f}x the throughput of {labels[0]}" in out
        assert f"({min(found):.2f}-{max(found):.2f}x over the rounds)" in out
    waiting = ratios(results, labels[2], labels[1])  # the 5 ms wait against the same cap without it
    assert f"{labels[2]}: {statistics.median(waiting):.2f}x the throughput of {labels[1]}" in out

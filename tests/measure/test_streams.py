"""``run_streams``: streaming clients in a closed loop against a real chat server, and what they report."""

from __future__ import annotations

import pytest

import pipeserve_nb as ps
from pipeserve_nb import LoadedModel, ServerConfig, serve


def test_every_answer_is_measured_with_the_servers_token_count(smollm2: LoadedModel) -> None:
    load = ps.StreamLoad(clients=3, requests_per_client=2, max_tokens=(3, 5))
    with serve(smollm2, config=ServerConfig(max_new_tokens=16), name="streams") as server:
        result = ps.run_streams(server, load)
        ended = server.stats()["generation"]["ended"]
    frame, summary = result.frame(), result.summary()
    assert len(frame) == 6 and set(frame.client) == {0, 1, 2} and (frame.status == 200).all()
    # request n (client + k x clients) asks budget max_tokens[n % 2]: clients 0 and 2 ask 3 then 5, client 1 5 then 3
    budgets = [3, 5, 5, 3, 3, 5]
    for tokens, reason, budget in zip(frame.tokens, frame.finish_reason, budgets, strict=True):
        assert tokens <= budget and (reason == "length") == (tokens == budget), (tokens, reason, budget)
    assert summary["tokens"] == frame.tokens.sum()
    assert set(frame.finish_reason) <= {"stop", "length"} and sum(ended.values()) == 6
    assert summary["answered"] == 6 and summary["by_status"] == {200: 6}
    assert summary["tokens_per_s"] == pytest.approx(summary["tokens"] / result.wall_s)
    assert (frame.ttft_ms > 0).all() and summary["ttft_p50_ms"] <= summary["ttft_p99_ms"]


def test_a_refused_answer_is_counted_by_its_status(smollm2: LoadedModel) -> None:
    with serve(smollm2, config=ServerConfig(max_new_tokens=4), name="streams-refused") as server:
        result = ps.run_streams(server, ps.StreamLoad(clients=1, requests_per_client=1, max_tokens=(8,)))
    assert result.summary()["by_status"] == {400: 1} and result.summary()["answered"] == 0
    assert result.answers[0].first_s is None and result.summary()["tokens_per_s"] == 0

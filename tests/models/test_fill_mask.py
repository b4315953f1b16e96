"""The seed page's fill-mask path, end to end, with a tiny BERT built and saved locally.

It goes through the same loading code a Hub id takes (``transformers.pipeline`` on a
model id or path) and through ``serve()``; ``tests/server/test_cli.py`` serves it from the
standalone command and ``uvicorn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from pipeserve_nb import serve


def assert_candidates(answer: Any, k: int | None = None) -> None:
    assert isinstance(answer, list) and answer
    if k is not None:
        assert len(answer) == k
    for candidate in answer:
        assert set(candidate) == {"score", "token", "token_str", "sequence"}
        assert 0 <= candidate["score"] <= 1 and isinstance(candidate["token"], int)
    assert [c["score"] for c in answer] == sorted((c["score"] for c in answer), reverse=True)


def test_seed_curl_call_answers_a_list_of_candidates(tiny_fill_mask: Path) -> None:
    with serve(str(tiny_fill_mask), task="fill-mask") as server:
        assert server.model == f"{tiny_fill_mask} (fill-mask)"
        # curl -X POST -d "test [MASK]" URL
        raw = httpx.post(server.url, content=b"test [MASK]", trust_env=False)
        assert raw.status_code == 200
        assert_candidates(raw.json(), k=5)
        assert all(c["sequence"].startswith("test") for c in raw.json())

        both = server.query(["test [MASK]", "hello [MASK] world"], parameters={"top_k": 2})
        assert len(both) == 2
        for answer in both:
            assert_candidates(answer, k=2)
        assert both[0] == raw.json()[:2]


def test_a_ready_pipeline_object_can_be_served(tiny_fill_mask: Path) -> None:
    from transformers import pipeline

    pipe = pipeline("fill-mask", model=str(tiny_fill_mask))
    with serve(pipe) as server:
        assert server.model.startswith("FillMaskPipeline(")
        assert_candidates(server.query("hello [MASK]"))
        refused = httpx.post(server.url, json={"inputs": "no mask here"}, trust_env=False)
        assert refused.status_code == 400  # the caller's text, refused before the queue: not a model failure
        assert refused.json()["error"] == {
            "type": "InvalidInput",
            "message": "a fill-mask model needs its mask token '[MASK]' in each input; the input has none",
        }
        second = httpx.post(server.url, json={"inputs": ["a [MASK]", "none"]}, trust_env=False).json()["error"]
        assert second["message"].endswith("input 1 has none")
        assert server.stats()["batches"] == 1  # neither reached the model


def test_parameters_and_lengths_the_pipeline_refuses_are_4xx_and_say_why(tiny_fill_mask: Path) -> None:
    with serve(str(tiny_fill_mask), task="fill-mask") as server:

        def post(body: dict[str, Any]) -> tuple[int, dict[str, str]]:
            r = httpx.post(server.url, json=body, trust_env=False)
            return r.status_code, r.json().get("error", {}) if isinstance(r.json(), dict) else {}

        status, error = post({"inputs": "test [MASK]", "parameters": {"topk": 2}})
        assert status == 400
        assert (
            error["message"]
            == "unknown parameter(s) ['topk'] for this model; it takes: targets, tokenizer_kwargs, top_k"
        )
        status, error = post({"inputs": ["test [MASK]", "a [MASK]"], "parameters": {"targets": 7}})
        assert status == 400 and error["message"].startswith("the model rejected the parameter value(s) of ['targets']")
        status, error = post({"inputs": "test " * 70 + "[MASK]"})  # the tiny model has 64 positions
        assert (status, error["type"]) == (413, "TooLarge")
        assert error["message"] == "the input has 73 tokens; this model takes at most 64: shorten it"
        assert_candidates(server.query("test [MASK]", parameters={"top_k": 3}), k=3)

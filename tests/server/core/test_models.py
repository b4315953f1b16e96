"""Several models in one server: an engine each, one inference thread per device, routing by name.

Two models of the user's own (callables that note where and when they run) behind a real server: each
request reaches the model it names, both models' calls run on the one inference thread and never at the
same time, and ``/stats`` and ``/metrics`` keep each model's numbers apart.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import httpx
import pytest

from pipeserve_nb import BatchPolicy, InvalidSetting, ServerError, serve
from pipeserve_nb._models.naming import named, split_named


class Noting:
    """A model that answers ``name:text`` and notes the thread of each call and how many calls overlap."""

    running = 0
    most_at_once = 0
    threads: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __call__(self, inputs: list[str], **parameters: Any) -> list[str]:
        cls = Noting
        with cls.lock:
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
            cls.threads.add(threading.current_thread().name)
        try:
            total = sum(i * i for i in range(20_000))  # a little work, so that calls of both models could overlap
            return [f"{self.__name__}:{text}:{total > 0}" for text in inputs]
        finally:
            with cls.lock:
                cls.running -= 1


def test_requests_route_by_name_and_two_models_share_one_thread_one_call_at_a_time() -> None:
    Noting.most_at_once, Noting.threads = 0, set()
    policy = BatchPolicy(max_batch_size=4)
    with serve(Noting("upper"), Noting("lower"), policy=policy, name="two-models") as server:
        assert server.models == ["upper", "lower"]

        def ask(i: int) -> str:
            path = "/" if i % 3 == 0 else f"/models/{'upper' if i % 3 == 1 else 'lower'}"
            answer: str = httpx.post(server.url + path, content=f"t{i}".encode(), timeout=30).json()
            return answer

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(60)))
        for i, answer in enumerate(answers):
            expected = "lower" if i % 3 == 2 else "upper"  # POST / is the first model's
            assert answer == f"{expected}:t{i}:True"
        assert Noting.threads == {"pipeserve-inference"} and Noting.most_at_once == 1
        missing = httpx.post(f"{server.url}/models/nope", content=b"x", timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "ModelNotFound"
        stats = httpx.get(f"{server.url}/stats", timeout=10).json()
        assert stats["default_model"] == "upper" and set(stats["models"]) == {"upper", "lower"}
        assert stats["models"]["upper"]["requests_by_status"]["200"] == 40
        assert stats["models"]["lower"]["requests_by_status"]["200"] == 20
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert metrics.count("# TYPE pipeserve_requests_total counter") == 1  # each family once, both models in it
        assert 'pipeserve_requests_total{model="lower",server="two-models",status="200"} 20.0' in metrics
        health = server.health()
        assert health["status"] == "ok" and set(health["models"]) == {"upper", "lower"}
        # the handle's query names a model as the path does
        assert server.query("q", model="lower") == "lower:q:True" and server.query("q") == "upper:q:True"
        with pytest.raises(ServerError) as unknown:
            server.query("q", model="nope")
        assert unknown.value.status == 404 and unknown.value.type == "ModelNotFound"


def test_names_are_given_or_taken_from_the_model_and_never_shared() -> None:
    assert split_named("emb=minilm") == ("emb", "minilm")
    assert split_named("./models/a=b") == (None, "./models/a=b")  # a path, not a name
    assert list(named(["minilm", "smollm2"])) == ["minilm", "smollm2"]
    assert list(named(["emb=minilm", None])) == ["emb", "minilm"]  # None: the bundled embedder
    assert list(named(["org/some-model"])) == ["org/some-model"]  # a Hub id as written
    with pytest.raises(InvalidSetting, match="two models are named 'minilm'"):
        named(["minilm", None])
    with pytest.raises(InvalidSetting, match="at least one model"):
        named([])

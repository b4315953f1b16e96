"""The ASGI app in-process (Starlette's TestClient runs its lifespan): statuses and bodies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from pipeserve_nb import BatchPolicy, ServerConfig
from pipeserve_nb._app import create_app
from pipeserve_nb._engine import Engine
from pipeserve_nb._models import ModelSpec


def echo(inputs: list[str], **parameters: Any) -> list[Any]:
    if "boom" in inputs:
        raise KeyError("boom")
    return [{"text": x, "length": len(x), **parameters} for x in inputs]


@pytest.fixture
def client() -> Iterator[TestClient]:
    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig())
    with TestClient(create_app(engine), raise_server_exceptions=False) as c:
        yield c


def test_raw_and_json_bodies_answer_in_the_shape_asked(client: TestClient) -> None:
    assert client.post("/", content=b"hello").json() == {"text": "hello", "length": 5}
    assert client.post("/", json={"inputs": "hi"}).json() == {"text": "hi", "length": 2}
    r = client.post("/", json={"inputs": ["a", "bb"], "parameters": {"tag": 1}})
    assert r.json() == [{"text": "a", "length": 1, "tag": 1}, {"text": "bb", "length": 2, "tag": 1}]
    assert r.headers["x-batch-size"] == "2"
    assert float(r.headers["x-queue-wait-ms"]) >= 0 and float(r.headers["x-inference-ms"]) >= 0


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "kind"),
    [
        ("POST", "/", {"content": b""}, 400, "InvalidInput"),
        ("POST", "/", {"json": {"inputs": 5}}, 400, "InvalidInput"),
        ("POST", "/", {"content": b"x", "headers": {"content-type": "image/png"}}, 415, "UnsupportedMediaType"),
        ("POST", "/", {"json": {"inputs": "boom"}}, 500, "InferenceFailed"),
        ("GET", "/nope", {}, 404, "NotFound"),
        ("GET", "/", {}, 405, "MethodNotAllowed"),
        ("POST", "/health", {}, 405, "MethodNotAllowed"),
    ],
)
def test_every_error_is_json_with_type_and_message_and_serving_goes_on(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, kind: str
) -> None:
    r = client.request(method, path, **kwargs)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == kind and error["message"]
    assert "traceback" not in error and "Traceback" not in r.text
    assert client.post("/", content=b"after").status_code == 200


def test_model_errors_name_the_exception_but_carry_no_traceback_unless_debug() -> None:
    for debug in (False, True):
        engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig(debug=debug))
        with TestClient(create_app(engine)) as c:
            error = c.post("/", json={"inputs": "boom"}).json()["error"]
        assert error["message"] == "the model raised KeyError: 'boom'"
        assert ("traceback" in error) is debug
        if debug:
            assert "KeyError" in error["traceback"] and "echo" in error["traceback"]


def test_health_and_stats_report_the_engine(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queue_depth"] == 0 and health["model"] == "echo"
    client.post("/", content=b"one")
    client.post("/", content=b"")
    stats = client.get("/stats").json()
    assert stats["requests_by_status"] == {"200": 1, "400": 1}
    assert stats["batches"] == 1 and stats["batch_size_histogram"] == {"1": 1}
    assert stats["latency_ms"]["count"] == 2 and stats["queue_wait_ms"]["count"] == 1
    assert set(stats["latency_ms"]) == {"count", "p50", "p90", "p99", "max"}
    assert stats["policy"] == "BatchPolicy(max_batch_size=32, max_wait_s=0.0)"


def test_a_broken_model_loader_fails_the_lifespan_with_the_real_error(tmp_path: Any) -> None:
    engine = Engine(ModelSpec(model=str(tmp_path / "missing")), BatchPolicy(), ServerConfig())
    with pytest.raises(OSError), TestClient(create_app(engine)):
        pass
    assert isinstance(engine.failure, OSError)

"""The ASGI app in-process (Starlette's TestClient runs its lifespan): statuses and bodies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from pipeserve_nb import BatchPolicy, InvalidInput, ModelNotFound, RequestTimeout, ServerConfig
from pipeserve_nb._models.spec import ModelSpec
from pipeserve_nb._server.core.engine import Engine
from pipeserve_nb._server.edge.app import create_app
from pipeserve_nb._server.edge.errors import ERRORS, STATUS_OF


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
        ("PUT", "/", {}, 405, "MethodNotAllowed"),
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
        assert ("traceback" in error) is debug
        if debug:
            assert error["message"] == "the model raised KeyError for this request's inputs (KeyError: 'boom')"
            assert "KeyError" in error["traceback"] and "echo" in error["traceback"]
        else:  # the type only: an exception's text can carry paths and internals
            assert error["message"] == "the model raised KeyError for this request's inputs"


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
    assert stats["policy"] == repr(BatchPolicy())


def test_stats_report_how_soon_answered_clients_send_again() -> None:
    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig())
    with TestClient(create_app(engine)) as client:
        assert client.get("/stats").json()["call_cost"]["return_ms"] is None  # nobody was answered yet
        for text in ("one", "two", "three"):  # one client, each request sent on the answer to the last
            assert client.post("/", content=text.encode()).status_code == 200
        returned = client.get("/stats").json()["call_cost"]["return_ms"]
    assert returned is not None and returned >= 0.0


def test_a_broken_model_loader_fails_the_lifespan_with_the_real_error(tmp_path: Any) -> None:
    engine = Engine(ModelSpec(model=str(tmp_path / "missing")), BatchPolicy(), ServerConfig())
    with pytest.raises(OSError), TestClient(create_app(engine)):
        pass
    assert isinstance(engine.failure, OSError)


def strict(inputs: list[str], *, scale: int = 1) -> list[Any]:
    """A model with one parameter, which must be a positive int: it refuses other values itself."""
    if not isinstance(scale, int) or scale < 1:
        raise InvalidInput(f"scale must be a positive int, got {scale!r}")
    return [len(x) * scale for x in inputs]


def test_a_body_over_the_limit_is_refused_413_and_serving_goes_on() -> None:
    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig(max_body_bytes=64))
    with TestClient(create_app(engine)) as c:
        assert c.post("/", content=b"x" * 64).status_code == 200
        for body in (b"x" * 65, (b"x" * 40 for _ in range(3))):  # with Content-Length, then chunked
            r = c.post("/", content=body)
            assert r.status_code == 413 and r.json()["error"]["type"] == "TooLarge"
            assert "limit of 64 bytes" in r.json()["error"]["message"]
        assert c.post("/", content=b"after").status_code == 200


def test_parameters_the_model_does_not_take_or_rejects_are_400_not_500() -> None:
    engine = Engine(ModelSpec(model=strict), BatchPolicy(), ServerConfig())
    with TestClient(create_app(engine)) as c:
        assert c.post("/", json={"inputs": ["ab"], "parameters": {"scale": 3}}).json() == [6]
        unknown = c.post("/", json={"inputs": "ab", "parameters": {"scael": 3}})
        assert unknown.status_code == 400
        assert unknown.json()["error"]["message"] == "unknown parameter(s) ['scael'] for this model; it takes: scale"
        rejected = c.post("/", json={"inputs": "ab", "parameters": {"scale": -1}})
        assert rejected.status_code == 400 and rejected.json()["error"]["type"] == "InvalidInput"
        assert rejected.json()["error"]["message"] == "scale must be a positive int, got -1"
        assert c.get("/stats").json()["requests_by_status"] == {"200": 1, "400": 2}


def test_an_input_longer_than_the_model_takes_is_413_unless_truncation_is_asked() -> None:
    engine = Engine(ModelSpec(), BatchPolicy(), ServerConfig())  # the real bundled embedder, 256 tokens
    long_text = "word " * 300
    with TestClient(create_app(engine)) as c:
        r = c.post("/", json={"inputs": ["short", long_text]})
        assert r.status_code == 413
        assert r.json()["error"]["message"] == (
            "input 1 has 302 tokens; this model takes at most 256: "
            'shorten it or send "parameters": {"truncation": true}'
        )
        cut = c.post("/", json={"inputs": long_text, "parameters": {"truncation": True}})
        assert cut.status_code == 200 and len(cut.json()) == 384
        assert c.post("/", json={"inputs": "x", "parameters": {"pooling": "max"}}).status_code == 400
        assert c.get("/stats").json()["batches"] == 1  # only the truncated request reached the model


def test_with_a_token_every_route_needs_it_and_a_wrong_one_is_401() -> None:
    token = "s3cret-token-0123456789"
    engine = Engine(ModelSpec(model=echo), BatchPolicy(), ServerConfig(auth_token=token))
    assert token not in repr(engine.config)
    with TestClient(create_app(engine)) as c:
        for method, path in (("POST", "/"), ("GET", "/health"), ("GET", "/stats"), ("GET", "/openapi.json")):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": token}):
                r = c.request(method, path, content=b"hi", headers=headers)
                assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
                assert r.headers["www-authenticate"].startswith("Bearer")
        ok = c.post("/", content=b"hi", headers={"authorization": f"bearer {token}"})
        assert ok.status_code == 200 and ok.json() == {"text": "hi", "length": 2}


def test_openapi_describes_the_routes_limits_and_model_parameters() -> None:
    engine = Engine(ModelSpec(model=strict), BatchPolicy(), ServerConfig(max_inputs_per_request=7))
    with TestClient(create_app(engine)) as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and set(doc["paths"]) == {"/", "/health", "/stats"}
    post = doc["paths"]["/"]["post"]
    assert set(post["responses"]) == {"200", "400", "413", "415", "500", "503", "504"}
    body = post["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["inputs"]["oneOf"][1]["maxItems"] == 7
    assert body["parameters"]["properties"] == {"scale": {}} and body["parameters"]["additionalProperties"] is False


def test_every_failure_answers_with_the_status_of_the_one_error_table() -> None:
    engine = Engine(ModelSpec(model=strict), BatchPolicy(), ServerConfig(max_inputs_per_request=2))
    cases = {
        "InvalidInput": {"json": {"inputs": ""}},
        "TooLarge": {"json": {"inputs": ["a", "b", "c"]}},
        "UnsupportedMediaType": {"content": b"x", "headers": {"content-type": "image/png"}},
    }
    with TestClient(create_app(engine)) as c:
        for kind, request in cases.items():
            r = c.post("/", **request)  # type: ignore[arg-type]
            table = next(k for k in ERRORS if k.name == kind)
            assert (r.status_code, r.json()["error"]["type"]) == (table.status, kind)
        doc = c.get("/openapi.json").json()
    for exception, status in STATUS_OF.items():  # each failure's status is promised, with its type named
        if exception is ModelNotFound:  # POST / is the default model's: it never names one
            continue
        assert exception.__name__ in doc["paths"]["/"]["post"]["responses"][str(status)]["description"]


def test_the_documented_error_table_is_the_one_the_server_answers_from() -> None:
    from pipeserve_nb._server.edge.errors import markdown_table

    from ...helpers import ROOT

    assert markdown_table() in (ROOT / "docs" / "http-api.md").read_text()


def test_a_handler_cancelled_by_the_asgi_server_cancels_its_request_and_counts_499(gated: Any) -> None:
    """Ray Serve cancels a replica's handler when the client leaves: the queued request must never run."""
    import asyncio

    engine = Engine(ModelSpec(model=gated), BatchPolicy(max_batch_size=1), ServerConfig())
    app = create_app(engine)

    async def call(body: bytes) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect message: the server cancels instead
            return {}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
        scope |= {"http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": ""}
        await app(scope, receive, send)

    async def scenario() -> None:
        await engine.start()
        first = asyncio.create_task(call(b"runs first"))
        await asyncio.to_thread(gated.entered.wait, 30)
        second = asyncio.create_task(call(b"cancelled while queued"))
        while engine.queue_depth() < 1:
            await asyncio.sleep(0)  # the event loop's own turn: the second request reaches the queue
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        gated.gate.set()
        await first
        await engine.close()

    asyncio.run(scenario())
    assert gated.seen == ["runs first"]
    assert engine.stats.requests_by_status[499] == 1 and engine.stats.dropped["client_gone"] == 1


def test_one_failure_renders_in_either_face_with_the_same_status_and_a_timeout_is_not_to_be_retried() -> None:
    from pipeserve_nb._server.edge.errors import error_response

    late = RequestTimeout("no answer within timeout_s=1")
    native, openai = error_response(late, False), error_response(late, False, openai=True)
    assert native.status_code == openai.status_code == 504
    assert native.headers["x-should-retry"] == openai.headers["x-should-retry"] == "false"  # openai clients obey it
    assert orjson.loads(native.body) == {"error": {"type": "RequestTimeout", "message": str(late)}}
    assert orjson.loads(openai.body) == {
        "error": {"message": str(late), "type": "server_error", "param": None, "code": "request_timeout"}
    }
    refused = orjson.loads(error_response(InvalidInput("n must be 1", param="n"), False, openai=True).body)
    assert refused["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "n",
        "code": "invalid_input",
    }

"""OpenAI's API (``/v1``) over a server of two models, with the real ``openai`` client and with raw HTTP.

One server holds the bundled embedder and the bundled chat model (their session copies), as a small application
would. Every check is a mechanism: which route answered what shape, which chunk came in which order, which
request got which status and error body, and that the server keeps serving after each refusal.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from pipeserve_nb import LoadedModel, ServerConfig, serve

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PASSAGES = ["Paris is the capital of France.", "The Nile flows through Egypt and Sudan."]


@pytest.fixture
def server(embedder: LoadedModel, smollm2: LoadedModel) -> Iterator[Any]:
    config = ServerConfig(max_new_tokens=64, max_inputs_per_request=8)
    with serve({"minilm": embedder, "smollm2": smollm2}, config=config, name="openai-tests") as running:
        yield running


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    return server.openai(max_retries=0, timeout=60)  # type: ignore[no-any-return]


def _events(response: httpx.Response) -> list[Any]:
    data = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else orjson.loads(d) for d in data]


def test_models_lists_both_the_default_first_and_each_one_is_found_by_name(server: Any, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["minilm", "smollm2"] == server.models
    assert client.models.retrieve("smollm2").id == "smollm2"
    described = httpx.get(f"{server.url}/v1/models/HuggingFaceTB/SmolLM2-135M-Instruct", timeout=10).json()
    assert described["id"] == "smollm2"  # found by the name it describes itself with, too
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4")
    assert missing.value.code == "model_not_found"


def test_embeddings_match_the_native_route_in_floats_and_base64_with_usage(
    server: Any, client: openai.OpenAI, embedder: LoadedModel
) -> None:
    native = httpx.post(f"{server.url}/models/minilm", json={"inputs": PASSAGES}, timeout=30).json()
    made = client.embeddings.create(model="minilm", input=PASSAGES)  # the client asks for base64 and decodes it
    assert [d.index for d in made.data] == [0, 1] and made.model == "minilm"
    for got, expected in zip([d.embedding for d in made.data], native, strict=True):
        assert got == pytest.approx(expected, abs=1e-6)
    tokens = sum(embedder.runner.prepare(PASSAGES, {}).tokens)
    assert made.usage.prompt_tokens == made.usage.total_tokens == tokens
    raw = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": "minilm", "input": PASSAGES[0], "encoding_format": "float"}
    ).json()
    packed = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": "minilm", "input": PASSAGES[0], "encoding_format": "base64"}
    ).json()
    assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"
    vector = raw["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(vector)}f", base64.b64decode(packed["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(vector, abs=1e-6) and len(vector) == 384
    same = client.embeddings.create(model="minilm", input="a plain string", dimensions=384)
    assert len(same.data) == 1 and len(same.data[0].embedding) == 384


def test_a_streamed_chat_answer_in_openais_chunk_order_with_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=FRANCE,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *answer, last = chunks
    assert answer[0].choices[0].delta.role == "assistant"  # the first delta carries the role
    assert all(c.usage is None for c in answer)  # every chunk but the last has usage null
    reasons = [c.choices[0].finish_reason for c in answer]
    assert reasons[-1] in ("stop", "length") and set(reasons[:-1]) == {None}  # only in the last choice chunk
    assert last.choices == [] and last.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in answer)
    assert "Paris" in text and last.usage.completion_tokens >= 1
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_completions_whole_for_several_prompts_streamed_for_one_and_echoed(server: Any, client: openai.OpenAI) -> None:
    whole = client.completions.create(
        model="smollm2", prompt=["The capital of France is", "One, two,"], max_tokens=4, temperature=0
    )
    assert whole.object == "text_completion" and [c.index for c in whole.choices] == [0, 1]
    assert all(c.finish_reason in ("stop", "length") and c.text for c in whole.choices)
    echoed = client.completions.create(model="smollm2", prompt="One, two,", max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text == "One, two," + whole.choices[1].text
    body = {"model": "smollm2", "prompt": "One, two,", "max_tokens": 4, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
    assert events[-1] == "[DONE]"
    *pieces, ending, usage = events[:-1]
    assert all(e["object"] == "text_completion" and e["usage"] is None for e in [*pieces, ending])
    assert "".join(e["choices"][0]["text"] for e in pieces) == whole.choices[1].text
    assert ending["choices"][0]["finish_reason"] == "length" and usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "param"),
    [
        ("/v1/embeddings", {"model": "minilm", "input": []}, 400, "invalid_input", "input"),
        ("/v1/embeddings", {"model": "minilm", "input": [1, 2]}, 400, "invalid_input", "input"),
        ("/v1/embeddings", {"model": "minilm", "input": ["ok", " "]}, 400, "invalid_input", "input"),
        ("/v1/embeddings", {"model": "minilm", "input": ["a"] * 9}, 413, "too_large", "input"),
        ("/v1/embeddings", {"model": "minilm", "input": "x", "dimensions": 10}, 400, "invalid_input", "dimensions"),
        ("/v1/embeddings", {"model": "minilm", "input": "x", "encoding_format": "hex"}, 400, "invalid_input", None),
        ("/v1/embeddings", {"model": "smollm2", "input": "x"}, 400, "invalid_input", "model"),
        ("/v1/chat/completions", {"model": "gpt-4", "messages": FRANCE}, 404, "model_not_found", "model"),
        ("/v1/chat/completions", {"model": "minilm", "messages": FRANCE}, 400, "invalid_input", "model"),
        ("/v1/chat/completions", {"model": "smollm2", "messages": FRANCE, "max_tokens": 10**6}, 400, None, None),
        (
            "/v1/chat/completions",
            {"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            None,
            None,
        ),
        ("/v1/chat/completions", {"model": "smollm2", "messages": FRANCE, "n": 2}, 400, "invalid_input", "n"),
        ("/v1/chat/completions", {"model": 7, "messages": FRANCE}, 400, "invalid_input", "model"),
        ("/v1/completions", {"model": "smollm2", "prompt": ["a", "b"], "stream": True}, 400, "invalid_input", None),
        ("/v1/completions", {"model": "smollm2", "prompt": [1, 2, 3]}, 400, "invalid_input", "prompt"),
        ("/v1/completions", {"model": "smollm2", "prompt": "a", "suffix": "b"}, 400, "invalid_input", "suffix"),
        ("/v1/nothing", {}, 404, "not_found", None),
    ],
)
def test_bad_requests_get_a_4xx_in_openais_shape_and_the_server_keeps_serving(
    server: Any, path: str, body: Any, status: int, code: str | None, param: str | None
) -> None:
    refused = httpx.post(server.url + path, json=body, timeout=30)
    assert refused.status_code == status
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == (code or error["code"]) and error["param"] == (param or error["param"])
    answered = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": "still here"}, timeout=30)
    assert answered.status_code == 200 and server.health()["status"] == "ok"


def test_the_client_reads_each_refusal_as_its_own_exception(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=FRANCE)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found" and "minilm" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="smollm2", messages=FRANCE, max_tokens=100_000)  # type: ignore[arg-type]
    assert too_many.value.param == "max_tokens" and "cap of 64 tokens" in too_many.value.message


def test_the_bearer_token_is_the_clients_api_key_and_a_401_is_openais(smollm2: LoadedModel) -> None:
    with serve(
        smollm2, config=ServerConfig(auth_token="a-token-of-16-chars-or-more", max_new_tokens=8), name="openai-token"
    ) as server:
        answer = server.openai(max_retries=0).chat.completions.create(model="smollm2", messages=FRANCE, max_tokens=2)
        assert answer.choices[0].message.content
        stranger = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as denied:
            stranger.models.list()
        assert denied.value.code == "invalid_api_key"

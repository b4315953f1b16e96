"""``POST /v1/chat/completions`` through a real socket, with the bundled chat model, raw HTTP and the ``openai`` client.

One copy of the model (``load_model("smollm2")``) is served by a server per test, each with the
limits its test needs. Every check is a mechanism: which chunk came in which order, which request got
which status, how a generation ended as ``/stats`` counts it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from pipeserve_nb import LoadedModel, ServerConfig, ServerError, serve

from ...helpers import wait_for

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CHAT = "/v1/chat/completions"


@pytest.fixture
def server(smollm2: LoadedModel) -> Iterator[Any]:
    """A server of the loaded copy (no test leaves a server behind: ``conftest``); it starts in under a second."""
    with serve(smollm2, config=ServerConfig(max_new_tokens=64), name="chat-tests") as running:
        yield running


def _events(response: httpx.Response) -> list[Any]:
    """The data of each Server-Sent Event, parsed ("[DONE]" kept as it is)."""
    data = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else orjson.loads(d) for d in data]


def _generation(server: Any) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(f"{server.url}/stats", timeout=10).json()["generation"]
    return report


def test_a_whole_answer_in_openais_shape_with_usage(server: Any) -> None:
    answer = httpx.post(server.url + CHAT, json={"messages": FRANCE, "max_tokens": 16, "temperature": 0}, timeout=60)
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert (
        usage["completion_tokens"] >= 1 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'pipeserve_time_to_first_token_seconds_count{model="smollm2",server="chat-tests"} 1.0' in metrics
    assert 'pipeserve_inter_token_seconds_count{model="smollm2",server="chat-tests"} 1.0' in metrics
    recent = _generation(server)["recent"]
    assert recent["span_s"] > 0 and recent["tokens_per_s"] == pytest.approx(
        usage["completion_tokens"] / recent["span_s"], rel=0.01
    ), "every token of the one answer, over the time since the first call"


def test_a_streamed_answer_comes_in_chunks_in_openais_order(server: Any) -> None:
    request = {"messages": FRANCE, "max_tokens": 16, "temperature": 0}
    whole = httpx.post(server.url + CHAT, json=request, timeout=60).json()["choices"][0]["message"]["content"]
    streamed = {**request, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + CHAT, json=streamed, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    assert len({c["id"] for c in events[:-1]}) == 1, "one id for every chunk of the answer"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, "the first delta carries the role"
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[:-1] == [None] * (len(chunks) - 1) and reasons[-1] in ("stop", "length"), "only the last says why"
    assert len(chunks) >= 4, "several pieces, not one at the end"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] >= 1


def test_the_openai_client_streams_and_answers(server: Any) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="smollm2", messages=FRANCE, max_tokens=16, temperature=0, stream=True
        )
        if chunk.choices
    ]
    whole = client.chat.completions.create(model="smollm2", messages=FRANCE, max_tokens=16, temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content and "Paris" in whole.choices[0].message.content
    assert whole.usage is not None and whole.usage.completion_tokens >= 1


def test_server_stream_yields_the_answer_piece_by_piece_sync_and_async(server: Any) -> None:
    pieces = list(server.stream("What is the capital of France?", max_tokens=16, temperature=0))
    assert len(pieces) > 1 and "Paris" in "".join(pieces)

    async def collect() -> list[str]:
        return [text async for text in server.astream(FRANCE, max_tokens=16, temperature=0)]

    assert asyncio.run(collect()) == pieces


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, r"messages\[0\].role must be one of"),
        ({"messages": FRANCE, "n": 2}, "n must be 1"),
        ({"messages": FRANCE, "max_tokens": 65}, "max_tokens is 65, over this server's cap of 64 tokens"),
        ({"messages": FRANCE, "temperature": -1}, "temperature must be a number from 0 to 2"),
        ({"messages": FRANCE, "stream": "yes"}, "stream must be true or false"),
        ({"messages": FRANCE, "stream": True, "stream_options": []}, "stream_options must be an object"),
        ([1, 2], "the JSON body must be an object"),
    ],
)
def test_bad_chat_requests_get_400_with_what_to_change_and_the_server_keeps_serving(
    server: Any, body: Any, message: str
) -> None:
    refused = httpx.post(server.url + CHAT, json=body, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"  # OpenAI's shape on /v1
    assert refused.json()["error"]["code"] == "invalid_input"
    assert __import__("re").search(message, refused.json()["error"]["message"])
    with pytest.raises(ServerError, match="400 invalid_input: n must be 1"):
        list(server.stream("Hi", n=2))
    assert server.health()["status"] == "ok"


def test_a_client_that_leaves_mid_answer_frees_its_slot(server: Any) -> None:
    before = _generation(server)["ended"]["client_gone"]
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 64}
    long["temperature"] = 0  # greedy: it runs its 64 tokens (a sampled story could end before the client leaves)
    with httpx.stream("POST", server.url + CHAT, json={**long, "stream": True}, timeout=60) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: "):
            pass  # the first chunk arrived: the generation runs
    # the connection is closed: the server sees the client gone and ends the generation within one step
    wait_for(lambda: _generation(server)["ended"]["client_gone"] == before + 1, timeout_s=60)
    report = _generation(server)
    assert report["running"] == 0 and report["waiting"] == 0
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text  # the same numbers for Prometheus
    assert (
        f'pipeserve_generations_ended_total{{model="smollm2",reason="client_gone",server="chat-tests"}} {before + 1}.0'
        in metrics
    )
    assert 'pipeserve_generations_running{model="smollm2",server="chat-tests"} 0.0' in metrics
    tokens = next(line for line in metrics.splitlines() if line.startswith("pipeserve_completion_tokens_total"))
    assert float(tokens.split()[-1]) == report["completion_tokens"] >= 1


def test_a_newcomer_is_answered_while_a_long_stream_runs(server: Any) -> None:
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 64}
    short = {"messages": FRANCE, "max_tokens": 8, "temperature": 0}
    with httpx.stream("POST", server.url + CHAT, json={**long, "stream": True, "temperature": 0}, timeout=60) as first:
        lines = first.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        answered = httpx.post(server.url + CHAT, json=short, timeout=60)  # joins the running stream's batch
        assert answered.status_code == 200
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]" and len(rest) > 2, "the long stream was still being written"
    assert _generation(server)["mean_streams_per_step"] > 1


def test_a_model_without_a_chat_template_has_no_chat_route(embedder: LoadedModel) -> None:
    with serve(embedder, name="no-chat") as plain:
        refused = httpx.post(plain.url + CHAT, json={"messages": FRANCE}, timeout=30)
    assert refused.status_code == 400 and "is not a chat model" in refused.json()["error"]["message"]


def test_a_deadline_during_the_answer_ends_the_stream_with_its_reason_and_an_error_event(smollm2: LoadedModel) -> None:
    config = ServerConfig(max_new_tokens=512, timeout_s=3.0)  # the first token comes well within it; 512 do not
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 512}
    long["temperature"] = 0
    with serve(smollm2, config=config, name="chat-deadline") as short_lived:
        with httpx.stream("POST", short_lived.url + CHAT, json={**long, "stream": True}, timeout=60) as response:
            assert response.status_code == 200
            events = _events(response)
        report = _generation(short_lived)
    assert events[-1] == "[DONE]"
    last_choice = [e for e in events[:-1] if "choices" in e][-1]
    assert last_choice["choices"][0]["finish_reason"] == "expired"
    assert events[-2]["error"]["code"] == "expired"
    assert report["ended"]["expired"] == 1


def test_stop_ends_a_running_stream_within_a_step(smollm2: LoadedModel) -> None:
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 512}
    long["temperature"] = 0
    events: list[Any] = []
    started = threading.Event()
    stopping = serve(smollm2, config=ServerConfig(max_new_tokens=512), name="chat-stop")

    def read() -> None:
        with httpx.stream("POST", stopping.url + CHAT, json={**long, "stream": True}, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: ") :])
                    started.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(60)
    stopping.stop()
    reader.join(60)
    assert events[-1] == "[DONE]"
    assert orjson.loads(events[-3])["choices"][0]["finish_reason"] == "stopping"
    assert orjson.loads(events[-2])["error"]["code"] == "stopping"


# ``POST /`` on the chat model: the pipeline's shapes, answered by the same step loop.


def test_post_root_answers_plain_prompts_in_the_pipelines_shape_through_the_step_loop(server: Any) -> None:
    prompt = "The capital of France is"
    raw = httpx.post(server.url, content=prompt, timeout=60)
    assert raw.status_code == 200
    (answer,) = raw.json()
    assert answer["generated_text"].startswith(prompt) and "Paris" in answer["generated_text"], "greedy, prompt first"
    request = {"inputs": ["One, two, three,", "Hello"], "parameters": {"max_new_tokens": 3, "return_full_text": False}}
    two = httpx.post(server.url, json=request, timeout=60)
    assert two.status_code == 200
    assert [len(output) for output in two.json()] == [1, 1] and all(o[0]["generated_text"] for o in two.json())
    assert not two.json()[0][0]["generated_text"].startswith("One"), "return_full_text false: the answer alone"
    assert sum(_generation(server)["ended"].values()) == 3, "each input was a generation of the step loop"


def test_post_root_refuses_bad_generation_parameters_with_400_and_keeps_serving(server: Any) -> None:
    cases = [
        ({"max_new_tokens": 8, "num_beams": 2}, "unknown parameter 'num_beams': a generation takes do_sample, "),
        ({"max_new_tokens": 65}, "max_new_tokens is 65, over this server's cap of 64 tokens"),
        ({"do_sample": "yes"}, "do_sample must be true or false"),
        ({"temperature": 3}, "temperature must be a number from 0 to 2"),
        ({"return_full_text": 1}, "return_full_text must be true or false"),
    ]
    for parameters, message in cases:
        refused = httpx.post(server.url, json={"inputs": "Hi", "parameters": parameters}, timeout=30)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], parameters
    sampled = {"inputs": "Hi", "parameters": {"max_new_tokens": 4, "temperature": 0.7, "seed": 1}}
    assert httpx.post(server.url, json=sampled, timeout=60).status_code == 200
    assert sum(_generation(server)["ended"].values()) == 1, "no refused request started a generation"


def test_post_root_joins_the_steps_of_a_running_stream(server: Any) -> None:
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 64}
    with httpx.stream("POST", server.url + CHAT, json={**long, "stream": True, "temperature": 0}, timeout=60) as first:
        lines = first.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        plain = {"inputs": "Hello", "parameters": {"max_new_tokens": 2}}
        assert httpx.post(server.url, json=plain, timeout=60).status_code == 200
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]" and len(rest) > 2, "the stream was still being written"
    assert _generation(server)["mean_streams_per_step"] > 1


def test_post_root_answers_504_when_the_deadline_passes_during_the_answer(smollm2: LoadedModel) -> None:
    config = ServerConfig(max_new_tokens=512, timeout_s=3.0)  # the first token comes well within it; 512 do not
    story = {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 512}}
    with serve(smollm2, config=config, name="root-deadline") as short_lived:
        late = httpx.post(short_lived.url, json=story, timeout=60)
        report = _generation(short_lived)
    assert late.status_code == 504 and "deadline passed during the answer" in late.json()["error"]["message"]
    assert report["ended"]["expired"] == 1


def test_a_request_whose_first_token_is_forecast_past_the_bound_gets_a_fast_503(smollm2: LoadedModel) -> None:
    config = ServerConfig(max_new_tokens=512, max_streams=1, max_queue_wait_s=0.5)  # one slot, held by a long answer
    long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 512}
    with serve(smollm2, config=config, name="chat-forecast") as busy:
        with httpx.stream(
            "POST", busy.url + CHAT, json={**long, "stream": True, "temperature": 0}, timeout=60
        ) as first:
            chunks = (line for line in first.iter_lines() if line.startswith("data: "))
            for _ in range(8):  # a few steps in: the step's cost is measured
                next(chunks)
            refused = httpx.post(busy.url + CHAT, json={"messages": FRANCE, "max_tokens": 8}, timeout=60)
            report = _generation(busy)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        assert refused.json()["error"]["type"] == "server_error"  # OpenAI's shape: the client retries it
        assert "would wait about" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) > 1, "the forecast wait: the running answer's tokens to go"
        assert report["step_cost"]["fixed_ms"] is not None and report["running"] == 1
        wait_for(lambda: _generation(busy)["running"] == 0, timeout_s=60)  # the client left: its slot is free
        assert httpx.post(busy.url + CHAT, json={"messages": FRANCE, "max_tokens": 8}, timeout=60).status_code == 200

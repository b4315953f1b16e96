"""Through a real socket: ``serve()`` in a background thread, the real bundled model, real clients."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import pipeserve_nb
from pipeserve_nb import BatchPolicy, InvalidSetting, LoadedModel, ServerConfig, ServerError, ServerStartError, serve

from ...helpers import GatedModel, pipeserve_threads, port_is_free, wait_for


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


# -- the bundled model, as a notebook user calls it ----------------------------------------


def test_bundled_model_serves_normalised_embeddings_for_raw_and_json_bodies() -> None:
    with serve() as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        one = server.query("A sentence to embed.")
        assert len(one) == 384 and abs(norm(one) - 1) < 1e-5
        many = server.query(["A sentence to embed.", "Something else entirely, and longer."])
        assert len(many) == 2 and close(many[0], one)
        assert not close(many[1], one, tol=0.05)
        # the seed page's protocol: curl -X POST -d "text" URL (form-encoded content type)
        raw = httpx.post(server.url, content=b"A sentence to embed.", trust_env=False)
        assert raw.status_code == 200 and close(raw.json(), one)
        assert asyncio.run(server.aquery("A sentence to embed.")) == one
    assert not server.running and port_is_free(server.port)


def test_concurrent_clients_are_batched_and_get_the_same_answer_as_alone(embedder_float32: LoadedModel) -> None:
    texts = [f"Request number {i} " + "with more words " * (i % 7) for i in range(48)]
    alone = [embedder_float32([t])[0] for t in texts]

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            return list(await asyncio.gather(*(client.post(url, json={"inputs": t}) for t in texts)))

    with serve(dtype="float32", policy=BatchPolicy(max_batch_size=16, max_wait_s=0.01)) as server:
        responses = asyncio.run(fire(server.url))
        stats = server.stats()
    assert [r.status_code for r in responses] == [200] * len(texts)
    for response, expected in zip(responses, alone, strict=True):
        assert close(response.json(), expected)  # padding in a batch must not change an embedding
    sizes = [int(r.headers["x-batch-size"]) for r in responses]
    assert max(sizes) > 1 and max(sizes) <= 16
    assert stats["requests_by_status"] == {"200": len(texts)}
    assert sum(int(k) * v for k, v in stats["batch_size_histogram"].items()) == len(texts)


def test_the_bundled_chat_model_is_served_by_its_short_name_or_by_its_task() -> None:
    from pipeserve_nb._models.generation.bundled import SMOLLM2_NAME
    from pipeserve_nb._models.spec import BUNDLED_MODEL_NAME, ModelSpec

    assert ModelSpec(model=None, task="text-generation").describe() == SMOLLM2_NAME
    assert ModelSpec(model="minilm").describe() == ModelSpec().describe() == BUNDLED_MODEL_NAME
    with pytest.raises(InvalidSetting, match=r"task='fill-mask' is not a task of a bundled model \(minilm"):
        ModelSpec(model="smollm2", task="fill-mask")
    with serve(model="smollm2", dtype="float32") as server:  # POST / answered by the step loop, greedy
        assert server.model == SMOLLM2_NAME
        answer = server.query("The capital of France is", parameters={"max_new_tokens": 6, "do_sample": False})
        assert "Paris" in answer[0]["generated_text"]


def test_a_model_loaded_in_the_notebook_is_served_as_it_is(embedder: LoadedModel) -> None:
    with serve(embedder) as server:
        assert server.model == embedder.name  # the same copy: no second load
        assert close(server.query("Load once, serve it."), embedder(["Load once, serve it."])[0])
        too_long = httpx.post(server.url, json={"inputs": "word " * 300}, trust_env=False)
        assert too_long.status_code == 413  # its token counter and limit came with it
        assert "this model takes at most 256" in too_long.json()["error"]["message"]


def test_model_arguments_that_do_not_fit_together_are_refused_with_the_rule(embedder: LoadedModel) -> None:
    with pytest.raises(InvalidSetting, match="device= applies only when pipeserve loads the model"):
        serve(embedder, device="cuda:0")
    with pytest.raises(InvalidSetting, match="task= applies only when model is a Hub id or local path"):
        serve(embedder, task="fill-mask")
    with pytest.raises(InvalidSetting, match=r"model must be None, .*, got 42"):
        serve(42)
    with pytest.raises(InvalidSetting, match="port must be an int from 0 to 65535, got 70000"):
        serve(embedder, port=70000)
    assert pipeserve_threads() == []


# -- overload, timeouts, failures -----------------------------------------------------------


def test_a_full_queue_answers_503_at_once_with_retry_after(gated: GatedModel) -> None:
    config = ServerConfig(max_queue=3, timeout_s=30)
    with serve(gated, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(8) as pool:
        running = pool.submit(httpx.post, server.url, content=b"first", timeout=30)
        assert gated.entered.wait(10)  # the first request is in the model, held at the gate
        queued = [pool.submit(httpx.post, server.url, content=f"q{i}".encode(), timeout=30) for i in range(3)]
        wait_for(lambda: server.stats()["queue_depth"] == 3)
        rejected = httpx.post(server.url, content=b"one too many", timeout=30)
        assert rejected.status_code == 503
        assert rejected.json()["error"]["type"] == "Overloaded"
        assert int(rejected.headers["retry-after"]) >= 1
        assert server.health()["status"] == "ok"  # the breaker sheds load; the server is healthy
        gated.gate.set()
        assert running.result(30).status_code == 200
        assert [f.result(30).status_code for f in queued] == [200, 200, 200]
    assert "one too many" not in gated.seen
    assert sorted(gated.seen) == ["first", "q0", "q1", "q2"]


def test_a_request_that_expires_in_the_queue_gets_504_and_never_reaches_the_model(gated: GatedModel) -> None:
    config = ServerConfig(timeout_s=0.5)
    with serve(gated, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(4) as pool:
        running = pool.submit(httpx.post, server.url, content=b"held at the gate", timeout=30)
        assert gated.entered.wait(10)
        late = httpx.post(server.url, content=b"expires while queued", timeout=30)
        assert late.status_code == 504 and late.json()["error"]["type"] == "RequestTimeout"
        assert running.result(30).status_code == 504  # its deadline passed while the model ran
        gated.gate.set()
        after = httpx.post(server.url, content=b"served after", timeout=30)
        assert after.status_code == 200
        stats = server.stats()
    # the batch loop takes requests in order: it passed over the expired one without running it
    assert gated.seen == ["held at the gate", "served after"]
    assert stats["requests_by_status"] == {"200": 1, "504": 2}
    assert stats["dropped_before_inference"]["expired"] == 1  # the one in the model had started


def test_a_poisoned_input_fails_alone_and_its_batch_mates_succeed(embedder: LoadedModel) -> None:
    model = GatedModel(embedder, poison="POISON")
    texts = ["fine one", "POISON pill", "fine two", "fine three"]
    with serve(model, policy=BatchPolicy(max_batch_size=8)) as server, ThreadPoolExecutor(5) as pool:
        held = pool.submit(httpx.post, server.url, content=b"held", timeout=30)
        assert model.entered.wait(10)  # the model is busy, so the four wait together
        futures = [pool.submit(httpx.post, server.url, content=t.encode(), timeout=30) for t in texts]
        wait_for(lambda: server.stats()["queue_depth"] == 4)
        model.gate.set()
        responses = [f.result(30) for f in futures]
        assert held.result(30).status_code == 200
        assert server.health()["status"] == "ok"
        assert server.query("still serving") is not None
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    error = responses[1].json()["error"]
    assert error == {"type": "InferenceFailed", "message": "the model raised ValueError for this request's inputs"}
    assert sorted(model.calls[1]) == sorted(texts)  # they shared one batch, which then was retried
    assert responses[0].headers["x-batch-size"] == "4"


def test_health_and_stats_answer_while_a_batch_is_in_the_model(gated: GatedModel) -> None:
    with serve(gated) as server, ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, server.url, content=b"a long inference", timeout=30)
        assert gated.entered.wait(10)
        for _ in range(5):  # the model holds its thread; the event loop must still answer
            assert httpx.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"
            assert httpx.get(f"{server.url}/stats", timeout=5).status_code == 200
        assert not running.done()
        gated.gate.set()
        assert running.result(30).status_code == 200


def test_client_helpers_raise_server_error_with_status_and_type() -> None:
    with serve(lambda xs: [x[::-1] for x in xs]) as server:
        assert server.query("abc") == "cba"
        with pytest.raises(ServerError) as info:
            server.query(["ok", ""])
    assert info.value.status == 400 and info.value.type == "InvalidInput"
    assert '"inputs"[1] is empty' in info.value.message


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_lets_in_flight_requests_finish_and_answers_leftovers_503(gated: GatedModel) -> None:
    with ThreadPoolExecutor(4) as pool:
        server = serve(gated, policy=BatchPolicy(max_batch_size=1))
        first = pool.submit(httpx.post, server.url, content=b"in flight", timeout=30)
        assert gated.entered.wait(10)
        second = pool.submit(httpx.post, server.url, content=b"queued", timeout=30)
        wait_for(lambda: server.stats()["queue_depth"] == 1)
        stopping = pool.submit(server.stop, timeout_s=30)
        wait_for(lambda: httpx.get(f"{server.url}/health").json()["status"] == "draining")
        refused = httpx.post(server.url, content=b"arrives while draining", timeout=5)
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "ServerStopping"
        gated.gate.set()  # the drain waits for both: they finish within the drain time
        stopping.result(30)
        assert first.result(5).status_code == 200 and second.result(5).status_code == 200

        held = GatedModel(gated.embedder)
        server = serve(held, policy=BatchPolicy(max_batch_size=1))
        stuck = pool.submit(httpx.post, server.url, content=b"never released", timeout=30)
        assert held.entered.wait(10)
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="still inside a model call"):
            server.stop(timeout_s=0.5)
        answer = stuck.result(10)
        assert time.monotonic() - started < 10
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "ServerStopping"
        held.gate.set()
    assert not server.running and port_is_free(server.port)


def test_rerunning_serve_under_the_same_name_replaces_the_old_server() -> None:
    first = serve(name="cell")
    second = serve(name="cell")
    assert not first.running and second.running
    assert pipeserve_nb.running_servers() == {"cell": second}
    inference_threads = [t for t in pipeserve_threads() if t.name == "pipeserve-inference"]
    assert len(inference_threads) == 1  # one model copy
    other = serve(name="other")
    assert set(pipeserve_nb.running_servers()) == {"cell", "other"}
    pipeserve_nb.stop_all()
    assert not second.running and not other.running and pipeserve_nb.running_servers() == {}
    assert port_is_free(second.port) and port_is_free(other.port)


LEFT_RUNNING = """
import pipeserve_nb
server = pipeserve_nb.serve(lambda texts: [len(t) for t in texts], name="left-running")
print(server.query("four"), flush=True)
"""


def test_a_script_that_ends_without_stop_exits_quietly() -> None:
    # the server is stopped at interpreter exit, after the loop's executor refuses new work: its shutdown must
    # not need that executor (it once printed "cannot schedule new futures after interpreter shutdown")
    done = subprocess.run([sys.executable, "-c", LEFT_RUNNING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "shutdown failed" not in done.stderr, done.stderr[-3000:]


def test_a_model_that_cannot_load_raises_in_the_caller_and_leaves_nothing(tmp_path: Any) -> None:
    with pytest.raises(ServerStartError, match="could not load model") as info:
        serve(str(tmp_path / "no-such-model"), task="fill-mask")
    assert isinstance(info.value.__cause__, OSError)
    assert pipeserve_threads() == []


def test_a_taken_port_raises_in_the_caller_and_names_the_holder() -> None:
    with serve(name="holder") as holder:
        with pytest.raises(ServerStartError, match=r"cannot bind.*pipeserve server 'holder'") as info:
            serve(port=holder.port, name="intruder")
        assert isinstance(info.value.__cause__, OSError)
        assert holder.query("holder still serves") is not None


def test_a_failing_lifespan_surfaces_its_real_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeserve_nb._server.core.engine import Engine

    async def broken_start(self: Engine) -> None:
        raise RuntimeError("lifespan broke")

    monkeypatch.setattr(Engine, "start", broken_start)
    with pytest.raises(ServerStartError, match="ended during start-up"):
        serve(lambda xs: xs, start_timeout_s=20)
    assert pipeserve_threads() == []


def test_http_is_parsed_by_httptools() -> None:
    """uvicorn's C parser (about 0.1 ms less per request than h11 on 2 cores, see README), with
    pipeserve's bound on an unfinished head (``limits``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    with serve(lambda xs: xs) as server:
        protocol = server._runner.server.config.http_protocol_class
        assert issubclass(protocol, HttpToolsProtocol) and protocol.max_head_bytes == ServerConfig().max_head_bytes
        assert server.query("parsed") == "parsed"


def test_accepted_connections_get_tcp_nodelay() -> None:
    """Without it, Nagle's algorithm and delayed ACKs add ~40 ms to every response."""
    from pipeserve_nb._server.run.uvicorn_runner import bind_socket

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=bind_socket("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        value = await asyncio.wait_for(accepted, 5)
        writer.close()
        server.close()
        return value

    assert asyncio.run(accept_one()) != 0


# -- exposure ---------------------------------------------------------------------------------


def test_a_non_loopback_address_needs_a_token_or_an_explicit_opt_out(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="auth_token"):
        serve(host="0.0.0.0")
    assert pipeserve_threads() == []  # refused before anything started

    token = "a-long-enough-test-token"
    with serve(host="0.0.0.0", config=ServerConfig(auth_token=token)) as server:
        local = f"http://127.0.0.1:{server.port}"
        assert httpx.post(local, content=b"hi", trust_env=False).status_code == 401
        assert len(server.query("the handle sends its token")) == 384
        assert server.health()["status"] == "ok"
        assert len(pipeserve_nb.query(local, "hi", token=token)) == 384
        assert token not in repr(server) and token not in repr(server.config)

    with caplog.at_level("WARNING", logger="pipeserve_nb"), serve(host="0.0.0.0", allow_unauthenticated=True) as open_:
        assert httpx.post(f"http://127.0.0.1:{open_.port}", content=b"hi", trust_env=False).status_code == 200
    assert "without a token" in caplog.text


def test_the_serve_command_refuses_a_public_address_without_a_token() -> None:
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--host", "0.0.0.0", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if k != "PIPESERVE_AUTH_TOKEN"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "auth_token" in done.stderr and "--allow-unauthenticated" not in done.stdout

"""``/health`` tells the truth: a model call that hangs turns it 503 with the reason, it
recovers when the call returns, and ``stop()`` returns on time even though the call goes on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeserve_nb import BatchPolicy, LoadedModel, ServerConfig, serve
from pipeserve_nb._models.precision import resolve

from ...helpers import GatedModel, wait_for


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health", timeout=10, trust_env=False)


def test_health_reports_the_model_its_placement_the_queue_and_the_worker(embedder: LoadedModel) -> None:
    with serve(embedder) as server:
        body = _health(server.url).json()
    assert body["status"] == "ok" and body["model"] == embedder.name
    assert body["device"] == "cpu" and body["dtype"] == embedder.dtype == resolve("auto", "cpu")
    assert body["queue_depth"] == 0 and body["worker_alive"] is True and body["model_call_running_s"] is None


def test_a_hung_model_call_turns_health_503_until_it_returns(gated: GatedModel) -> None:
    config = ServerConfig(stuck_call_s=0.2, timeout_s=0.5)
    with serve(gated, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(2) as pool:
        assert _health(server.url).status_code == 200
        hung = pool.submit(httpx.post, server.url, content=b"hangs", timeout=30)
        assert gated.entered.wait(10)
        assert gated.on_event_loop == [False]  # the call runs on the inference thread: the loop answers probes
        wait_for(lambda: _health(server.url).status_code == 503)
        body = _health(server.url).json()
        assert body["status"] == "stuck" and "a model call has run for" in body["reason"]
        assert "over its bound of 0.2 s" in body["reason"] and body["worker_alive"] is True
        assert body["model_call_running_s"] > 0.2
        assert hung.result(30).status_code == 504  # its deadline still answers it
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f'pipeserve_healthy{{model="{server.models[0]}",server="default"}} 0.0' in metrics
        gated.gate.set()  # the call returns: the server is healthy again
        wait_for(lambda: _health(server.url).status_code == 200)
        assert server.query("after") is not None


def test_stop_returns_within_its_drain_bound_and_reports_the_call_that_never_returned(gated: GatedModel) -> None:
    server = serve(gated, policy=BatchPolicy(max_batch_size=1), config=ServerConfig(timeout_s=60))
    try:
        with ThreadPoolExecutor(2) as pool:
            hung = pool.submit(httpx.post, server.url, content=b"hangs", timeout=30)
            assert gated.entered.wait(10)
            with pytest.warns(RuntimeWarning, match="still inside a model call"):
                server.stop(timeout_s=0.5)  # returns though the call goes on (the test's timeout bounds a hang)
            answer = hung.result(10)
            assert answer.status_code == 503 and answer.json()["error"]["type"] == "ServerStopping"
        stuck = server.stuck_call_s
        assert stuck is not None and stuck > 0.5 and not server.running
    finally:
        gated.gate.set()
    wait_for(lambda: server.stuck_call_s is None)  # the call returned: the thread ended


def test_a_call_past_the_request_timeout_fails_health_before_the_stuck_bound(gated: GatedModel) -> None:
    """Every request of a call past ``timeout_s`` already got its 504: more traffic would only queue."""
    config = ServerConfig(timeout_s=0.3)  # the stuck bound is the default: at least 10 s
    with serve(gated, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(2) as pool:
        hung = pool.submit(httpx.post, server.url, content=b"hangs", timeout=30)
        assert gated.entered.wait(10)
        assert hung.result(30).status_code == 504  # its deadline answered it; the call goes on
        wait_for(lambda: _health(server.url).status_code == 503)  # no event announces it: polled
        body = _health(server.url).json()
        running_s = body["model_call_running_s"]
        assert body["status"] == "stuck" and "past timeout_s=0.3" in body["reason"]
        assert "was answered 504" in body["reason"] and 0.3 < running_s < 10  # before the stuck bound
        gated.gate.set()
        wait_for(lambda: _health(server.url).status_code == 200)


def test_a_hung_call_of_a_second_model_turns_health_503_and_names_that_model(gated: GatedModel) -> None:
    config = ServerConfig(stuck_call_s=0.2, timeout_s=0.5)

    def echo(inputs: list[str]) -> list[str]:
        return inputs

    models = {"echo": echo, "held": gated}
    with serve(models, policy=BatchPolicy(max_batch_size=1), config=config) as server, ThreadPoolExecutor(1) as pool:
        hung = pool.submit(httpx.post, f"{server.url}/models/held", content=b"hangs", timeout=30)
        assert gated.entered.wait(10)
        wait_for(lambda: _health(server.url).status_code == 503)
        body = _health(server.url).json()  # the default model is fine; the status is the one that is not
        assert body["status"] == "stuck" and body["reason"].startswith("model 'held': a model call has run for")
        assert body["models"]["echo"]["status"] == "ok" and body["models"]["held"]["status"] == "stuck"
        assert hung.result(30).status_code == 504
        gated.gate.set()
        wait_for(lambda: _health(server.url).status_code == 200)

"""The seed page's designs, re-created as printed, measured against the real bundled model."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeserve_nb import ClosedLoop, LoadedModel, OpenLoop, run_load, seed_page_app, serve_app

from ..helpers import GatedModel


def test_one_at_a_time_design_answers_with_the_model() -> None:
    with serve_app(seed_page_app(), name="seed") as handle:
        answer = httpx.post(handle.url, content=b"test sentence", trust_env=False).json()
        result = run_load(handle, ClosedLoop(concurrency=4, requests=12), progress=False)
    assert len(answer) == 384
    assert result.summary.ok == 12 and result.summary.mean_batch_size is None  # no timing headers


def test_batching_design_batches_and_answers_everyone() -> None:
    with serve_app(seed_page_app(batching=True, timeout_s=0.001), name="seed") as handle:
        result = run_load(handle, ClosedLoop(concurrency=8, requests=32), progress=False)
    assert result.summary.ok == 32


@pytest.mark.gate  # waits out the client's timeouts
def test_the_printed_sketch_never_answers_a_lone_request() -> None:
    with serve_app(seed_page_app(batching=True, drop_first_request=True), name="seed") as handle:
        result = run_load(handle, OpenLoop(rate_rps=2, requests=2, arrivals="constant"), timeout_s=3, progress=False)
    # each request arrives alone (0.5 s apart): the sketch takes it, then starts an empty batch
    assert result.summary.by_status == {0: 2}
    assert result.frame().error.tolist() == ["ReadTimeout", "ReadTimeout"]


def test_health_probe_waits_for_the_model_when_it_runs_on_the_event_loop(embedder: LoadedModel) -> None:
    """The page runs the model on the event loop: while a call runs, the loop that would answer a probe
    is inside it, so the probe is answered only once the call returns."""
    model = GatedModel(embedder)
    with serve_app(seed_page_app(model), name="seed") as handle, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, handle.url, content=b"held in the model", timeout=30)
        assert model.entered.wait(10)
        assert model.on_event_loop == [True]  # the call holds the server's one event loop
        with socket.create_connection((handle.host, handle.port), timeout=30) as probe:
            probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            model.gate.set()  # only now can the loop read the probe
            answer = probe.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ") and running.result(30).status_code == 200

"""The same server as a Ray Serve deployment on a real Ray cluster (started here with ``ray start``,
2 CPUs): real HTTP through Ray's proxy to 2 replicas of the bundled model.

One deployment serves the module's tests (each replica loads its own model copy: that is the
slow part). It is taken out of the registry so that the suite's per-test ``stop_all`` leaves it
up; the fixture stops it, and the last test checks what that ``stop()`` leaves behind.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import psutil
import pytest

import pipeserve_nb
from pipeserve_nb import BatchPolicy, ServerConfig, sample_texts
from pipeserve_nb._server.run import registry

from ..helpers import ROOT, port_is_free, wait_for

pytestmark = [pytest.mark.gate, pytest.mark.ray]

RAY = str(Path(sys.executable).parent / "ray")
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
"""The cluster's token authentication, as an operator would set it up; given in the environment,
so that nothing is written to (or read from) ``~/.ray`` of the machine running the tests."""


START_ATTEMPTS = 3
"""Ray gives a new node a fixed 30 s to register (``ray/_private/node.py``); at the start of ``make test`` both
workers import PyTorch, transformers and Ray at once, and a 2-core machine can miss it (seen here)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray cluster of its own (``ray start --head``), as an operator would run one."""
    env = {**os.environ, **TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}
    for _ in range(START_ATTEMPTS):  # any failed start is cleaned up and tried again, on a port of its own
        with socket_port() as port:
            pass
        start = [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
        done = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            break
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)  # what the failed start left
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def token_for_this_driver() -> Any:
    """The cluster's token in this process's environment, where Ray's driver reads it (the
    environment as it was is restored on exit)."""
    return mock.patch.dict(os.environ, TOKEN)


def socket_port() -> Any:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return _Port(sock)


class _Port:
    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __enter__(self) -> int:
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def deployment(cluster: str) -> Iterator[Any]:
    with token_for_this_driver():
        config = ServerConfig(max_queue=8)
        handle = pipeserve_nb.serve_on_ray(
            replicas=2,
            address=cluster,
            config=config,
            policy=BatchPolicy(max_batch_size=8),
            public_url="/through/{port}/",
            name="on-ray",
        )
        registry.unregister(handle)
        try:
            yield handle
        finally:
            handle.stop()


async def _send(url: str, texts: list[str], concurrency: int) -> list[httpx.Response]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(text: str) -> httpx.Response:
            async with limit:
                return await client.post(url, content=text)

        return await asyncio.gather(*(one(t) for t in texts))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_a_concurrent_load_is_answered_once_by_both_replicas_as_one_process_answers(deployment: Any) -> None:
    texts = sample_texts(48, seed=3)
    answers = asyncio.run(_send(deployment.url, texts, concurrency=6))
    assert [a.status_code for a in answers] == [200] * 48
    served_by = [a.headers["x-replica"] for a in answers]
    assert len(set(served_by)) == 2, "both replicas served"
    with pipeserve_nb.serve(name="reference") as alone:
        reference = [alone.query(t) for t in texts]
    assert min(cosine(a.json(), r) for a, r in zip(answers, reference, strict=True)) > 0.999
    stats = deployment.stats()
    assert stats["requests_by_status"] == {"200": 48}
    per_replica = {name: doc["requests_by_status"].get("200", 0) for name, doc in stats["replicas"].items()}
    assert per_replica == {name: served_by.count(name) for name in set(served_by)}
    assert all(doc["replica"] == name for name, doc in stats["replicas"].items())
    assert repr(deployment).startswith(f"<RayServerHandle 'on-ray' running at {deployment.url} ")
    html = deployment._repr_html_()  # what a notebook cell shows: the handle, live numbers, how to stop it
    assert "RayServerHandle" in html and "server.stop()" in html and "server.stats()[&#x27;replicas&#x27;]" in html
    assert deployment.browser_url == f"/through/{deployment.port}/" and f"href='{deployment.browser_url}'" in html
    page = httpx.get(deployment.url, trust_env=False)  # a replica's try-it page, through Ray's proxy
    assert page.status_code == 200 and "try the model" in page.text


def test_metrics_through_the_proxy_name_the_replica_they_describe(deployment: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{deployment.url}/metrics", timeout=30)
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    replica = answer.headers["x-replica"]
    assert {s.labels["replica"] for s in families["pipeserve_requests"].samples} == {replica}
    ok = sum(s.value for s in families["pipeserve_requests"].samples if s.name.endswith("_total"))
    assert ok == deployment.stats()["replicas"][replica]["requests"]


def test_a_full_replica_answers_pipeserves_own_503_with_retry_after(deployment: Any) -> None:
    answers = asyncio.run(_send(deployment.url, sample_texts(160, seed=4), concurrency=160))
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
    for refused in (a for a in answers if a.status_code == 503):
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "Overloaded"
        assert refused.headers["x-replica"], "refused by a pipeserve replica, not by Ray's proxy"


def test_a_killed_replica_is_replaced_and_every_request_it_held_is_answered(deployment: Any) -> None:
    victim = deployment.replica_processes()[0]
    texts = sample_texts(120, seed=5)
    statuses: list[int | str] = []
    ten_answered = threading.Event()

    async def load() -> None:
        limit = asyncio.Semaphore(6)
        async with httpx.AsyncClient(timeout=120) as client:

            async def one(text: str) -> None:
                async with limit:
                    try:
                        statuses.append((await client.post(deployment.url, content=text)).status_code)
                    except httpx.HTTPError as exc:
                        statuses.append(type(exc).__name__)
                    if len(statuses) >= 10:
                        ten_answered.set()

            await asyncio.gather(*(one(t) for t in texts))

    loader = threading.Thread(target=asyncio.run, args=(load(),))
    loader.start()
    assert ten_answered.wait(120)
    os.kill(victim["pid"], signal.SIGKILL)
    loader.join(240)
    assert not loader.is_alive(), "a request was left hanging"
    assert len(statuses) == 120 and all(isinstance(s, int) for s in statuses), statuses
    assert statuses.count(200) >= 10

    def replaced() -> bool:
        names = {p["replica"] for p in deployment.replica_processes()}
        return len(names) == 2 and victim["replica"] not in names

    wait_for(replaced, timeout_s=180)
    wait_for(lambda: httpx.get(f"{deployment.url}/health", timeout=10).status_code == 200, timeout_s=60)


def test_stop_deletes_the_deployment_but_not_a_cluster_it_only_connected_to(cluster: str, deployment: Any) -> None:
    assert not deployment.started_cluster
    deployment.stop()
    wait_for(lambda: port_is_free(deployment.port), timeout_s=30)  # Serve was started here: its proxy is gone
    done = subprocess.run([RAY, "status", f"--address={cluster}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(p.info["name"] == "gcs_server" for p in psutil.process_iter(["name"]))


def _hangs_on_marker(inputs: list[str]) -> list[int]:
    """A model whose call never returns for the input "hang" (a deadlocked tokenizer, a stuck device)."""
    if "hang" in inputs:
        threading.Event().wait(600)
    return [len(text) for text in inputs]


_hangs_on_marker.__module__ = "__main__"  # sent to the replicas by value: they cannot import the tests


def test_ray_replaces_a_replica_whose_model_call_hangs(cluster: str, capfd: pytest.CaptureFixture[str]) -> None:
    # after the deployment's stop (the test before): the cluster's 2 CPUs are free for this one
    config = ServerConfig(stuck_call_s=1.0, timeout_s=3.0, drain_timeout_s=2.0)
    hangs = {"replicas": 1, "address": cluster, "config": config, "name": "hung"}
    with token_for_this_driver(), pipeserve_nb.serve_on_ray(_hangs_on_marker, **hangs) as s:
        assert httpx.post(s.url, content="four", timeout=30).json() == 4
        (victim,) = s.replica_processes()
        stuck = httpx.post(s.url, content="hang", timeout=60)
        assert stuck.status_code == 504 and stuck.headers["x-replica"] == victim["replica"]  # its deadline held

        def replaced() -> bool:
            try:
                return {p["replica"] for p in s.replica_processes()} - {victim["replica"]} != set()
            except Exception:  # Ray's handle while the replica is being replaced: ask again
                return False

        wait_for(replaced, timeout_s=120)  # Ray's health check is pipeserve's /health, 503 while the call hangs
        wait_for(lambda: httpx.get(f"{s.url}/health", timeout=10).status_code == 200, timeout_s=60)
        after = httpx.post(s.url, content="again", timeout=30)
        assert after.json() == 5 and after.headers["x-replica"] != victim["replica"]
        assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == "zombie"
    # pipeserve connected this process and started Serve here: the last stop() ends Serve's controller
    # while calls of this process are pending, and Ray's line about retrying them stays out of the output
    printed = capfd.readouterr()
    assert "infinite retries remaining" not in printed.out + printed.err


RAY_EXAMPLE = """
import sys
import pipeserve_nb._ray.serve as module
sys.path.insert(0, sys.argv[1])
from tests.test_doctests import _examples, _run
failed, attempted, report = _run(_examples(module.__name__, live=True), {})
print(report)
print(f"failed={failed} attempted={attempted}")
"""
"""``serve_on_ray``'s docstring examples, run the way ``tests/test_doctests.py`` runs the others."""


def test_the_docstring_example_runs_on_the_cluster_ray_address_names(cluster: str) -> None:
    """``serve_on_ray``'s example, in a process of its own as a user's script runs it (a Ray driver keeps state per
    process), on this module's cluster named by ``$RAY_ADDRESS`` (notebook 05 runs it on a cluster it starts)."""
    # last: the deployments above are gone, so the example's 2 replicas get the cluster's 2 CPUs
    env = {**os.environ, **TOKEN, "RAY_ADDRESS": cluster}
    cmd = [sys.executable, "-c", RAY_EXAMPLE, str(ROOT)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("failed=0 attempted=3"), done.stdout[-3000:]
    status = subprocess.run([RAY, "status", f"--address={cluster}"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, "the example's stop() left the cluster it only connected to running"

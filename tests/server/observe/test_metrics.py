"""``GET /metrics``: scraped from a live server after a known workload, parsed with
prometheus-client's own parser, agreeing with ``/stats`` and with what was sent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeserve_nb import BatchPolicy, LoadedModel, ServerConfig, serve

GOOD, BAD = 24, 5


def scrape(url: str, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of ``url``'s ``/metrics``: ``{sample name: {sorted labels: value}}``."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10, trust_env=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def one(samples: dict[str, Any], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted({"server": "metrics-test", "model": "minilm", **labels}.items()))]


def test_metrics_agree_with_the_workload_and_with_stats(embedder: LoadedModel) -> None:
    with serve(embedder, name="metrics-test", policy=BatchPolicy(max_batch_size=8)) as server:
        with ThreadPoolExecutor(8) as pool:
            texts = [f"text number {i} " + "word " * (i % 7) for i in range(GOOD)]
            good = list(pool.map(lambda t: httpx.post(server.url, content=t.encode(), timeout=30), texts))
        bad = [httpx.post(server.url, json={"inputs": []}, timeout=10) for _ in range(BAD)]
        assert {r.status_code for r in good} == {200} and {r.status_code for r in bad} == {400}
        stats = server.stats()
        m = scrape(server.url)
    assert one(m, "pipeserve_requests_total", status="200") == GOOD == stats["requests_by_status"]["200"]
    assert one(m, "pipeserve_requests_total", status="400") == BAD == stats["requests_by_status"]["400"]
    assert one(m, "pipeserve_request_duration_seconds_count") == GOOD + BAD
    assert one(m, "pipeserve_queue_wait_seconds_count") == GOOD == stats["queue_wait_ms"]["count"]
    assert one(m, "pipeserve_model_call_duration_seconds_count") == stats["batches"]
    assert one(m, "pipeserve_batch_size_count") == stats["batches"]
    assert one(m, "pipeserve_batch_size_sum") == GOOD  # every input ran once
    assert 0 < one(m, "pipeserve_real_tokens_total") <= one(m, "pipeserve_padded_tokens_total")
    efficiency = one(m, "pipeserve_real_tokens_total") / one(m, "pipeserve_padded_tokens_total")
    assert round(efficiency, 4) == stats["padding_efficiency"]
    assert one(m, "pipeserve_model_busy_seconds_total") == one(m, "pipeserve_model_call_duration_seconds_sum")
    for reason in ("expired", "client_gone", "stopping", "worker_died"):
        assert one(m, "pipeserve_dropped_before_inference_total", reason=reason) == 0
    assert one(m, "pipeserve_queue_depth") == 0 and one(m, "pipeserve_healthy") == 1


def test_each_server_has_its_own_registry_across_reruns(embedder: LoadedModel) -> None:
    for run in range(5):  # a notebook cell re-run: same name, a fresh server, fresh numbers
        with serve(embedder, name="metrics-test") as server:
            for _ in range(run + 1):
                server.query("hello")
            with serve(embedder, name="metrics-other") as other:
                other.query("one")
                assert one(scrape(server.url), "pipeserve_requests_total", status="200") == run + 1
                others = scrape(other.url)["pipeserve_requests_total"]
                assert others == {(("model", "minilm"), ("server", "metrics-other"), ("status", "200")): 1.0}


def test_the_token_protects_metrics_too(embedder: LoadedModel) -> None:
    token = "metrics-test-token-0123456789"
    with serve(embedder, name="metrics-test", config=ServerConfig(auth_token=token)) as server:
        refused = httpx.get(f"{server.url}/metrics", timeout=10, trust_env=False)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "Unauthorized"
        assert one(scrape(server.url, authorization=f"Bearer {token}"), "pipeserve_healthy") == 1

"""``python -m pipeserve_nb demo``: the notebook flow, end to end, in one command.

Starts the bundled model in a background thread exactly as a notebook would, answers a
seed-page style raw-text query, then compares no batching with dynamic batching under the
same closed-loop load (sent from a separate process), prints a table, and stops.
"""

from __future__ import annotations

import httpx

from .._measure.corpus import sample_texts
from .._measure.loads import ClosedLoop
from .._measure.results import Summary
from .._measure.runner import run_load
from .._server.core.policy import BatchPolicy
from .._server.run.serve import serve

__all__ = ["run_demo", "format_table"]


def run_demo(*, requests: int = 192, concurrency: int = 16) -> dict[str, Summary]:
    """Run the demo and print as it goes; returns each policy's summary by label."""
    texts = sample_texts(requests, seed=1)
    policies: dict[str, BatchPolicy] = {
        "no batching (max_batch_size=1)": BatchPolicy(max_batch_size=1),
        "dynamic batching (max 32, wait 0)": BatchPolicy(max_batch_size=32, max_wait_s=0.0),
        "dynamic batching (max 32, wait 5 ms)": BatchPolicy(max_batch_size=32, max_wait_s=0.005),
    }
    load = ClosedLoop(concurrency=concurrency, requests=requests)
    results: dict[str, Summary] = {}
    for label, policy in policies.items():
        with serve(policy=policy, name="demo") as server:
            if not results:
                print(f"serving {server.model} ({server.device}, {server.dtype}) at {server.url}")
                print(f"$ curl -X POST -d 'test sentence' {server.url}/")
                answer = httpx.post(server.url, content=b"test sentence", trust_env=False).json()
                print(f"-> {len(answer)} floats: [{', '.join(f'{x:.4f}' for x in answer[:4])}, ...]\n")
            server.query(texts[:4])  # warm up
            results[label] = run_load(server, load, texts=texts, progress=False).summary
    print(format_table(results, load.describe()))
    return results


def format_table(results: dict[str, Summary], load: str) -> str:
    """The summaries as a plain-text table, with throughput ratios to the first row."""
    head = f"{'policy':<38} {'ok/sent':>9} {'ok/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}"
    lines = [f"{load}, same texts for each policy (load sent from a separate process)", head, "-" * len(head)]
    for label, s in results.items():
        lines.append(
            f"{label:<38} {f'{s.ok}/{s.requests}':>9} {s.goodput_rps:>7.1f} "
            f"{s.p50_ms or 0:>8.1f} {s.p99_ms or 0:>8.1f} {s.mean_batch_size or 0:>6.1f}"
        )
    labels = list(results)
    base = results[labels[0]].goodput_rps
    lines.append("")
    lines.extend(
        f"{label}: {results[label].goodput_rps / base:.2f}x the throughput of no batching" for label in labels[1:]
    )
    return "\n".join(lines)

"""``python -m pipeserve_nb demo``: the notebook flow, end to end, in one command.

Starts the bundled model in a background thread exactly as a notebook would, answers a
seed-page style raw-text query, then compares no batching with dynamic batching under
the same concurrent closed-loop load, prints a table, and stops.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from ._corpus import sample_texts
from ._loadgen import Sample, closed_loop
from ._policy import BatchPolicy, Policy
from ._server import serve
from ._stats import percentile

__all__ = ["run_demo", "DemoRow"]


@dataclass(frozen=True, slots=True)
class DemoRow:
    """One policy's figures under the demo load."""

    label: str
    requests: int
    ok: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    mean_batch: float


def summarize(label: str, samples: list[Sample]) -> DemoRow:
    """Throughput (answers per second of wall time), latency percentiles, mean batch size."""
    ok = [s for s in samples if s.status == 200]
    if not ok:
        raise RuntimeError(f"{label}: no request succeeded; statuses {sorted({s.status for s in samples})}")
    wall = max(s.sent_at_s + s.latency_s for s in samples) - min(s.sent_at_s for s in samples)
    lat = [s.latency_s * 1000 for s in ok]
    sizes = [s.batch_size for s in ok if s.batch_size is not None]
    return DemoRow(
        label, len(samples), len(ok), len(ok) / wall, percentile(lat, 50), percentile(lat, 99), sum(sizes) / len(sizes)
    )


def run_demo(*, requests: int = 192, concurrency: int = 16) -> list[DemoRow]:
    """Run the demo and print as it goes; returns the comparison rows."""
    texts = sample_texts(requests, seed=1)
    policies: list[tuple[str, Policy]] = [
        ("no batching (max_batch_size=1)", BatchPolicy(max_batch_size=1)),
        ("dynamic batching (max 32, wait 0)", BatchPolicy(max_batch_size=32, max_wait_s=0.0)),
        ("dynamic batching (max 32, wait 5 ms)", BatchPolicy(max_batch_size=32, max_wait_s=0.005)),
    ]
    rows = []
    for i, (label, policy) in enumerate(policies):
        with serve(policy=policy, name="demo") as server:
            if i == 0:
                print(f"serving {server.model} at {server.url}")
                print(f"$ curl -X POST -d 'test sentence' {server.url}/")
                answer = httpx.post(server.url, content=b"test sentence", trust_env=False).json()
                print(f"-> {len(answer)} floats: [{', '.join(f'{x:.4f}' for x in answer[:4])}, ...]\n")
            server.query(texts[:4])  # warm up
            samples = asyncio.run(closed_loop(server.url, texts, concurrency=concurrency, requests=requests))
            rows.append(summarize(label, samples))
    print(format_table(rows, concurrency))
    return rows


def format_table(rows: list[DemoRow], concurrency: int) -> str:
    """The rows as a plain-text table."""
    head = f"{'policy':<38} {'ok/sent':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}"
    lines = [f"closed loop, {concurrency} concurrent clients, same texts for each policy", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.label:<38} {f'{r.ok}/{r.requests}':>9} {r.throughput_rps:>7.1f} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.mean_batch:>6.1f}"
        )
    base = rows[0].throughput_rps
    lines.append("")
    lines.extend(f"{r.label}: {r.throughput_rps / base:.2f}x the throughput of no batching" for r in rows[1:])
    lines.append(
        "(the load generator shares this process and its cores with the server: compare ratios, not absolutes)"
    )
    return "\n".join(lines)

"""``python -m pipeserve_nb demo``: the notebook flow, end to end, in one command.

Loads the bundled model once and serves it under three batching policies at the same time (three servers, one
model copy: ``serve()`` serves a loaded model as it is), answers a seed-page style raw-text query, then measures
each policy under the same closed-loop load (sent from a separate process) in rounds whose order turns (ABC,
BCA, CAB, ...): each policy meets the machine in each position, so the drift of a shared machine (tens of
percent within an hour) does not favour whichever ran first. A row is the policy's round of median goodput; each
ratio to no batching is taken round by round (the two policies measured minutes apart at most) and shown with
its range over the rounds, so a difference within the noise reads as one.
"""

from __future__ import annotations

import statistics

import httpx

from .._measure.corpus import sample_texts
from .._measure.loads import ClosedLoop
from .._measure.results import Summary
from .._measure.runner import run_load
from .._models.loading import load_model
from .._server.core.policy import BatchPolicy
from .._server.run.serve import serve

__all__ = ["run_demo", "format_table", "ratios", "POLICIES"]

POLICIES: dict[str, BatchPolicy] = {
    "no batching (max_batch_size=1)": BatchPolicy(max_batch_size=1),
    "dynamic batching (max 32, wait 0)": BatchPolicy(max_batch_size=32, max_wait_s=0.0),
    "dynamic batching (max 32, wait 5 ms)": BatchPolicy(max_batch_size=32, max_wait_s=0.005),
}
"""The policies compared, the reference first."""


def run_demo(*, rounds: int = 3, duration_s: float = 4.0, concurrency: int = 16) -> dict[str, list[Summary]]:
    """Run the demo and print as it goes; returns each policy's summaries, one per round, by label."""
    texts = sample_texts(512, seed=1)
    model = load_model()
    servers = {
        label: serve(model, policy=policy, name=f"demo-{i}") for i, (label, policy) in enumerate(POLICIES.items())
    }
    try:
        first = next(iter(servers.values()))
        print(f"serving {first.model} ({first.device}, {first.dtype}): one copy, under {len(servers)} policies")
        print(f"$ curl -X POST -d 'test sentence' {first.url}/")
        answer = httpx.post(first.url, content=b"test sentence", trust_env=False).json()
        print(f"-> {len(answer)} floats: [{', '.join(f'{x:.4f}' for x in answer[:4])}, ...]\n")
        for server in servers.values():  # warm each up: its first batches of each size are slower
            run_load(
                server,
                ClosedLoop(concurrency=concurrency, requests=4 * concurrency),
                texts=texts,
                in_process=True,
                progress=False,
            )
        load = ClosedLoop(concurrency=concurrency, duration_s=duration_s)
        labels = list(servers)
        results: dict[str, list[Summary]] = {label: [] for label in labels}
        for turn in range(rounds):
            for label in labels[turn % len(labels) :] + labels[: turn % len(labels)]:
                results[label].append(run_load(servers[label], load, texts=texts, progress=False).summary)
    finally:
        for server in servers.values():
            server.stop()
    print(format_table(results, load.describe()))
    return results


def format_table(results: dict[str, list[Summary]], load: str) -> str:
    """Each policy's round of median goodput as a plain-text table, then the throughput ratios, taken round by
    round (their median and range): each policy to the first, and the last to the second."""
    rounds = len(next(iter(results.values())))
    head = f"{'policy':<38} {'ok/sent':>11} {'ok/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}"
    lines = [
        f"{load}, same texts for each policy (load sent from a separate process); {rounds} rounds, the order",
        "turning each round; each row the policy's round of median throughput, ok/sent over all rounds",
        head,
        "-" * len(head),
    ]
    for label, runs in results.items():
        s = _median_run(runs)
        ok, sent = sum(r.ok for r in runs), sum(r.requests for r in runs)
        lines.append(
            f"{label:<38} {f'{ok}/{sent}':>11} {s.goodput_rps:>7.1f} "
            f"{s.p50_ms or 0:>8.1f} {s.p99_ms or 0:>8.1f} {s.mean_batch_size or 0:>6.1f}"
        )
    labels = list(results)
    lines.append("")
    pairs = [(label, labels[0]) for label in labels[1:]] + [(labels[-1], labels[1])]
    for label, reference in pairs:
        found = ratios(results, label, reference)
        spread = f"{min(found):.2f}-{max(found):.2f}x over the rounds"
        lines.append(f"{label}: {statistics.median(found):.2f}x the throughput of {reference} ({spread})")
    return "\n".join(lines)


def ratios(results: dict[str, list[Summary]], label: str, reference: str) -> list[float]:
    """``label``'s throughput over ``reference``'s, round by round."""
    pairs = zip(results[label], results[reference], strict=True)
    return [run.goodput_rps / ref.goodput_rps for run, ref in pairs]


def _median_run(runs: list[Summary]) -> Summary:
    return sorted(runs, key=lambda s: s.goodput_rps)[(len(runs) - 1) // 2]

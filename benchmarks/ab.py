"""An interleaved A/B of two checkouts of pipeserve: the server's overhead at c=1 and its throughput at c=32.

Each round starts the command-line server of checkout A, then of B (each in its own process, from its
own tree: ``PYTHONPATH``), warms it up, and measures it with the load generator of this checkout, from a
separate process: a closed loop of one client (the overhead: client latency minus the model time the
server reports in ``X-Inference-Ms``, median) and a closed loop of 32 clients (answers per second).
The order of A and B alternates from round to round, so a drift of the machine's speed falls on both.

    python -m benchmarks ab before=TREE after=TREE [--rounds 5] [--seconds 8]
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pipeserve_nb as ps

__all__ = ["Round", "measure_ab", "ab_table", "main"]


@dataclass(frozen=True)
class Round:
    """One checkout's figures in one round."""

    label: str
    c1_overhead_ms: float
    c1_latency_ms: float
    c32_rps: float


@contextmanager
def _server(tree: Path) -> Iterator[str]:
    """The command-line server of the checkout at ``tree``, on a free port; its URL."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "PIPESERVE_PORT": "0"}
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--port", "0"]
    process = subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the server announces its address once it accepts connections
            found = re.search(r"at (http://\S+?)/? \(Ctrl-C", line)
            if found:
                yield found.group(1)
                break
        else:
            raise RuntimeError(f"the server of {tree} ended before it served")
    finally:
        process.terminate()
        process.wait(60)


def _one(label: str, tree: Path, texts: list[str], seconds: float) -> Round:
    with _server(tree) as url:
        ps.warm_up(url, texts=texts)
        alone = ps.run_load(url, ps.ClosedLoop(concurrency=1, duration_s=seconds), texts=texts, progress=False)
        many = ps.run_load(url, ps.ClosedLoop(concurrency=32, duration_s=seconds), texts=texts, progress=False)
    frame = alone.frame()
    ok = frame[frame.status == 200]
    return Round(
        label=label,
        c1_overhead_ms=round(float((ok.latency_ms - ok.inference_ms).median()), 3),
        c1_latency_ms=round(float(ok.latency_ms.median()), 3),
        c32_rps=round(many.summary.goodput_rps, 1),
    )


def measure_ab(trees: dict[str, Path], rounds: int, seconds: float) -> list[Round]:
    """``rounds`` interleaved rounds over the checkouts ``trees`` (label -> tree), alternating their order."""
    texts = ps.sample_texts(200, seed=3)
    found = []
    labels = list(trees)
    for index in range(rounds):
        order = labels if index % 2 == 0 else labels[::-1]
        for label in order:
            found.append(_one(label, trees[label], texts, seconds))
            print(found[-1], flush=True)
    return found


def ab_table(found: list[Round]) -> str:
    """The medians of each checkout, and every round, as Markdown."""
    labels = list(dict.fromkeys(r.label for r in found))
    lines = [
        "| checkout | c=1 overhead, median of rounds (ms) | c=1 latency (ms) | c=32 answers/s |",
        "|---|---|---|---|",
    ]
    for label in labels:
        mine = [r for r in found if r.label == label]
        lines.append(
            f"| {label} | {statistics.median(r.c1_overhead_ms for r in mine):.3f} "
            f"({', '.join(f'{r.c1_overhead_ms:.3f}' for r in mine)}) | "
            f"{statistics.median(r.c1_latency_ms for r in mine):.2f} | "
            f"{statistics.median(r.c32_rps for r in mine):.1f} ({', '.join(f'{r.c32_rps:.0f}' for r in mine)}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts of pipeserve, each as LABEL=PATH or PATH")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="each closed loop's duration")
    args = parser.parse_args(argv)
    trees = {}
    for given in args.trees:
        label, _, path = str(given).rpartition("=")
        trees[label or Path(path).name] = Path(path).resolve()
    found = measure_ab(trees, args.rounds, args.seconds)
    print(ab_table(found))
    return 0

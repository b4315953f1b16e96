"""An interleaved A/B of checkouts of pipeserve: the server's overhead at c=1, its throughput at c=32, and,
with ``--overload``, its goodput under a 3x overload.

Each round starts the command-line server of each checkout in turn (each in its own process, from its
own tree: ``PYTHONPATH``), warms it up, and measures it with the load generator of this checkout, from a
separate process: a closed loop of one client (the overhead: client latency minus the model time the
server reports in ``X-Inference-Ms``, median), a closed loop of 32 clients (answers per second), and
with ``--overload`` one paired round (a capacity, a soak at 3x it, the next capacity: the soak's share of
the capacities around it, ``pipeserve_nb.paired_rounds``). The order alternates from round to round, so a
drift of the machine's speed falls on every checkout alike; a checkout with the same runtime code as
another (a control) shows how far two identical servers differ here.

    python -m benchmarks ab before=TREE after=TREE [--rounds 5] [--seconds 8] [--overload]
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
    overload_share: float | None = None


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


def _one(label: str, tree: Path, texts: list[str], seconds: float, overload: bool) -> Round:
    with _server(tree) as url:
        ps.warm_up(url, texts=texts)
        alone = ps.run_load(url, ps.ClosedLoop(concurrency=1, duration_s=seconds), texts=texts, progress=False)
        many = ps.run_load(url, ps.ClosedLoop(concurrency=32, duration_s=seconds), texts=texts, progress=False)
        share = ps.paired_rounds(url, rounds=1, capacity_s=3.0, soak_s=6.0, texts=texts).share if overload else None
    frame = alone.frame()
    ok = frame[frame.status == 200]
    return Round(
        label=label,
        c1_overhead_ms=round(float((ok.latency_ms - ok.inference_ms).median()), 3),
        c1_latency_ms=round(float(ok.latency_ms.median()), 3),
        c32_rps=round(many.summary.goodput_rps, 1),
        overload_share=None if share is None else round(share, 3),
    )


def measure_ab(trees: dict[str, Path], rounds: int, seconds: float, overload: bool = False) -> list[Round]:
    """``rounds`` interleaved rounds over the checkouts ``trees`` (label -> tree), alternating their order."""
    texts = ps.sample_texts(200, seed=3)
    found = []
    labels = list(trees)
    for index in range(rounds):
        order = labels if index % 2 == 0 else labels[::-1]
        for label in order:
            found.append(_one(label, trees[label], texts, seconds, overload))
            print(found[-1], flush=True)
    return found


def ab_table(found: list[Round]) -> str:
    """The medians of each checkout, and every round, as Markdown."""
    labels = list(dict.fromkeys(r.label for r in found))
    overload = any(r.overload_share is not None for r in found)
    lines = [
        "| checkout | c=1 overhead, median of rounds (ms) | c=1 latency (ms) | c=32 answers/s |"
        + (" goodput share at 3x |" if overload else ""),
        "|---|---|---|---|" + ("---|" if overload else ""),
    ]
    for label in labels:
        mine = [r for r in found if r.label == label]
        line = (
            f"| {label} | {statistics.median(r.c1_overhead_ms for r in mine):.3f} "
            f"({', '.join(f'{r.c1_overhead_ms:.3f}' for r in mine)}) | "
            f"{statistics.median(r.c1_latency_ms for r in mine):.2f} | "
            f"{statistics.median(r.c32_rps for r in mine):.1f} ({', '.join(f'{r.c32_rps:.0f}' for r in mine)}) |"
        )
        shares = [r.overload_share for r in mine if r.overload_share is not None]
        if shares:
            line += f" {statistics.median(shares):.2f} ({', '.join(f'{s:.2f}' for s in shares)}) |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts of pipeserve, each as LABEL=PATH or PATH")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="each closed loop's duration")
    parser.add_argument("--overload", action="store_true", help="also one paired round at 3x capacity per server")
    args = parser.parse_args(argv)
    trees = {}
    for given in args.trees:
        label, _, path = str(given).rpartition("=")
        trees[label or Path(path).name] = Path(path).resolve()
    found = measure_ab(trees, args.rounds, args.seconds, args.overload)
    print(ab_table(found))
    return 0

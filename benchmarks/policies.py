"""Issue 37's second target: is the default batching policy within 5% of the best fixed setting at every load?

1. The default's capacity (a closed loop of 32 clients, the best of three short runs) sets the open loops' rates.
2. ``tune()`` serves one loaded copy of the model under every fixed setting of a grid (``max_batch_size`` x
   ``max_wait_s`` x ``max_batch_tokens``, ``wait_for_returns=False``: the default's wait for returning clients is
   the one thing a fixed setting lacks) at six loads: closed loops of 1, 8 and 32 clients, open loops at 0.5x,
   1x and 2x the capacity. Its best setting at each load is the candidate.
3. The best of many noisy runs is the luckiest as much as the best, so each load's candidate is measured again
   against the default in interleaved rounds (a fresh server each, the order alternating): the default's share
   of the candidate's goodput is the median of the rounds' own shares.

    python -m benchmarks policies [--seconds 3] [--rounds 3] [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pipeserve_nb as ps

from .inprocess import ROOT
from .machine import machine

__all__ = ["GRID", "measure_policies", "policies_report", "main"]

GRID: dict[str, tuple[Any, ...]] = {
    "max_batch_size": (8, 16, 32, 64),
    "max_wait_s": (0.0, 0.002, 0.005),
    "max_batch_tokens": (None, 512),
    "wait_for_returns": (False,),
}
QUICK_GRID: dict[str, tuple[Any, ...]] = {
    "max_batch_size": (1, 32), "max_wait_s": (0.0,), "max_batch_tokens": (None,), "wait_for_returns": (False,),
}  # fmt: skip
TARGET = 0.95
DEFAULT = ps.BatchPolicy()


def _loads(capacity_rps: float, seconds: float) -> list[ps.ClosedLoop | ps.OpenLoop]:
    closed = [ps.ClosedLoop(concurrency=c, duration_s=seconds) for c in (1, 8, 32)]
    opened = [ps.OpenLoop(rate_rps=round(f * capacity_rps, 1), duration_s=seconds) for f in (0.5, 1.0, 2.0)]
    return [*closed, *opened]


def measure_policies(seconds: float, rounds: int, quick: bool) -> dict[str, Any]:
    """Everything the report rests on (see the module docstring)."""
    texts = ps.sample_texts(32 if quick else 256, seed=0)
    model = ps.load_model()
    with ps.serve(model, name="capacity") as server:
        ps.warm_up(server, texts=texts)
        capacity = ps.capacity(server, texts=texts, duration_s=seconds, repeats=1 if quick else 3)
    capacity_rps = capacity.summary.goodput_rps
    loads = _loads(capacity_rps, seconds)
    started = time.perf_counter()
    grid = QUICK_GRID if quick else GRID
    tuning = ps.tune(
        model,
        loads,
        texts=texts,
        progress=False,
        max_batch_size=grid["max_batch_size"],
        max_wait_s=grid["max_wait_s"],
        max_batch_tokens=grid["max_batch_tokens"],
        wait_for_returns=grid["wait_for_returns"],
    )
    sweep_s = time.perf_counter() - started
    table = tuning.table
    rows = []
    for load in loads:
        at = table[table.load == load.describe()].set_index("policy")
        best = str(at.goodput_rps.idxmax())
        rows.append(
            {"load": load.describe(), "best": best, "best_rps": float(at.goodput_rps[best]),
             "rounds": _confirm(model, load, tuning.policies[best], texts, rounds)}
        )  # fmt: skip
    return {"capacity_rps": capacity_rps, "rows": rows, "settings": len(tuning.policies), "sweep_s": sweep_s}


def _confirm(
    model: ps.LoadedModel, load: ps.ClosedLoop | ps.OpenLoop, best: ps.BatchPolicy, texts: list[str], rounds: int
) -> list[dict[str, float]]:
    """The default against ``best`` at ``load``, one round each, the order alternating: each round's goodput and
    p99 of both, and the default's mean batch size."""
    measured = []
    for index in range(rounds):
        order = {"default": DEFAULT, "best": best}
        if index % 2:
            order = dict(reversed(order.items()))
        frame = ps.sweep(order, [load], model=model, texts=texts, progress=False).set_index("policy")
        measured.append(
            {"share": float(frame.goodput_rps["default"] / frame.goodput_rps["best"]),
             "default_p99_ms": float(frame.p99_ms["default"]), "best_p99_ms": float(frame.p99_ms["best"]),
             "default_batch": float(frame.mean_batch_size["default"]),
             "best_batch": float(frame.mean_batch_size["best"])}
        )  # fmt: skip
    return measured


def policies_report(measured: dict[str, Any], seconds: float, rounds: int, quick: bool) -> str:
    """The verdict at each load, as Markdown."""
    lines = [
        "# The default policy against the best fixed setting, at six loads",
        "",
        f"Run with `python -m benchmarks policies --seconds {seconds:g} --rounds {rounds}`, {machine()}"
        f"{' (a quick smoke run, not a measurement)' if quick else ''}. "
        f"The default (`BatchPolicy()`: batch 32, wait 0 ms, waiting for returning clients) served "
        f"{measured['capacity_rps']:.0f} requests/s at c=32 (its capacity, which sets the open loops' rates). "
        f"`tune()` measured {measured['settings']} fixed settings (`wait_for_returns=False`) at each load in "
        f"{measured['sweep_s']:.0f} s; each load's best was measured again against the default in {rounds} "
        "interleaved rounds: the default's share of its goodput is the median of the rounds' own, and the other "
        "columns are the rounds' medians too.",
        "",
        "| load | best fixed setting in the sweep | its ok/s in the sweep | default's share, rounds (median; each) | "
        "p99 default / best (ms) | mean batch default / best | within 5% |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for row in measured["rows"]:
        rounds_ = row["rounds"]
        share = statistics.median(r["share"] for r in rounds_)
        shares = ", ".join(f"{r['share']:.2f}" for r in rounds_)
        each = f"{share:.2f} ({shares})"
        p99 = [_ms(statistics.median(r[k] for r in rounds_)) for k in ("default_p99_ms", "best_p99_ms")]
        size = [statistics.median(r[k] for r in rounds_) for k in ("default_batch", "best_batch")]
        lines.append(
            f"| {row['load']} | {row['best']} | {row['best_rps']:.0f} | {each} | {p99[0]} / {p99[1]} | "
            f"{size[0]:.1f} / {size[1]:.1f} | {'yes' if share >= TARGET else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def _ms(value: Any) -> str:
    return "—" if value is None or value != value else f"{value:.0f}"  # NaN: no successful answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="each load's duration")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds confirming a load's best")
    parser.add_argument("--quick", action="store_true", help="a smoke run: two settings, 0.5 s loads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    seconds, rounds = (0.5, 1) if args.quick else (args.seconds, args.rounds)
    measured = measure_policies(seconds, rounds, args.quick)
    report = policies_report(measured, seconds, rounds, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policies.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

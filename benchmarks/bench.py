"""``make bench``: our server against the physical limit and the seed page's designs, in one run.

Every figure is measured in this run, on this machine, with the bundled model and the
default corpus; ratios are taken against references measured in the same run. Writes
``benchmarks/results/latest.md`` (+ ``latest.csv``, the Ray rows' measurements in
``latest_ray.json``, and PNG plots) and prints the tables.

    python -m benchmarks bench            # the full run (about fifteen minutes)
    python -m benchmarks bench --quick    # a smoke run with tiny workloads (tests use it)

``--part local`` leaves out the Ray Serve rows (no Ray cluster is started); ``--part ray``
measures only the in-process limit (their reference) and the Ray Serve rows, and writes
``latest_ray.md`` and ``latest_ray.json``. The tests run the two parts as two quick runs, so
that the one that starts a Ray cluster is the only one that must wait for the other Ray tests.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import pipeserve_nb as ps

from .inprocess import in_child
from .lineup import BEST, FLOAT32, FULL, OURS, QUICK, SEED, SERVER_CONFIG, THREADS_ONE, Sizes
from .live import measure_live_cost
from .on_ray import measure_on_ray
from .report import render, render_ray
from .targets import measure_targets

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("all", "local", "ray")


def measure_limit(texts: list[str], quick: bool, dtype: str = "auto") -> dict[str, Any]:
    """The model in-process, in a process of its own (``inprocess``): the limit's table, with the
    model in ``dtype`` (``"auto"``: the type a server runs it in)."""
    limit = in_child("limit", {"texts": texts, "dtype": dtype}, quick)
    limit["sorted_rps_by_batch_size"] = {int(k): v for k, v in limit["sorted_rps_by_batch_size"].items()}
    return limit


# -- the servers ----------------------------------------------------------------------------


def servers(models: dict[str, ps.LoadedModel]) -> dict[str, ps.BatchPolicy | Callable[[], ps.AppHandle]]:
    """The line-up; pipeserve's servers share ``models`` (one copy per dtype, loaded once: each server
    serves it as it is), so a server's start is not a model load."""
    model = models["auto"]
    out: dict[str, Any] = {label: lambda f=f: ps.serve_app(f(model), name="bench") for label, f in SEED.items()}
    for label, policy in OURS.items():
        out[label] = lambda p=policy: ps.serve(models["auto"], policy=p, config=SERVER_CONFIG, name="bench")
    one_thread = ps.ServerConfig(torch_threads=1)  # restored when the server stops
    out[THREADS_ONE] = lambda: ps.serve(models["auto"], config=one_thread, name="bench")
    out[FLOAT32] = lambda: ps.serve(models["float32"], config=SERVER_CONFIG, name="bench")
    return out


def run_servers(texts: list[str], sizes: Sizes) -> tuple[pd.DataFrame, dict[tuple[str, str], ps.LoadResult], float]:
    """Closed loops at c=1, 8, 32, then open loops at 0.5x, 1x, 2x the measured capacity."""
    kept: dict[tuple[str, str], ps.LoadResult] = {}
    models = {dtype: ps.load_model(dtype=dtype) for dtype in ("auto", "float32")}
    closed = [
        ps.ClosedLoop(concurrency=1, requests=sizes.c1_requests),
        ps.ClosedLoop(concurrency=8, duration_s=sizes.closed_duration_s),
        ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s),
    ]
    # a smoke run sends from this process: a load generator's own process costs a Python start per load
    smoke = sizes is QUICK
    first = ps.sweep(servers(models), closed, texts=texts, keep=kept, progress=False, in_process=smoke)
    capacity = float(first[(first.policy.isin(list(OURS))) & (first.concurrency == 32)].goodput_rps.max())
    opened = {f: ps.OpenLoop(rate_rps=round(f * capacity, 1), duration_s=sizes.open_duration_s) for f in (0.5, 1, 2)}
    second = ps.sweep(servers(models), list(opened.values()), texts=texts, keep=kept, progress=False, in_process=smoke)
    second["load_factor"] = second.load.map({load.describe(): f for f, load in opened.items()})
    frame = pd.concat([first, second], ignore_index=True)
    status_columns = sorted(c for c in frame.columns if c.startswith("n_"))
    frame[status_columns] = frame[status_columns].fillna(0).astype(int)
    return frame, kept, capacity


def ray_phase(texts: list[str], sizes: Sizes, out: Path) -> dict[str, Any]:
    """The Ray Serve rows (``on_ray``), also written to ``latest_ray.json``."""
    print("measuring pipeserve on Ray Serve, beside pipeserve alone and plain @serve.batch ...", flush=True)
    ray = measure_on_ray(texts, sizes)
    (out / "latest_ray.json").write_text(json.dumps(ray, indent=1) + "\n")
    return ray


def save_plots(frame: pd.DataFrame, kept: dict[tuple[str, str], ps.LoadResult], out: Path) -> list[str]:
    closed = frame[frame.kind == "closed"]
    at32 = {label: r for (label, load), r in kept.items() if load == "closed c=32"}
    over = [load for (label, load) in kept if label == BEST and load.startswith("open")][-1]
    figures = {
        "throughput_latency.png": ps.plot_throughput_latency(closed),
        "latency_cdf_c32.png": ps.plot_latency_cdf(at32),
        "batch_sizes_c32.png": ps.plot_batch_sizes({k: v for k, v in at32.items() if k.startswith("pipeserve")}),
        "overload_2x_over_time.png": ps.plot_latency_over_time({BEST: kept[(BEST, over)]}),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
    return list(figures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny workloads: check the benchmark runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write latest.md, CSV and plots")
    parser.add_argument("--part", choices=PARTS, default="all", help="all (default), local (no Ray), ray (only Ray)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    texts = ps.sample_texts(sizes.corpus, seed=0)

    print("measuring the in-process limit (in a process of its own), in the default dtype ...", flush=True)
    limit = measure_limit(texts, args.quick)
    if args.part == "ray":
        report = render_ray(limit, ray_phase(texts, sizes, args.out), sizes, args.quick)
        (args.out / "latest_ray.md").write_text(report)
        print(report)
        return 0
    print("... and in float32", flush=True)
    limit32 = measure_limit(texts, args.quick, "float32")
    print("measuring float32, bfloat16 autocast and bfloat16 weights side by side ...", flush=True)
    ways = in_child("precision", {"texts": texts, "batch_size": limit["best_batch_size"]}, args.quick)
    print("measuring the servers ...", flush=True)
    frame, kept, capacity = run_servers(texts, sizes)
    print("measuring the targets, each against its reference measured just before and after ...", flush=True)
    goals = measure_targets(texts, sizes, limit["best_batch_size"], limit32["best_batch_size"], args.quick)
    print("measuring what a live panel costs the server it watches ...", flush=True)
    live = measure_live_cost(texts, sizes.c1_requests, args.quick)
    ray = ray_phase(texts, sizes, args.out) if args.part == "all" else None
    plots = save_plots(frame, kept, args.out)
    frame.to_csv(args.out / "latest.csv", index=False)
    report = render(frame, limit, limit32, ways, capacity, plots, args.quick, goals, live, ray, sizes)
    (args.out / "latest.md").write_text(report)
    print(report)
    return 0

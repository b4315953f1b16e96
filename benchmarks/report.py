"""The ``make bench`` report: the measurements of one run as Markdown, with each target's
verdict and, where one is missed, the measurements of the same run that explain why."""

from __future__ import annotations

import platform
from dataclasses import asdict
from typing import Any

import pandas as pd

import pipeserve_nb as ps

from .lineup import BEFORE, BEST, CHEAP_CALLS, DEAR_CALLS, OURS, SERVER_CONFIG, THREADS_ONE, Sizes
from .live import live_section
from .machine import machine
from .report_precision import precision_section, precision_targets
from .report_ray import RAY_HEADING, ray_section


def _ms(x: float | None) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.1f}"


def _statuses(row: pd.Series) -> str:
    parts = [f"{c[2:] if c != 'n_0' else 'none'}: {int(row[c])}" for c in row.index if c.startswith("n_") and row[c]]
    return ", ".join(parts)


def _mean(pair: tuple[float, float]) -> float:
    return (pair[0] + pair[1]) / 2


def targets_check(
    frame: pd.DataFrame, limit: dict[str, Any], config: ps.ServerConfig, goals: dict[str, Any]
) -> list[str]:
    """The targets of issue 6, each with its measured value and verdict (``targets``), and
    what the full line-up adds to them."""

    def row(policy: str, concurrency: int) -> pd.Series:
        return frame[(frame.policy == policy) & (frame.concurrency == concurrency)].iloc[0]

    limit_rps = _mean(goals["c32_limit_rps"])
    goodput = goals["c32_goodput_rps"]
    ratio = goodput / limit_rps
    tails = goals["c32_tails"]
    before, best = tails[BEFORE], tails[BEST]
    lines = [
        f"- Saturated throughput (closed c=32) >= 0.9 of the in-process limit (sorted, batches of "
        f"{limit['best_batch_size']}): **{ratio:.2f}** ({goodput:.0f} vs {limit_rps:.0f} items/s, the limit measured "
        f"just before and after: {goals['c32_limit_rps'][0]:.0f} and {goals['c32_limit_rps'][1]:.0f}) — "
        + ("met." if ratio >= 0.9 else f"missed by {(0.9 - ratio) * 100:.0f} points."),
        f"  Against arrival-order batching, in interleaved runs (two each): {best['goodput_rps']:.0f} vs "
        f"{before['goodput_rps']:.0f} items/s, **{best['goodput_rps'] / before['goodput_rps']:.2f}x**.",
        *gap_to_the_limit(goals, limit, limit_rps),
    ]
    in_process = _mean(goals["c1_in_process_ms"])
    gap = goals["c1_p50_ms"] - in_process
    lines.append(
        f"- Concurrency 1 median latency <= in-process single-item latency + 1 ms: **{goals['c1_p50_ms']:.2f} ms vs "
        f"{in_process:.2f} ms ({gap:+.2f} ms)**, in-process measured on the same texts just before and after "
        f"({goals['c1_in_process_ms'][0]:.2f} and {goals['c1_in_process_ms'][1]:.2f} ms) — "
        + ("met." if gap <= 1.0 else f"missed by {gap - 1:.2f} ms.")
    )
    overhead = goals["c1_p50_ms"] - goals["c1_model_p50_ms"]
    if gap > 1.0:
        lines.append(
            f"  Where the {gap:.2f} ms go: {overhead:.2f} ms outside the model call (next line), and "
            f"{goals['c1_model_p50_ms'] - in_process:+.2f} ms between the model call in the server (from the hand-off "
            "to the inference thread until the result is back on the event loop, median "
            f"{goals['c1_model_p50_ms']:.2f} ms) and in-process. Both are fixed costs in CPU time (Python on the event "
            "loop, thread wake-ups, caches refilled after each model call), so they grow as this machine slows."
        )
    lines.append(
        f"- Per-request overhead (server time not in the model), c=1: median latency {goals['c1_p50_ms']:.2f} ms - "
        f"median model time {goals['c1_model_p50_ms']:.2f} ms = **{overhead:.2f} ms** (HTTP on loopback, parsing, "
        "tokenizing on the preparation thread, the hand-offs to it and to the inference thread and back, JSON of 384 "
        "floats; the "
        "client's own time included)."
    )
    verdict = "met" if best["p99_ms"] <= before["p99_ms"] else "missed"
    lines.append(
        f"- p99 latency at c=32 no worse than arrival-order batching: **{best['p99_ms']:.1f} ms vs "
        f"{before['p99_ms']:.1f} ms** ({best['requests']} and {before['requests']} requests from the interleaved "
        f"runs) — {verdict}."
    )
    if verdict == "missed":
        lines += why_the_tail(best, before, limit)
    prices = [
        (label, f"{OURS[label].call_overhead_tokens:g}" + (" (the default)" if label == BEST else ""))
        for label in (CHEAP_CALLS, BEST, DEAR_CALLS)
    ]
    lines.append(
        "- The price of a model call (`call_overhead_tokens`, what a split must save in padded tokens), at c=32 in "
        "the line-up above: "
        + "; ".join(
            f"{price}: {row(label, 32).goodput_rps:.0f} items/s, p99 {row(label, 32).p99_ms:.0f} ms"
            for label, price in prices
        )
        + ". Lower splits batches at smaller differences of length (more calls), higher packs them fuller (more "
        "padding)."
    )
    one, default = row(THREADS_ONE, 32), row(BEST, 32)
    lines.append(
        f"- Torch threads: the default ({limit['torch_threads']}, one per core) gives {default.goodput_rps:.0f} "
        f"items/s at c=32; 1 thread (a core left to the event loop) gives {one.goodput_rps:.0f} "
        f"({one.goodput_rps / default.goodput_rps:.2f}x)."
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


def gap_to_the_limit(goals: dict[str, Any], limit: dict[str, Any], limit_rps: float) -> list[str]:
    """The ratio to the limit at c=32, taken apart into three factors measured in the same run
    of the default: how much of the run the model was busy, what sharing the cores cost it,
    and how good the batches a window of 32 allows are."""
    busy, in_server, replay = goals["model_busy_share"], goals["model_rps_in_server"], goals["replay_rps"]
    window = limit["window32_split_rps"] / limit["batched_sorted_rps"]
    return [
        f"  Where the gap to the limit goes: that run of the default ({goals['wall_s']:.0f} s) was watched from "
        "inside. Its ratio is the product of three factors, each measured:",
        f"  1. *Busy*: the model ran {busy:.0%} of the run (the rest: handing batches to the inference thread and "
        f"back) — a factor **{busy:.2f}**.",
        f"  2. *Sharing the cores*: while busy it ran {in_server:.0f} items/s; the very same "
        f"{goals['batches']} batches ({goals['items']} items), replayed in order in a process with the machine to "
        f"itself right after, ran {replay:.0f} items/s — a factor **{in_server / replay:.2f}**. During the run, in "
        f"cores busy on average out of {goals['cores']:.0f}: the model's threads {goals['model_cores']:.2f}, the "
        f"server's event loop (HTTP, JSON) {goals['event_loop_cores']:.2f}, its preparation thread (tokenizing) "
        f"{goals.get('prepare_cores', 0.0):.2f}, the load generator's "
        f"process {goals['loadgen_cores']:.2f}. Everything but the model competes with PyTorch's OpenMP threads for "
        "the same cores, and an OpenMP thread that loses its core stalls the others at the next barrier; one torch "
        "thread avoids that but halves the compute (below). With the clients on another machine, the load "
        "generator's share would go to the model.",
        f"  3. *The batches a window of 32 allows*: those batches, with the cores to themselves, reach "
        f"{replay:.0f} / {limit_rps:.0f} — a factor **{replay / limit_rps:.2f}** (the replay prepares each batch "
        "first and times the model calls alone, as the server's inference thread runs them; the limit tokenizes its "
        "texts too). At c=32 no more than 32 requests ever "
        f"wait, so a server can only sort within 32, while the limit sorts all {limit['corpus']} texts at once; in "
        f"the limit's table, fixed windows of 32 in arrival order, each split as the default policy does, reach "
        f"{window:.2f} of it.",
        f"  {busy:.2f} x {in_server / replay:.2f} x {replay / limit_rps:.2f} = {busy * in_server / limit_rps:.2f}.",
    ]


def why_the_tail(best: dict[str, Any], before: dict[str, Any], limit: dict[str, Any]) -> list[str]:
    """Why reordering by length costs the p99 at c=32, from the interleaved runs' latencies."""
    spread_before = before["p99_ms"] / before["mean_ms"]
    spread_best = best["p99_ms"] / best["mean_ms"]
    needed = best["goodput_rps"] * best["p99_ms"] / before["p99_ms"]
    padding_gain = limit["batched_sorted_rps"] / limit["arrival_order_32_rps"]
    return [
        f"  Why: arrival order with a cap of {ps.BatchPolicy().max_batch_size} at c=32 runs in lock-step: each "
        f"batch holds nearly every waiting request (mean batch {before['mean_batch']:.1f}), so every request waits "
        f"about one batch and its p99 is **{spread_before:.2f}x** its mean latency. Length-aware batching splits "
        f"the waiting requests by length (mean batch {best['mean_batch']:.1f}); a request that is not in the batch "
        f"that starts waits for a later one, so its p99 is **{spread_best:.2f}x** its mean. In a closed loop the "
        "mean is the clients over the throughput (Little's law), so its lower mean "
        f"({best['mean_ms']:.1f} vs {before['mean_ms']:.1f} ms) does not make up for the wider spread: with this "
        f"spread, matching arrival order's p99 would take {needed:.0f} items/s, "
        f"**{needed / before['goodput_rps']:.2f}x** arrival order's throughput, while sorting all "
        f"{limit['corpus']} texts at once makes the model in-process only {padding_gain:.2f}x faster than "
        "arrival-order batches of 32. The wait is bounded (the oldest request is in every batch, so none waits "
        "behind more batches than requests ahead of it). For tail-sensitive traffic at a fixed number of clients, "
        "`BatchPolicy(sort_by_length=False)`.",
    ]


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
    limit32: dict[str, Any],
    ways: dict[str, Any],
    capacity: float,
    plots: list[str],
    quick: bool,
    goals: dict[str, Any],
    live: dict[str, Any],
    ray: dict[str, Any] | None,
    sizes: Sizes,
) -> str:
    """``limit`` is the model alone in the default dtype (the reference for ratios), ``limit32`` in
    float32; ``ways`` the precision table's measurements."""
    ref = limit["batched_sorted_rps"]
    dtype = limit["dtype"]
    lines = [
        "# Benchmark results",
        "",
        _run_line(quick),
        "",
        f"Model: the bundled all-MiniLM-L6-v2 (mean-pooled embeddings), in {dtype} (the default `dtype='auto'` on "
        + ("this machine) unless a row says float32. " if dtype != "float32" else "this machine). ")
        + "Corpus: `sample_texts` (4-31 words each). "
        "Load generator: a separate process on the same machine, raw-text bodies. pipeserve targets run with "
        f"`{SERVER_CONFIG!r}`; the seed page's designs run as printed (no queue bound, no timeout, the model on the "
        "event loop), except that its batching sketch no longer drops the first request of each batch "
        "(as printed, that request is never answered).",
        "",
        "## The limit: the model in-process, no server",
        "",
        f"| mode | items/s, {dtype} | items/s, float32{', again' if dtype == 'float32' else ''} |",
        "|---|---:|---:|",
        f"| one at a time (median {limit['single_item_p50_ms']:.2f} / {limit32['single_item_p50_ms']:.2f} ms per "
        f"item) | {limit['one_at_a_time_rps']:.0f} | {limit32['one_at_a_time_rps']:.0f} |",
    ]
    for bs, rps in limit["sorted_rps_by_batch_size"].items():
        rps32 = limit32["sorted_rps_by_batch_size"][bs]
        lines.append(f"| batches of {bs}, sorted by length | {rps:.0f} | {rps32:.0f} |")
    lines += [
        f"| best batch size ({limit['best_batch_size']} / {limit32['best_batch_size']}), arrival order | "
        f"{limit['batched_arrival_order_rps']:.0f} | {limit32['batched_arrival_order_rps']:.0f} |",
        f"| batches of 32, arrival order | {limit['arrival_order_32_rps']:.0f} | "
        f"{limit32['arrival_order_32_rps']:.0f} |",
        f"| windows of 32 in arrival order, each sorted and split as the default policy does | "
        f"{limit['window32_split_rps']:.0f} | {limit32['window32_split_rps']:.0f} |",
        "",
        f"Reference for ratios: **{ref:.0f} items/s** ({dtype}, best batch size {limit['best_batch_size']}, sorted); "
        f"float32 reaches {limit32['batched_sorted_rps']:.0f} "
        + (
            f"({limit['batched_sorted_rps'] / limit32['batched_sorted_rps']:.2f}x in {dtype})."
            if dtype != "float32"
            else "when measured again in a process of its own (the default is float32 here: two runs of the same)."
        ),
        *precision_section(limit, ways),
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
        "Measured after the line-up, in a focused phase (`benchmarks/targets.py`): each server figure is bracketed by "
        "its in-process reference, measured just before and just after, since this machine's speed can drift by tens "
        "of percent between the start and the end of a run; the p99s come from interleaved runs.",
        "",
        *targets_check(frame, limit, SERVER_CONFIG, goals),
        *precision_targets(limit, ways, goals),
    ]
    lines += live_section(live)
    if ray is None:
        lines += ["", RAY_HEADING, "", _RAY_LEFT_OUT]
    else:
        lines += ray_section(ray, ref, asdict(sizes))
    lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)


_RAY_LEFT_OUT = "Not measured in this run (`--part local`); `--part ray` measures these rows alone."


def render_ray(limit: dict[str, Any], ray: dict[str, Any], sizes: Sizes, quick: bool) -> str:
    """The report of ``--part ray``: the run's header, the reference and the Ray Serve rows."""
    ref = limit["batched_sorted_rps"]
    lines = [
        "# Benchmark results: the Ray Serve rows",
        "",
        _run_line(quick),
        "",
        f"Reference for ratios: the model in-process, no server, **{ref:.0f} items/s** ({limit['dtype']}, best batch "
        f"size {limit['best_batch_size']}, sorted by length).",
        *ray_section(ray, ref, asdict(sizes)),
        "",
    ]
    return "\n".join(lines)


def _run_line(quick: bool) -> str:
    return (
        f"Run {machine()}, Python {platform.python_version()}, torch threads {torch_threads()}"
        + (" — **quick smoke run, not a measurement**" if quick else "")
        + ". Regenerate with `make bench`."
    )


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())

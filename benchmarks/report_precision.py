"""The precision part of the ``make bench`` report (issue 13): float32, bfloat16 autocast and
bfloat16 weights side by side, and the targets of the server in the default dtype against the
model in float32."""

from __future__ import annotations

from statistics import mean
from typing import Any

OVERHEAD_SPREAD_MS = 0.15
"""How far the c=1 per-request overhead moved between runs of the same code (1.40 vs 1.37 and 1.53
vs 1.35 ms in the A/B runs of issue 11): a smaller difference is no difference."""


def precision_targets(limit: dict[str, Any], ways: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    """The targets of issue 13: the server in the default dtype against the model in float32."""
    goodput = goals["c32_goodput_rps"]
    limit32 = mean(goals["c32_limit_float32_rps"])
    gain = goodput / limit32
    single32 = mean(goals["c1_in_process_float32_ms"])
    c1 = goals["c1_p50_ms"]
    overhead = c1 - goals["c1_model_p50_ms"]
    overhead32 = goals["c1_float32_server_p50_ms"] - goals["c1_float32_server_model_p50_ms"]
    cast = ways["bfloat16 weights"]
    cosine = f"{cast['min_cosine']:.5f}" if "min_cosine" in cast else "not measured: this CPU refused bfloat16 weights"
    return [
        f"- Saturated throughput (closed c=32) in the default dtype ({limit['dtype']}) >= 2.0x the **float32** "
        f"in-process limit: **{gain:.2f}x** ({goodput:.0f} vs {limit32:.0f} items/s, float32 limit measured just "
        f"before and after: {goals['c32_limit_float32_rps'][0]:.0f} and {goals['c32_limit_float32_rps'][1]:.0f}; "
        f"lowest cosine of a bfloat16 embedding to its float32 one over the corpus {cosine}) — "
        + ("met." if gain >= 2.0 else f"missed by {2.0 - gain:.2f}x.")
        + (
            " `dtype='auto'` kept float32 on this CPU ("
            + ("it does not run bfloat16 natively" if "refused" in cast else "bfloat16 timed slower at load")
            + "; the precision table above), "
            "so this target, set when the default ran in bfloat16, does not apply here."
            if limit["dtype"] == "float32"
            else ""
        ),
        f"- Concurrency 1 median latency <= the **float32** in-process single-item latency: **{c1:.2f} ms vs "
        f"{single32:.2f} ms**, float32 in-process measured on the same texts just before and after "
        f"({goals['c1_in_process_float32_ms'][0]:.2f} and {goals['c1_in_process_float32_ms'][1]:.2f} ms) — "
        + ("met." if c1 <= single32 else f"missed by {c1 - single32:.2f} ms."),
        f"- Per-request overhead no worse than before issue 13 (a float32 server, measured beside it): "
        f"**{overhead:.2f} ms** in {limit['dtype']} vs **{overhead32:.2f} ms** in float32 (c=1 median latency - "
        f"median model time; a difference within {OVERHEAD_SPREAD_MS} ms, this figure's spread between runs of the "
        "same code, counts as none) — " + ("met." if overhead <= overhead32 + OVERHEAD_SPREAD_MS else "missed."),
    ]


def precision_section(limit: dict[str, Any], ways: dict[str, Any]) -> list[str]:
    """float32, bfloat16 autocast and bfloat16 weights side by side (how ``dtype`` was chosen)."""
    ref = ways["float32"]
    lines = [
        "",
        "## Precision: float32, bfloat16 autocast, bfloat16 weights",
        "",
        f"The bundled model alone, in a process of its own: sorted batches of {limit['best_batch_size']}, the "
        "median single-item latency on 64 texts, the weights' size, and the lowest cosine similarity of an embedding "
        "to its float32 one over the corpus. `dtype='auto'` casts the weights where the CPU runs bfloat16 natively "
        "and a layer of the model's width, timed at load, runs at least 1.1x faster in it.",
        "",
        "| way | items/s | vs float32 | single item ms | weights MB | lowest cosine to float32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, w in ways.items():
        if "refused" in w:
            lines.append(f"| {label} | not run: {w['refused'].split(';')[0]} | | | | |")
            continue
        lines.append(
            f"| {label} | {w['sorted_rps']:.0f} | {w['sorted_rps'] / ref['sorted_rps']:.2f}x | "
            f"{w['single_p50_ms']:.2f} | {w['weights_mb']:.1f} | {w['min_cosine']:.5f} |"
        )
    return lines

"""The generation benchmark's report (``results/generation.md``): tables, ratios and the issue's targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .machine import machine

OURS = "pipeserve (continuous)"
THEIRS = "transformers serve --continuous-batching"


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "missed")


def render(
    results: Mapping[str, Mapping[str, Any]],
    alone: Mapping[str, float],
    dtype: str,
    concurrency: Sequence[int],
    max_tokens: int,
    abandoned: int,
    quick: bool,
) -> str:
    lines = ["# Generation: pipeserve against transformers serve and the model alone", ""]
    if quick:
        lines += ["**A quick smoke run, not a measurement**: tiny workloads, to check the benchmark runs.", ""]
    lines += [
        f"Run {machine()}.",
        "",
        f'The bundled chat model (SmolLM2-135M-Instruct) in **{dtype}** (what `dtype="auto"` takes on this machine),',
        f"greedy, {max_tokens} new tokens at most, streamed; each server in its own process, the same prompts; c",
        "clients in a closed loop. Tokens are counted with the model's tokenizer on the text each client received.",
        "The model alone is `generate()` on a static batch of the same c prompts, in a fresh process.",
        "",
        "| c | server | tokens/s | of the model alone | TTFT p50 ms | TTFT p99 ms | between tokens p50 ms | answered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in concurrency:
        load = f"c={c}"
        reference = alone.get(load)
        lines.append(f"| {c} | the model alone (static batch) | {_n(reference)} | 1.00 | | | | |")
        for name, rows in results.items():
            row = rows[load]
            share = row["tokens_per_s"] / reference if reference and row["tokens_per_s"] else None
            lines.append(
                f"| {c} | {name} | {_n(row['tokens_per_s'])} | {_n(share, 2)} | {_n(row['ttft_p50_ms'], 0)} | "
                f"{_n(row['ttft_p99_ms'], 0)} | {_n(row['itl_p50_ms'])} | {row['answered']}/{row['requests']} |"
            )
    lines += ["", f"## {abandoned} long streams abandoned after their first token, then a fresh request", ""]
    lines += [
        "| server | fresh request, idle server (tok/s) | right after the abandoned streams | ratio |",
        "|---|---|---|---|",
    ]
    for name, rows in results.items():
        idle, after = rows["abandoned"]["idle"], rows["abandoned"]["after"]
        ratio = after / idle if idle and after else None
        shown_after = _n(after) if after is not None else f"not answered: {rows['abandoned']['after_status']}"
        lines.append(f"| {name} | {_n(idle)} | {shown_after} | {_n(ratio, 2)} |")
    lines += ["", "## Targets (issue 34)", ""]
    lines += [f"- {text} — {_verdict(ok)}" for text, ok in _targets(results, alone, concurrency)]
    return "\n".join(lines) + "\n"


def _targets(
    results: Mapping[str, Mapping[str, Any]], alone: Mapping[str, float], concurrency: Sequence[int]
) -> list[tuple[str, bool | None]]:
    top, low = f"c={max(concurrency)}", f"c={min(concurrency)}"
    ours = results.get(OURS, {})
    theirs = results.get(THEIRS, {})
    verdicts: list[tuple[str, bool | None]] = []
    rate = ours.get(top, {}).get("tokens_per_s")
    other = theirs.get(top, {}).get("tokens_per_s")
    if rate and other:
        verdicts.append(
            (f"{top}: tokens/s ≥ 3x {THEIRS}: {rate:.1f} against {other:.1f} ({rate / other:.2f}x)", rate >= 3 * other)
        )
    if rate and alone.get(top):
        share = rate / alone[top]
        verdicts.append((f"{top}: tokens/s ≥ 0.8 of the model's own static batch: {share:.2f}", share >= 0.8))
    first = ours.get(top, {}).get("ttft_p50_ms")
    if first is not None:
        verdicts.append((f"{top}: TTFT p50 ≤ 300 ms: {first:.0f} ms", first <= 300))
    single = ours.get(low, {}).get("tokens_per_s")
    if single and alone.get(low):
        share = single / alone[low]
        verdicts.append((f"{low}: ≥ 0.9 of the model's own rate at batch 1: {share:.2f}", share >= 0.9))
    dropped = ours.get("abandoned", {})
    if dropped.get("idle") and dropped.get("after"):
        ratio = dropped["after"] / dropped["idle"]
        verdicts.append((f"abandoned streams do not slow the next request (within 10%): {ratio:.2f}", ratio >= 0.9))
    return verdicts

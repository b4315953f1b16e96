"""The report of issue 37's levers (``python -m benchmarks levers``): each variant against the model alone,
the bounds the server's own path and batches leave on this machine, and the issue's targets judged."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from .machine import machine

__all__ = ["Round", "levers_report"]

C32_TARGET, C1_TARGET_MS = 0.9, 0.3  # issue 37: of the limit at c=32; above the model alone's single item at c=1


@dataclass(frozen=True)
class Round:
    """One variant's figures in one round, with that round's references (the model alone)."""

    variant: str
    c1_p50_ms: float
    c1_model_ms: float
    c32_rps: float
    c32_cpu_ms: float
    """CPU per answer at c=32, the server's process and the load generator's together (ms)."""
    single_ms: float
    limit_rps: float
    replay_rps: float | None = None
    """Items/s of the model alone on the very batches this variant's server ran at c=32, replayed in order in a
    fresh process after the round (None: the server runs no model)."""


def levers_report(found: list[Round], rounds: int, seconds: float, dtype: str = "auto") -> str:
    """The medians over rounds of each variant, as Markdown, with every round's figures."""
    flag, which = ("", "the dtype a server gets (`auto`)") if dtype == "auto" else (f" --dtype {dtype}", dtype)
    lines = [
        "# Issue 37's levers, one by one",
        "",
        f"Run with `python -m benchmarks levers --rounds {rounds} --seconds {seconds:g}{flag}`, {machine()}, "
        f"every model in {which} (see the module's docstring for what each variant changes). Each figure is "
        "the median over rounds; a "
        "ratio is taken within its round, against the model alone measured in fresh processes just before and "
        "after it (sorted batches of 32 for c=32, the single-item median on the same texts for c=1).",
        "",
        "| variant | c=32 answers/s | vs the limit | CPU per answer at c=32 (ms) | c=1 p50 ms | "
        "minus the model alone (ms) | the server's model time at c=1 (ms) | rounds, c=32 |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant in dict.fromkeys(r.variant for r in found):
        mine = [r for r in found if r.variant == variant]
        modelled = variant != "no model"  # the floor serves no model: no ratio to the model's
        ratio = f"{statistics.median(r.c32_rps / r.limit_rps for r in mine):.2f}" if modelled else "—"
        added = f"{statistics.median(r.c1_p50_ms - r.single_ms for r in mine):+.2f}" if modelled else "—"
        lines.append(
            f"| {variant} | {statistics.median(r.c32_rps for r in mine):.0f} | {ratio} | "
            f"{statistics.median(r.c32_cpu_ms for r in mine):.2f} | "
            f"{statistics.median(r.c1_p50_ms for r in mine):.2f} | {added} | "
            f"{statistics.median(r.c1_model_ms for r in mine):.2f} | "
            f"{', '.join(f'{r.c32_rps:.0f}' for r in mine)} |"
        )
    limits = sorted({(r.limit_rps, r.single_ms) for r in found})
    lines += [
        "",
        "The model alone, per round (the mean of its brackets): "
        + "; ".join(f"{limit:.0f} items/s, single item {single:.2f} ms" for limit, single in limits)
        + ".",
    ]
    floor = [r for r in found if r.variant == "no model"]
    if floor:
        path_ms = statistics.median(r.c32_cpu_ms for r in floor)
        lines += ["", _bounds(floor), *_shares(found, path_ms), *_targets(found, path_ms)]
    return "\n".join(lines) + "\n"


def _path_share(replay_rps: float, path_ms: float) -> float:
    """The share of the cores the model keeps when each answer's path takes ``path_ms`` of CPU, at the
    speed of the model alone on the server's batches (``replay_rps``, every core busy)."""
    return 1 / (1 + path_ms * replay_rps / ((os.cpu_count() or 1) * 1000))


def _targets(found: list[Round], path_ms: float) -> list[str]:
    """Issue 37's targets judged for the default and ``cores="own"``: met, missed within reach, or out of reach
    on this machine (the bound with the server's own batches under the target)."""
    lines: list[str] = []
    for variant in ("default", "own cores"):
        mine = [r for r in found if r.variant == variant and r.replay_rps]
        if not mine:
            continue
        ratio = statistics.median(r.c32_rps / r.limit_rps for r in mine)
        bound = statistics.median(
            r.replay_rps / r.limit_rps * _path_share(r.replay_rps, path_ms) for r in mine if r.replay_rps
        )
        if ratio >= C32_TARGET:
            verdict = "met"
        elif bound < C32_TARGET:
            verdict = f"missed, out of reach here: the bound its own batches leave is {bound:.2f}"
        else:
            verdict = f"missed within reach: the bound its own batches leave is {bound:.2f}"
        added = statistics.median(r.c1_p50_ms - r.single_ms for r in mine)
        lines += [
            f"- `{variant}`, c=32 >= {C32_TARGET} of the limit: **{ratio:.2f}** — {verdict}.",
            f"- `{variant}`, c=1 p50 within {C1_TARGET_MS} ms of the model alone's single item: **{added:+.2f} ms** — "
            + ("met." if added <= C1_TARGET_MS else "missed."),
        ]
    return ["", "**Issue 37's targets in this run** (medians over rounds):", "", *lines] if lines else []


def _shares(found: list[Round], path_ms: float) -> list[str]:
    """Each variant's share of the limit at c=32 as the product of three measured factors: its batches (the
    model alone on them), the path's CPU (``path_ms`` per answer, the floor's) taken from the cores, and what
    its server reached of the bound those two leave."""
    lines = [
        "",
        "**Where each variant's share of the limit goes at c=32**, as three factors measured in the same round: "
        "*its batches*, the very batches its server ran, replayed in order by the model alone in a fresh process "
        "after the round, against the limit's sorted batches of 32 (with 32 clients no more than 32 requests "
        "wait, so a server sorts and splits within them); *the path*, the share of the cores left to the model "
        f"once each answer's path takes the floor's {path_ms:.2f} ms of CPU "
        "(at its batches' speed, the model needs cores / replay per item); their product is *the bound with "
        "its batches*, the most a server that ran those batches could answer here; and *reached*, its answers "
        "against that bound: what is lost inside the server, the model running slower there than alone. Medians "
        "over rounds.",
        "",
        "| variant | vs the limit | its batches alone | the path | bound with its batches | reached of the bound |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in dict.fromkeys(r.variant for r in found if r.replay_rps):
        mine = [r for r in found if r.variant == variant and r.replay_rps]
        batch = [r.replay_rps / r.limit_rps for r in mine if r.replay_rps]
        path = [_path_share(r.replay_rps, path_ms) for r in mine if r.replay_rps]
        reached = [r.c32_rps / (r.replay_rps * f) for r, f in zip(mine, path, strict=True) if r.replay_rps]
        lines.append(
            f"| {variant} | {statistics.median(r.c32_rps / r.limit_rps for r in mine):.2f} | "
            f"{statistics.median(batch):.2f} | {statistics.median(path):.2f} | "
            f"{statistics.median(b * f for b, f in zip(batch, path, strict=True)):.2f} | "
            f"{statistics.median(reached):.2f} |"
        )
    if any(r.variant == "torch threads 1" for r in found):
        lines += [
            "",
            "The replay runs the model with PyTorch's default threads (one per core): for `torch threads 1`, "
            "*reached* includes the core that server leaves to everything else.",
        ]
    return lines


def _bounds(floor: list[Round]) -> str:
    """What the server's own cost per request leaves the model, from the rounds of the ``no model`` server."""
    cores = os.cpu_count() or 1
    floor_rps = statistics.median(r.c32_rps for r in floor)
    path_ms = statistics.median(r.c32_cpu_ms for r in floor)
    limit = statistics.median(r.limit_rps for r in floor)
    model_ms = cores * 1000 / limit  # the model alone keeps every core busy
    best = _path_share(limit, path_ms)  # with the limit's own batches
    floor_c1 = statistics.median(r.c1_p50_ms - r.c1_model_ms for r in floor)
    return (
        f"**The bounds on this machine.** A server that runs no model answered {floor_rps:.0f} requests/s at c=32, "
        f"its process and the load generator's (on the same {cores} cores) spending {path_ms:.2f} ms of CPU per "
        f"request: the HTTP path, the hand-offs and the client. At the limit's {limit:.0f} items/s the model alone "
        f"takes {model_ms:.2f} ms of CPU per item, so a server on this machine, with its load generator beside it, "
        f"cannot pass **{best:.2f}** of the limit even with the limit's own batches. At c=1 the same server's round "
        f"trip less its (empty) model call is {floor_c1:.2f} ms at the median: the least a request through HTTP adds "
        "to the model's own time here."
    )

"""Paired rounds for ``make reliability``'s goodput target: the default server's share of capacity
under a 3x overload, judged against the capacity measured just before and just after it
(``pipeserve_nb.paired_rounds``, on one warmed-up default server), and their report section."""

from __future__ import annotations

import pipeserve_nb as ps


def paired(texts: list[str], rounds: int, capacity_s: float, soak_s: float) -> ps.PairedRounds:
    """``rounds`` paired rounds at 3x capacity on one fresh, warmed-up default server."""
    with ps.serve(name="reliability-rounds") as server:
        ps.warm_up(server, texts=texts)
        return ps.paired_rounds(server, rounds=rounds, capacity_s=capacity_s, soak_s=soak_s, texts=texts)


def rounds_section(r: ps.PairedRounds) -> list[str]:
    rows = [
        f"| {i} | {k.capacity_before_rps} / {k.capacity_after_rps} | {k.soak_goodput_rps} | {k.refused} | "
        f"{k.share:.2f} |"
        for i, k in enumerate(r.rounds, 1)
    ]
    shares = [k.share for k in r.rounds]
    lost = sum(k.lost for k in r.rounds)
    return [
        "",
        "### The goodput target, judged on paired rounds",
        "",
        "One soak says little here: the capacities just before and after each soak above can differ by more than "
        f"the target's margin. So, on one fresh default server, {len(r.rounds)} round(s) of: capacity (the closed "
        f"loop, {r.capacity_s:g} s), then a soak at {r.overload:g}x it ({r.soak_s:g} s, goodput while it was sent); "
        "each share is over the mean of the capacities just before and after its soak (`pipeserve_nb.paired_rounds`).",
        "",
        "| round | capacity before / after (req/s) | soak goodput (req/s) | refused (503) | share |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Median share: **{r.share:.2f}** (rounds {min(shares):.2f}-{max(shares):.2f}), so the target "
        f"(goodput >= 0.9 of capacity) is **{'met' if r.share >= 0.9 else 'missed'}** on this run's rounds. "
        f"Requests the rounds' soaks sent and got no answer to: {lost}.",
    ]

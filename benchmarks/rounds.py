"""Paired rounds for ``make reliability``'s goodput target: the default server's share of capacity
under a 3x overload, judged against the capacity measured just before and just after it.

This machine's speed moves by tens of percent within a minute, more than the target's margin, so
one soak against one capacity says little. On one warmed-up default server, each round is a
capacity measurement (a closed loop of 32 clients: nothing is refused) and then a soak (an open
loop at 3x that capacity); the next round's capacity closes the round. Each soak's share is over
the mean of the capacities around it; the median over rounds is the figure the report judges.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from overload import drain, warm_up
from split import sending_goodput

import pipeserve_nb as ps


@dataclass(frozen=True)
class Round:
    capacity_before_rps: float
    capacity_after_rps: float
    soak_goodput_rps: float
    """The default server's goodput under the open loop at 3x ``capacity_before_rps``, while it was sent
    (``split.sending_goodput``)."""
    soak_lost: int
    refused: int
    """The soak's requests answered 503."""

    @property
    def capacity_rps(self) -> float:
        return (self.capacity_before_rps + self.capacity_after_rps) / 2

    @property
    def soak_share(self) -> float:
        return self.soak_goodput_rps / self.capacity_rps


@dataclass(frozen=True)
class Rounds:
    capacity_s: float
    soak_s: float
    rounds: list[Round]

    @property
    def soak_share(self) -> float:
        """The median round's goodput share: the figure the target is judged on."""
        return statistics.median(r.soak_share for r in self.rounds)


def paired_rounds(texts: list[str], rounds: int, capacity_s: float, soak_s: float) -> Rounds:
    """``rounds`` rounds on one fresh default server (see the module docstring)."""
    with ps.serve(name="reliability-rounds") as server:
        warm_up(server, texts)
        closed = ps.ClosedLoop(concurrency=32, duration_s=capacity_s)

        def capacity() -> float:
            return ps.run_load(server, closed, texts=texts, progress=False).summary.goodput_rps

        found: list[Round] = []
        before = capacity()
        for _ in range(rounds):
            soak = ps.run_load(server, ps.OpenLoop(rate_rps=3 * before, duration_s=soak_s), texts=texts, progress=False)
            drain(server)
            after = capacity()
            found.append(
                Round(
                    capacity_before_rps=round(before, 1),
                    capacity_after_rps=round(after, 1),
                    soak_goodput_rps=round(sending_goodput(soak), 1),
                    soak_lost=soak.summary.requests - soak.summary.answered,
                    refused=soak.summary.by_status.get(503, 0),
                )
            )
            before = after
    return Rounds(capacity_s, soak_s, found)


def rounds_section(r: Rounds) -> list[str]:
    rows = [
        f"| {i} | {k.capacity_before_rps} / {k.capacity_after_rps} | {k.soak_goodput_rps} | {k.refused} | "
        f"{k.soak_share:.2f} |"
        for i, k in enumerate(r.rounds, 1)
    ]
    shares = [k.soak_share for k in r.rounds]
    lost = sum(k.soak_lost for k in r.rounds)
    return [
        "",
        "### The goodput target, judged on paired rounds",
        "",
        "One soak says little here: the capacities just before and after each soak above can differ by more than "
        f"the target's margin. So, on one fresh default server, {len(r.rounds)} round(s) of: capacity (the closed "
        f"loop, {r.capacity_s:g} s), then a soak at 3x it ({r.soak_s:g} s, goodput while it was sent); each share is "
        "over the mean of the capacities just before and after its soak (`benchmarks/rounds.py`).",
        "",
        "| round | capacity before / after (req/s) | soak goodput (req/s) | refused (503) | share |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Median share: **{r.soak_share:.2f}** (rounds {min(shares):.2f}-{max(shares):.2f}), so the target "
        f"(goodput >= 0.9 of capacity) is **{'met' if r.soak_share >= 0.9 else 'missed'}** on this run's rounds. "
        f"Requests the rounds' soaks sent and got no answer to: {lost}.",
    ]

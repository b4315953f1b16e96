"""Measurement procedures on top of ``run_load``: warm a server up, wait until nothing waits in it,
measure its capacity, soak it with an overload, and judge its goodput under overload on paired rounds.

A shared machine's speed drifts by tens of percent within a minute, more than most effects worth
measuring, so one overload soak against one capacity measured earlier says little. ``paired_rounds``
measures a capacity, a soak at ``overload`` times it, and the next capacity, round after round, and
judges each soak against the capacities just around it; the median round is the verdict.

Each takes a ``target`` as ``run_load`` does: a URL, or a handle such as ``serve()`` returns (the
server must not require a token: the load generator sends none).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .loads import ClosedLoop, OpenLoop
from .results import LoadResult
from .runner import _HasUrl, run_load

__all__ = ["warm_up", "wait_drained", "capacity", "soak", "PairedRound", "PairedRounds", "paired_rounds"]


def warm_up(
    target: str | _HasUrl, *, requests: int = 64, concurrency: int = 8, texts: Sequence[str] | None = None
) -> LoadResult:
    """A server's first calls before anything is measured: the model warms up (lazy initialisation,
    allocator) and the server fits what a call costs (admission by time forecasts with it).

    Example:
        >>> warm_up(server).summary.ok  # doctest: +SKIP
        64
    """
    return run_load(target, ClosedLoop(concurrency=concurrency, requests=requests), texts=texts, progress=False)


def wait_drained(target: str | _HasUrl, *, timeout_s: float = 60.0) -> float:
    """Wait until nothing waits in the server (``/stats``' ``queue_depth`` is 0); return the seconds it took.

    Raises:
        TimeoutError: something still waits after ``timeout_s``.
    """
    import httpx

    url = target if isinstance(target, str) else target.url
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        while client.get(f"{url}/stats").json()["queue_depth"]:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"requests still wait in {url} after {timeout_s:g} s")
            time.sleep(0.05)  # the queue depth is read from /stats: no event announces it
    return time.monotonic() - started


def capacity(
    target: str | _HasUrl,
    *,
    concurrency: int = 32,
    duration_s: float = 3.0,
    texts: Sequence[str] | None = None,
    repeats: int = 1,
) -> LoadResult:
    """What the server serves when it is never overloaded: a closed loop of ``concurrency`` clients for
    ``duration_s`` (each sends its next request when answered, so nothing waits long enough to be
    refused); ``.summary.goodput_rps`` is the capacity.

    With ``repeats`` above 1 the loop runs that many times and the run of highest goodput is returned:
    other work on a shared machine only ever slows a run, so the best of a few short runs is the
    closest to what the server can do (warm it up first: ``warm_up``)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    runs = [
        run_load(target, ClosedLoop(concurrency=concurrency, duration_s=duration_s), texts=texts, progress=False)
        for _ in range(repeats)
    ]
    return max(runs, key=lambda run: run.summary.goodput_rps)


def soak(
    target: str | _HasUrl, *, rate_rps: float, duration_s: float, texts: Sequence[str] | None = None
) -> LoadResult:
    """An open loop (Poisson arrivals) at ``rate_rps`` for ``duration_s``, sent whatever the answers, then
    a wait until the server has drained (``wait_drained``). Judge an overload by
    ``.summary.sending_goodput_rps``: the answers that arrived while the load was sent."""
    result = run_load(target, OpenLoop(rate_rps=rate_rps, duration_s=duration_s), texts=texts, progress=False)
    wait_drained(target)
    return result


@dataclass(frozen=True)
class PairedRound:
    """One round: the capacity before and after a soak, and what the soak served while it was sent."""

    capacity_before_rps: float
    capacity_after_rps: float
    soak_goodput_rps: float
    refused: int
    """The soak's requests answered 503."""
    lost: int
    """The soak's requests that got no answer at all."""

    @property
    def capacity_rps(self) -> float:
        """The capacity while the soak ran: the mean of the two around it."""
        return (self.capacity_before_rps + self.capacity_after_rps) / 2

    @property
    def share(self) -> float:
        """The soak's goodput over the capacity around it."""
        return self.soak_goodput_rps / self.capacity_rps if self.capacity_rps else 0.0


@dataclass(frozen=True)
class PairedRounds:
    """The rounds of ``paired_rounds`` and their verdict."""

    overload: float
    capacity_s: float
    soak_s: float
    rounds: list[PairedRound]

    @property
    def share(self) -> float:
        """The median round's goodput share under the overload: the figure to judge."""
        return statistics.median(r.share for r in self.rounds)

    def __repr__(self) -> str:
        shares = ", ".join(f"{r.share:.2f}" for r in self.rounds)
        return f"<PairedRounds at {self.overload:g}x capacity: median share {self.share:.2f} (rounds {shares})>"


def paired_rounds(
    target: str | _HasUrl,
    *,
    rounds: int = 6,
    overload: float = 3.0,
    capacity_s: float = 3.0,
    soak_s: float = 6.0,
    texts: Sequence[str] | None = None,
) -> PairedRounds:
    """Goodput under ``overload`` x the server's capacity, judged against the capacity measured just
    before and just after each soak (see the module docstring). Warm the server up first.

    Example:
        >>> rounds = paired_rounds(server, rounds=2, capacity_s=1.0, soak_s=1.0)  # doctest: +SKIP
        >>> len(rounds.rounds), rounds.share > 0  # doctest: +SKIP
        (2, True)
    """
    found: list[PairedRound] = []
    before = capacity(target, duration_s=capacity_s, texts=texts).summary.goodput_rps
    for _ in range(rounds):
        soaked = soak(target, rate_rps=overload * before, duration_s=soak_s, texts=texts).summary
        after = capacity(target, duration_s=capacity_s, texts=texts).summary.goodput_rps
        found.append(
            PairedRound(
                capacity_before_rps=round(before, 1),
                capacity_after_rps=round(after, 1),
                soak_goodput_rps=round(soaked.sending_goodput_rps, 1),
                refused=soaked.by_status.get(503, 0),
                lost=soaked.requests - soaked.answered,
            )
        )
        before = after
    return PairedRounds(overload, capacity_s, soak_s, found)

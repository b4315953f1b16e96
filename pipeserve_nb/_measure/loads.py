"""Load shapes: how many requests a measurement sends, and when.

- ``ClosedLoop(concurrency=N)``: N clients, each sending its next request when the previous
  one is answered. Offered load adapts to the server, so it measures capacity, not overload.
- ``OpenLoop(rate_rps=λ)``: requests sent on a schedule (constant gaps, or Poisson arrivals)
  whatever the answers, so it can overload a server on purpose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from .._exceptions import InvalidSetting
from .._options import Custom, Int, Number, check

__all__ = ["ClosedLoop", "OpenLoop", "Load"]


@dataclass(frozen=True, kw_only=True)
class ClosedLoop:
    """``concurrency`` clients, each waiting for its answer before sending again.

    Give ``requests`` (a total across clients) or ``duration_s`` (stop sending after it).
    """

    concurrency: int
    requests: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        check("concurrency", self.concurrency, Int())
        _check_extent(self.requests, self.duration_s)

    def describe(self) -> str:
        """A short label, e.g. ``closed c=8``."""
        return f"closed c={self.concurrency}"

    def expected_requests(self) -> int | None:
        """How many requests this load sends, when known in advance."""
        return self.requests


@dataclass(frozen=True, kw_only=True)
class OpenLoop:
    """Requests at ``rate_rps`` per second, sent on schedule whatever the answers.

    ``arrivals="poisson"`` draws exponential gaps (seeded, so runs repeat); ``"constant"``
    spaces them evenly. Give ``requests`` or ``duration_s``.
    """

    rate_rps: float
    requests: int | None = None
    duration_s: float | None = None
    arrivals: Literal["poisson", "constant"] = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        check("rate_rps", self.rate_rps, Number(strict=True))
        check("arrivals", self.arrivals, _ARRIVALS)
        _check_extent(self.requests, self.duration_s)

    def describe(self) -> str:
        """A short label, e.g. ``open 120 rps``."""
        return f"open {self.rate_rps:.4g} rps"

    def expected_requests(self) -> int | None:
        """How many requests this load sends, when known in advance."""
        return len(self.schedule())

    def schedule(self) -> list[float]:
        """Intended send times, in seconds from the start."""
        rng = random.Random(self.seed)
        times: list[float] = []
        t = 0.0
        while True:
            if self.requests is not None and len(times) >= self.requests:
                return times
            if self.duration_s is not None and t >= self.duration_s:
                return times
            times.append(t)
            t += rng.expovariate(self.rate_rps) if self.arrivals == "poisson" else 1 / self.rate_rps


Load = ClosedLoop | OpenLoop


_ARRIVALS = Custom("'poisson' or 'constant'", lambda v: v in ("poisson", "constant"), str)


def _check_extent(requests: int | None, duration_s: float | None) -> None:
    if (requests is None) == (duration_s is None):
        raise InvalidSetting("give exactly one of requests= or duration_s=")
    check("requests", requests, Int(optional=True))
    check("duration_s", duration_s, Number(strict=True, of="seconds", optional=True))

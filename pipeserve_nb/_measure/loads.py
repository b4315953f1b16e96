"""Load shapes: how many requests a measurement sends, and when.

- ``ClosedLoop(concurrency=N)``: N clients, each sending its next request when the previous
  one is answered. Offered load adapts to the server, so it measures capacity, not overload.
- ``OpenLoop(rate_rps=λ)``: requests sent on a schedule (constant gaps, or Poisson arrivals)
  whatever the answers, so it can overload a server on purpose.
- ``Replay(traffic)``: what a server recorded (``server.recording()``), sent again: each request at
  its recorded time (``speed`` times as fast) with its recorded inputs and parameters, whatever the answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import orjson

from .._exceptions import InvalidSetting
from .._options import Custom, Int, Number, check
from .._server.core.traffic import RecordedTraffic

__all__ = ["ClosedLoop", "OpenLoop", "Replay", "Load"]

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


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


@dataclass(frozen=True)
class Replay:
    """Recorded traffic sent again, open loop: request ``i`` at ``traffic.arrivals_s[i] / speed`` seconds
    from the start, with its recorded inputs and parameters (a lone text without parameters as a raw
    text body, as most clients send it; the rest as ``{"inputs": [...], "parameters": {...}}``).

    ``speed=2.0`` sends the same requests in half the time: twice the recorded rate, the same mix.

    Example:
        >>> with server.recording() as rec:                       # doctest: +SKIP
        ...     answers = [server.query(t) for t in ("one", "two")]  # your clients, meanwhile
        >>> result = run_load(server, Replay(rec.traffic, speed=2.0), progress=False)  # doctest: +SKIP
        >>> result.summary.ok                                      # doctest: +SKIP
        2
    """

    traffic: RecordedTraffic
    speed: float = 1.0

    def __post_init__(self) -> None:
        check("speed", self.speed, Number(strict=True))
        if not isinstance(self.traffic, RecordedTraffic):
            raise InvalidSetting("Replay(traffic): give what a server recorded (server.recording()'s .traffic)")
        if not len(self.traffic):
            raise InvalidSetting("Replay(traffic): nothing was recorded; send the server requests while it records")

    def describe(self) -> str:
        """A short label, e.g. ``replay 240 req`` or ``replay 240 req x2``."""
        return f"replay {len(self.traffic)} req" + (f" x{self.speed:g}" if self.speed != 1 else "")

    def expected_requests(self) -> int:
        """How many requests this load sends: every one recorded."""
        return len(self.traffic)

    def schedule(self) -> list[float]:
        """Intended send times, in seconds from the start."""
        return [arrival / self.speed for arrival in self.traffic.arrivals_s]

    def bodies(self) -> list[tuple[bytes, str]]:
        """Each request's body and content type, in order."""
        out = []
        for inputs, parameters in zip(self.traffic.inputs, self.traffic.parameters, strict=True):
            if len(inputs) == 1 and not parameters:
                out.append((inputs[0].encode("utf-8"), TEXT))
            else:
                out.append((orjson.dumps({"inputs": list(inputs), "parameters": dict(parameters)}), JSON))
        return out


Load = ClosedLoop | OpenLoop | Replay


_ARRIVALS = Custom("'poisson' or 'constant'", lambda v: v in ("poisson", "constant"), str)


def _check_extent(requests: int | None, duration_s: float | None) -> None:
    if (requests is None) == (duration_s is None):
        raise InvalidSetting("give exactly one of requests= or duration_s=")
    check("requests", requests, Int(optional=True))
    check("duration_s", duration_s, Number(strict=True, of="seconds", optional=True))

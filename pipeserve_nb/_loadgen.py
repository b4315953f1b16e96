"""Load shapes and the async engine that sends them: where a measurement's requests come from.

Two shapes:

- ``ClosedLoop(concurrency=N)``: N clients, each sending its next request when the previous
  one is answered. Offered load adapts to the server, so it measures capacity, not overload.
- ``OpenLoop(rate_rps=λ)``: requests sent on a schedule (constant gaps, or Poisson arrivals)
  whatever the answers. Each latency is measured from the request's *intended* send time,
  so a stalled server (or a generator that fell behind) cannot hide its queueing delay
  (coordinated omission). How late each request actually left is recorded as ``lag``.

Every request yields exactly one ``Row``, answered or not (status 0: no HTTP answer).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._batcher import clock
from ._protocol import BATCH_SIZE_HEADER, INFERENCE_HEADER, QUEUE_WAIT_HEADER
from ._rawhttp import ConnectError, RawClient, RawResponse, ReadTimeout, RemoteProtocolError

__all__ = ["ClosedLoop", "OpenLoop", "Load", "Row", "generate", "ROW_FIELDS"]


@dataclass(frozen=True, kw_only=True)
class ClosedLoop:
    """``concurrency`` clients, each waiting for its answer before sending again.

    Give ``requests`` (a total across clients) or ``duration_s`` (stop sending after it).
    """

    concurrency: int
    requests: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
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
        if isinstance(self.rate_rps, bool) or not isinstance(self.rate_rps, (int, float)) or not self.rate_rps > 0:
            raise ValueError(f"rate_rps must be a number > 0, got {self.rate_rps!r}")
        if self.arrivals not in ("poisson", "constant"):
            raise ValueError(f"arrivals must be 'poisson' or 'constant', got {self.arrivals!r}")
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


def _check_extent(requests: int | None, duration_s: float | None) -> None:
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests= or duration_s=")
    if requests is not None and (isinstance(requests, bool) or not isinstance(requests, int) or requests < 1):
        raise ValueError(f"requests must be an int >= 1, got {requests!r}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s!r}")


@dataclass(frozen=True, slots=True)
class Row:
    """One request. Times are seconds from the start of the run; latency is from ``intended_s``."""

    index: int
    intended_s: float
    sent_s: float
    done_s: float
    status: int
    queue_wait_ms: float | None
    batch_size: int | None
    inference_ms: float | None
    error: str | None

    @property
    def latency_s(self) -> float:
        return self.done_s - self.intended_s


ROW_FIELDS = [f for f in Row.__dataclass_fields__]


async def generate(
    url: str,
    load: Load,
    texts: Sequence[str],
    *,
    timeout_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> list[Row]:
    """Send ``load`` to ``url`` (raw text bodies, texts used in order, cycling); one row per request."""
    if not texts:
        raise ValueError("need at least one text to send")
    bodies = itertools.cycle([t.encode("utf-8") for t in texts])
    rows: list[Row] = []
    client = RawClient(url, timeout_s)
    try:
        began = clock()

        async def send(index: int, intended_s: float) -> None:
            body = next(bodies)
            sent = clock() - began
            try:
                r = await client.post(body, "text/plain; charset=utf-8")
            except (ConnectError, ReadTimeout, RemoteProtocolError) as exc:
                rows.append(Row(index, intended_s, sent, clock() - began, 0, None, None, None, type(exc).__name__))
            else:
                h = r.headers
                rows.append(
                    Row(
                        index,
                        intended_s,
                        sent,
                        clock() - began,
                        r.status,
                        _float(h.get(QUEUE_WAIT_HEADER)),
                        _int(h.get(BATCH_SIZE_HEADER)),
                        _float(h.get(INFERENCE_HEADER)),
                        None if 200 <= r.status < 300 else _error_type(r),
                    )
                )
            if on_progress is not None:
                on_progress(len(rows))

        if isinstance(load, ClosedLoop):
            counter = itertools.count()

            async def client_loop() -> None:
                while True:
                    now = clock() - began
                    if load.duration_s is not None and now >= load.duration_s:
                        return
                    index = next(counter)
                    if load.requests is not None and index >= load.requests:
                        return
                    await send(index, now)

            await asyncio.gather(*(client_loop() for _ in range(load.concurrency)))
        else:
            tasks: list[asyncio.Task[None]] = []
            try:
                for index, intended in enumerate(load.schedule()):
                    delay = began + intended - clock()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(send(index, intended)))
                await asyncio.gather(*tasks)
            finally:  # cancelled or failed: leave no request task behind
                for task in tasks:
                    task.cancel()
    finally:
        await client.aclose()
    rows.sort(key=lambda r: r.index)
    return rows


def _float(value: str | None) -> float | None:
    return float(value) if value is not None else None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _error_type(response: RawResponse) -> str:
    try:
        return str(json.loads(response.body)["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status}"

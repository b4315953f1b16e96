"""The async engine that sends a load: where a measurement's requests come from.

Each latency is measured from the request's *intended* send time (``loads``), so a stalled
server (or a generator that fell behind) cannot hide its queueing delay (coordinated
omission). How late each request actually left is recorded as ``lag``.

Every request yields exactly one ``Row``, answered or not (status 0: no HTTP answer).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._wire import BATCH_SIZE_HEADER, INFERENCE_HEADER, QUEUE_WAIT_HEADER, error_of
from .loads import TEXT, ClosedLoop, Load, Replay
from .rawhttp import ConnectError, RawClient, RawResponse, ReadTimeout, RemoteProtocolError

__all__ = ["Row", "generate", "ROW_FIELDS"]

clock = time.monotonic


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
    retry_after_s: float | None = None  # a refusal's Retry-After

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
    if isinstance(load, Replay):
        payloads = load.bodies()  # its own requests, in order
    elif texts:
        payloads = [(t.encode("utf-8"), TEXT) for t in texts]
    else:
        raise ValueError("need at least one text to send")
    bodies = itertools.cycle(payloads)
    rows: list[Row] = []
    client = RawClient(url, timeout_s)
    try:
        began = clock()

        async def send(index: int, intended_s: float | None) -> None:
            """One request; ``intended_s`` None: it is meant to leave now (a closed loop's next)."""
            body, content_type = next(bodies)
            sent = clock() - began
            if intended_s is None:
                intended_s = sent
            try:
                r = await client.post(body, content_type)
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
                        _float(h.get("retry-after")),
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
                    await send(index, None)

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
        error = error_of(json.loads(response.body))
    except ValueError:
        error = None
    return error[0] if error is not None else f"HTTP {response.status}"

"""A closed-loop load generator: N concurrent clients, each sending its next request
when the previous one is answered. Every request is recorded, answered or not."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ._batcher import clock

__all__ = ["Sample", "closed_loop"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was sent (s since the run began), its latency, status and
    the server's timing headers (None where absent, e.g. on errors)."""

    sent_at_s: float
    latency_s: float
    status: int
    batch_size: int | None
    queue_wait_ms: float | None
    inference_ms: float | None


async def closed_loop(url: str, texts: Sequence[str], *, concurrency: int, requests: int) -> list[Sample]:
    """Send ``requests`` raw-text requests from ``concurrency`` clients; return one sample each.

    Texts are used in order, cycling. A request that fails at the transport level is
    recorded with status 0.
    """
    if concurrency < 1 or requests < 0 or not texts:
        raise ValueError("need concurrency >= 1, requests >= 0 and at least one text")
    numbers = iter(range(requests))
    cycle = itertools.cycle(texts)
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=300.0) as client:
        began = clock()

        async def one_client() -> None:
            for _ in numbers:
                sent = clock()
                try:
                    r = await client.post(url, content=next(cycle).encode(), headers={"content-type": "text/plain"})
                except httpx.HTTPError:
                    samples.append(Sample(sent - began, clock() - sent, 0, None, None, None))
                    continue
                h = r.headers
                samples.append(
                    Sample(
                        sent - began,
                        clock() - sent,
                        r.status_code,
                        int(h["x-batch-size"]) if "x-batch-size" in h else None,
                        float(h["x-queue-wait-ms"]) if "x-queue-wait-ms" in h else None,
                        float(h["x-inference-ms"]) if "x-inference-ms" in h else None,
                    )
                )

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return samples

"""Streamed generation under load: clients that ask a chat server and read each answer as it is written.

A ``StreamLoad`` is a closed loop of ``clients``, each asking its prompts one after another on
``/v1/chat/completions`` with ``"stream": true`` (greedy), its answers' budgets cycling through
``max_tokens`` (mixed lengths: where batching policies differ). ``run_streams`` runs it against any server
that speaks OpenAI's chat route (pipeserve, ``transformers serve``, ...) from a thread of its own, so a
notebook cell can call it while the kernel's event loop runs, and returns a ``StreamResult``:

- per answer (``frame()``): when it was sent, its time to first token (``ttft_ms``), its mean time between
  tokens after the first (``itl_ms``), its tokens and status;
- ``summary()``: tokens/s (every answer's tokens over the run's wall time), TTFT p50/p99, ITL p50, answers by
  status.

Tokens are the server's own count (``stream_options.include_usage``) where it sends one, else what
``count_tokens(text)`` says, else the pieces of text received (one per token on most servers).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from .._client import auth_headers
from .._percentile import percentile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StreamLoad", "StreamAnswer", "StreamResult", "run_streams", "PROMPTS"]

PROMPTS = (
    "Write a short story about a dragon who learns to paint.",
    "Explain how a rainbow forms, step by step.",
    "Describe a busy market in Marrakech in the morning.",
    "Tell me about the history of the bicycle.",
    "Write a letter to a friend about your summer holiday.",
    "Explain photosynthesis to a ten-year-old.",
    "Describe the life of a honeybee from egg to adult.",
    "Write a poem about the sea at night.",
    "Explain why the sky is blue.",
    "Tell a story about a robot who wants to be a chef.",
    "Describe how bread is made, from wheat to loaf.",
    "Write a diary entry of a lighthouse keeper.",
    "Explain how a steam engine works.",
    "Describe a walk through an autumn forest.",
    "Tell me about the planets of the solar system.",
    "Write a fairy tale about a clever fox.",
)
"""Prompts that ask for long answers, so that an answer runs to its budget."""


@dataclass(frozen=True, slots=True)
class StreamLoad:
    """``clients`` clients, each asking ``requests_per_client`` prompts one after another (a closed loop).

    The k-th request overall asks ``prompts[k % len]`` with a budget of ``max_tokens[k % len]`` tokens."""

    clients: int
    requests_per_client: int = 2
    max_tokens: tuple[int, ...] = (48,)
    prompts: tuple[str, ...] = PROMPTS

    def __post_init__(self) -> None:
        if self.clients < 1 or self.requests_per_client < 1 or not self.max_tokens or not self.prompts:
            raise ValueError("a StreamLoad needs clients >= 1, requests_per_client >= 1, budgets and prompts")

    def describe(self) -> str:
        return f"{self.clients} clients x {self.requests_per_client} answers"


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """One streamed answer (seconds from the start of the run; ``first_s`` None: no text came)."""

    client: int
    sent_s: float
    first_s: float | None
    end_s: float
    tokens: int
    status: int
    finish_reason: str | None
    """Why the answer ended, as the server said (``stop``, ``length``, or the server's own reason)."""
    text: str = field(repr=False)

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_s is None else (self.first_s - self.sent_s) * 1000

    @property
    def itl_ms(self) -> float | None:
        if self.first_s is None or self.tokens < 2:
            return None
        return (self.end_s - self.first_s) * 1000 / (self.tokens - 1)


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A ``StreamLoad``'s answers and the run's wall time."""

    load: StreamLoad
    answers: list[StreamAnswer]
    wall_s: float

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        columns = ("client", "sent_s", "ttft_ms", "itl_ms", "tokens", "status", "finish_reason")
        return pd.DataFrame([{c: getattr(a, c) for c in columns} for a in self.answers], columns=list(columns))

    def summary(self) -> dict[str, Any]:
        ok = [a for a in self.answers if a.status == 200 and a.first_s is not None]
        firsts = [a.ttft_ms for a in ok if a.ttft_ms is not None]
        gaps = [a.itl_ms for a in ok if a.itl_ms is not None]
        tokens = sum(a.tokens for a in ok)
        return {
            "requests": len(self.answers),
            "answered": len(ok),
            "tokens": tokens,
            "tokens_per_s": tokens / self.wall_s if self.wall_s > 0 else None,
            "ttft_p50_ms": percentile(firsts, 50) if firsts else None,
            "ttft_p99_ms": percentile(firsts, 99) if firsts else None,
            "itl_p50_ms": percentile(gaps, 50) if gaps else None,
            "by_status": dict(Counter(a.status for a in self.answers)),
            "by_finish_reason": dict(Counter(a.finish_reason for a in ok)),
        }


def run_streams(
    target: Any,
    load: StreamLoad,
    *,
    model: str | None = None,
    token: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
    timeout_s: float = 300.0,
) -> StreamResult:
    """Run ``load`` against ``target`` (a server handle or a base URL) and return what its clients saw.

    ``model`` is the request's ``model`` field (None: the server's default model); ``token`` the bearer
    token (a handle's own is used when it has one)."""
    url = str(getattr(target, "url", target)).rstrip("/")
    token = token if token is not None else getattr(target, "_token", None)
    body = {"temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if model is not None:  # else the server's default model
        body["model"] = model
    result: list[StreamResult] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(_run(url, load, body, auth_headers(token), count_tokens, timeout_s)))
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="pipeserve-streams", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _run(
    url: str,
    load: StreamLoad,
    body: dict[str, Any],
    headers: dict[str, str],
    count_tokens: Callable[[str], int] | None,
    timeout_s: float,
) -> StreamResult:
    limits = httpx.Limits(max_connections=load.clients + 1)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, headers=headers, trust_env=False) as client:
        start = time.perf_counter()

        async def one_client(index: int) -> list[StreamAnswer]:
            answers = []
            for k in range(load.requests_per_client):
                n = index + k * load.clients
                asked = body | {
                    "messages": [{"role": "user", "content": load.prompts[n % len(load.prompts)]}],
                    "max_tokens": load.max_tokens[n % len(load.max_tokens)],
                }
                answers.append(await _ask(client, url, asked, index, start, count_tokens))
            return answers

        per_client = await asyncio.gather(*(one_client(i) for i in range(load.clients)))
        wall = time.perf_counter() - start
    return StreamResult(load, [a for answers in per_client for a in answers], wall)


async def _ask(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    index: int,
    start: float,
    count_tokens: Callable[[str], int] | None,
) -> StreamAnswer:
    sent = time.perf_counter() - start
    first, pieces, counted, reason = None, [], None, None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return StreamAnswer(index, sent, None, time.perf_counter() - start, 0, response.status_code, None, "")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            choices = chunk.get("choices") or []
            text = "".join((c.get("delta") or {}).get("content") or "" for c in choices)
            reason = next((c["finish_reason"] for c in choices if c.get("finish_reason")), reason)
            if text:
                first = time.perf_counter() - start if first is None else first
                pieces.append(text)
            if chunk.get("usage"):
                counted = int(chunk["usage"]["completion_tokens"])
    whole = "".join(pieces)
    tokens = count_tokens(whole) if count_tokens is not None else counted if counted is not None else len(pieces)
    return StreamAnswer(index, sent, first, time.perf_counter() - start, tokens, 200, reason, whole)

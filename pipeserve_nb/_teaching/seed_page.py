"""The seed page's two server designs, re-created faithfully, as reference points.

The Transformers guide "Using pipelines for a webserver" builds a Starlette app whose
handler puts ``(text, response_queue)`` on an ``asyncio.Queue``; one background task owns
the model and answers. Its two designs are kept here *as printed*, with their flaws, so
notebooks and benchmarks can measure them next to ``serve()``:

- ``batching=False``: take one request at a time and run the model **on the event loop**;
- ``batching=True``: its dynamic-batching sketch: after each ``q.get()``, wait up to
  ``timeout_s`` for the next one (the timer restarts on every arrival), no batch cap,
  then run the whole batch, again on the event loop.

Only what no longer runs was changed: Starlette 1.x has no ``on_event("startup")``, so the
queue and the loop task are created in a ``lifespan``, and the model is loaded there (still
on the event loop). A ``GET /health`` route that the page lacks is added, so a probe can
measure how long the event loop takes to answer while the model runs on it.
``drop_first_request=True`` restores the sketch's bug as printed: it takes a first request,
then starts ``strings = []``, so that request is never answered.
Do not serve these: they exist to be measured.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .._models.loading import load
from .._models.spec import LoadedModel, ModelSpec

__all__ = ["seed_page_app"]


def seed_page_app(
    model: Any = ModelSpec.model,
    *,
    task: str | None = ModelSpec.task,
    batching: bool = False,
    timeout_s: float = 0.001,
    drop_first_request: bool = False,
) -> Starlette:
    """The seed page's server (``POST /`` with a raw text body), for comparison only.

    Parameters:
        model: as for ``serve()``; None is the bundled all-MiniLM-L6-v2 embedder.
        task: pipeline task for a Hub id or path.
        batching: use the page's dynamic-batching sketch instead of one-at-a-time.
        timeout_s: the sketch's per-get timeout (the page uses 1 ms).
        drop_first_request: reproduce the sketch's dropped-first-request bug.
    """
    spec = ModelSpec(model=model, task=task)

    async def homepage(request: Request) -> JSONResponse:
        payload = await request.body()
        string = payload.decode("utf-8")
        response_q: asyncio.Queue[Any] = asyncio.Queue()
        await request.app.state.model_queue.put((string, response_q))
        output = await response_q.get()
        return JSONResponse(output)

    async def server_loop(q: asyncio.Queue[tuple[str, asyncio.Queue[Any]]], model: LoadedModel) -> None:
        def pipe(strings: list[str]) -> list[Any]:
            return model(strings)  # on the event loop, as the page does

        while True:
            (string, response_q) = await q.get()
            if not batching:
                out = pipe([string])[0]
                await response_q.put(out)
                continue
            strings = [] if drop_first_request else [string]
            queues = [] if drop_first_request else [response_q]
            while True:
                try:
                    (string, rq) = await asyncio.wait_for(q.get(), timeout=timeout_s)
                except TimeoutError:
                    break
                strings.append(string)
                queues.append(rq)
            if not strings:
                continue
            outs = pipe(strings)
            for rq, out in zip(queues, outs, strict=True):
                await rq.put(out)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        q: asyncio.Queue[tuple[str, asyncio.Queue[Any]]] = asyncio.Queue()
        app.state.model_queue = q
        loaded = load(spec)  # blocks the loop while loading, as the page's server_loop does
        task = asyncio.create_task(server_loop(q, loaded))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def health(request: Request) -> JSONResponse:
        # Not on the page: added so a probe can measure how long the event loop takes to answer.
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/", homepage, methods=["POST"]), Route("/health", health, methods=["GET"])], lifespan=lifespan
    )

"""The Starlette app: HTTP in, engine call, HTTP out. The one place errors become statuses.

Routes:
    POST /        run the model (raw text or JSON body, see ``_protocol``)
    GET  /health  200 while the model is loaded and the worker alive, else 503
    GET  /stats   queue depth, requests by status, batch sizes, latency percentiles

Every error is ``{"error": {"type": ..., "message": ...}}``; a traceback is added only
when ``ServerConfig.debug`` is set. Successful answers carry the headers
``X-Queue-Wait-Ms``, ``X-Batch-Size`` and ``X-Inference-Ms``.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._batcher import clock
from ._engine import Engine, Result
from ._exceptions import (
    InferenceFailed,
    InvalidInput,
    Overloaded,
    RequestFailed,
    RequestTimeout,
    ServerStopping,
    UnsupportedMediaType,
    WorkerDied,
)
from ._protocol import BATCH_SIZE_HEADER, INFERENCE_HEADER, QUEUE_WAIT_HEADER, parse_body

__all__ = ["create_app", "STATUS_OF"]

STATUS_OF: dict[type[RequestFailed], int] = {
    InvalidInput: 400,
    UnsupportedMediaType: 415,
    InferenceFailed: 500,
    Overloaded: 503,
    ServerStopping: 503,
    WorkerDied: 503,
    RequestTimeout: 504,
}
"""HTTP status for each way a request can fail."""

_HTTP_ERROR_TYPES = {404: "NotFound", 405: "MethodNotAllowed"}


def create_app(engine: Engine) -> Starlette:
    """Build the ASGI app around ``engine``; its lifespan starts and closes the engine."""
    debug = engine.config.debug
    max_inputs = engine.config.max_inputs_per_request

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.close()

    async def predict(request: Request) -> Response:
        started = clock()
        try:
            parsed = parse_body(request.headers.get("content-type"), await request.body(), max_inputs)
            result = await engine.submit(parsed.inputs, parsed.parameters)
        except RequestFailed as exc:
            response = _error_response(exc, debug)
        else:
            response = JSONResponse(result.outputs[0] if parsed.single else result.outputs)
            response.headers.update(_timing_headers(result))
        engine.stats.record_response(response.status_code, clock() - started)
        return response

    async def health(request: Request) -> Response:
        body: dict[str, Any] = {"status": engine.state.value, "model": engine.model_name}
        if engine.healthy:
            body["status"] = "ok"
            body["queue_depth"] = engine.queue_depth()
            return JSONResponse(body)
        if engine.failure is not None:
            body["error"] = _error_body("WorkerDied", f"{type(engine.failure).__name__}: {engine.failure}")
        return JSONResponse(body, status_code=503)

    async def stats(request: Request) -> Response:
        return JSONResponse(
            {
                "model": engine.model_name,
                "state": engine.state.value,
                "policy": repr(engine.policy),
                "queue_depth": engine.queue_depth(),
                "dropped_before_inference": engine.dropped_before_inference(),
                **engine.stats.snapshot(),
            }
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = _HTTP_ERROR_TYPES.get(status, "HTTPError")
        return JSONResponse(_error_body(kind, str(getattr(exc, "detail", exc))), status_code=status)

    async def internal_error(request: Request, exc: Exception) -> Response:
        message = "internal server error" + (f": {type(exc).__name__}: {exc}" if debug else "")
        body = _error_body("InternalError", message)
        if debug:
            body["error"]["traceback"] = "".join(traceback.format_exception(exc))
        return JSONResponse(body, status_code=500)

    return Starlette(
        routes=[
            Route("/", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _error_response(exc: RequestFailed, debug: bool) -> JSONResponse:
    body = _error_body(type(exc).__name__, str(exc))
    if debug and exc.__cause__ is not None:
        body["error"]["traceback"] = "".join(traceback.format_exception(exc.__cause__))
    headers = {}
    if isinstance(exc, Overloaded):
        headers["retry-after"] = str(math.ceil(exc.retry_after_s))
    return JSONResponse(body, status_code=STATUS_OF[type(exc)], headers=headers)


def _timing_headers(result: Result) -> dict[str, str]:
    return {
        QUEUE_WAIT_HEADER: f"{result.queue_wait_s * 1000:.3f}",
        BATCH_SIZE_HEADER: str(result.batch_size),
        INFERENCE_HEADER: f"{result.inference_s * 1000:.3f}",
    }

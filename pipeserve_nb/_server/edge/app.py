"""The Starlette app: HTTP in, engine call, HTTP out. The one place errors become statuses.

Routes (the native face, then OpenAI's, ``v1``):
    GET  /              the try-it page: a text box and the answer drawn for the model's task (``page``)
    POST /              run the default model (raw text or JSON body, see ``body``); on a model served one
                        token at a time, one generation of the step loop per input (``generate``)
    POST /models/{name} the same, on the model named ``name`` (a server with several models)
    POST /v1/chat/completions, /v1/completions   a chat model's answer, whole or streamed (``v1.chat``,
                        ``v1.completions``); POST /v1/embeddings (``v1.embeddings``)
    GET  /v1/models     the models held (``v1.listing``); OpenAI routes route by the body's ``model``
    GET  /health        200 while the server can serve, else 503 with the reason (``health``)
    GET  /stats         queue depth, requests by status, batch sizes, latency percentiles
    GET  /metrics       the same numbers for Prometheus (``metrics``)
    GET  /openapi.json  the API description (``openapi``)

A handler turns each request into one engine call and each outcome into one response;
every error answer comes from the error table (``errors``). Successful answers carry the
headers ``X-Queue-Wait-Ms``, ``X-Batch-Size`` and ``X-Inference-Ms`` (``_wire``).

A body over ``max_body_bytes`` is refused before it is read. While a request waits, the
handler also listens for the client going away; if it does, or if the ASGI server cancels
the handler (Ray Serve does when the client leaves), the request is cancelled (a queued one
never runs) and counted under status 499.

The middleware before the routes (``middleware``), outermost first: ``Counting`` (every answer
and refusal counted by status in ``/stats`` and ``/metrics``), ``RequestLimits`` (414, 431),
``ReplicaHeader`` (on a replica of a Ray Serve deployment: ``X-Replica`` on every answer, and
``/stats`` and ``/metrics`` say which replica they describe), ``BearerTokenMiddleware`` (401,
with ``config.auth_token`` set), ``Shedding`` (a ``POST /`` the engine has no room for gets its
503 before its body is read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..._exceptions import RequestFailed
from ..._wire import BATCH_SIZE_HEADER, INFERENCE_HEADER, QUEUE_WAIT_HEADER
from ..core.engine import Engine
from ..core.health import check
from ..core.models import Models
from ..core.report import stats_report
from ..core.request import Result
from ..observe.metrics import CONTENT_TYPE, render_together
from .body import parse_body, read_body
from .disconnect import unless_disconnected
from .errors import (
    error_response,
    failure_body,
    internal_error_response,
    openai_face,
    refusal,
    web_error_response,
)
from .generate import generated_texts
from .middleware import (
    MODEL,
    REPORT,
    RESERVATION,
    BearerTokenMiddleware,
    Counting,
    ReplicaHeader,
    RequestLimits,
    Shedding,
)
from .openapi import openapi_document
from .page import PAGE_PATH, try_page
from .v1.chat import chat_completions
from .v1.completions import completions
from .v1.embeddings import embeddings
from .v1.listing import model_entry, model_list, started_now

__all__ = ["create_app"]


def create_app(served: Engine | Models) -> Starlette:
    """Build the ASGI app around one engine or the ``Models`` of a server; its lifespan starts and closes them."""
    models = served if isinstance(served, Models) else Models.single(served)
    config = models.config
    debug = config.debug
    started = started_now()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await models.start()
        try:
            yield
        finally:
            await models.close()

    async def predict(request: Request) -> Response:
        response: Response
        reservation = request.scope.pop(RESERVATION, None)  # its room, taken by ``Shedding``
        try:
            try:
                engine = models.get(request.path_params.get("name"))
                request.scope[MODEL] = engine.name
                body = await read_body(request, config.max_body_bytes)
                content_type = request.headers.get("content-type")
                parsed = parse_body(content_type, body, config.max_inputs_per_request, config.max_json_depth)
                if engine.generating is not None:  # served one token at a time: the step loop answers it
                    return await generated_texts(request, engine, parsed)
                future = engine.submit(parsed.inputs, parsed.parameters, reservation)
            finally:
                if reservation is not None:
                    reservation.release()  # a refused body gives the room back (nothing once submitted)
            result = await unless_disconnected(future, (), request)  # cancelled when its client leaves
            if result is None:  # nobody is left to read it; ``Counting`` counts it
                return refusal("ClientClosed", "the client went away before its answer")
        except RequestFailed as exc:
            response = error_response(exc, debug)
        else:
            response = _OutputsResponse(result.outputs[0] if parsed.single else result.outputs)
            response.headers.update(_timing_headers(result))
        return response

    async def chat(request: Request) -> Response:
        return await chat_completions(request, models)

    async def text_completions(request: Request) -> Response:
        return await completions(request, models)

    async def embed(request: Request) -> Response:
        return await embeddings(request, models)

    async def list_models(request: Request) -> Response:
        request.scope[REPORT] = True
        return model_list(models, started)

    async def one_model(request: Request) -> Response:
        request.scope[REPORT] = True
        return model_entry(request, models, started)

    async def page(request: Request) -> Response:
        request.scope[REPORT] = True
        return await try_page(request)

    async def health(request: Request) -> Response:
        request.scope[REPORT] = True
        reports = {name: check(engine, debug) for name, engine in models}
        body = reports[models.default_name].body | {"models": {name: r.body for name, r in reports.items()}}
        failing = next(((name, r) for name, r in reports.items() if not r.ok), None)
        if failing is not None:  # the status and reason say which model cannot serve, whichever it is
            name, report = failing
            reason = report.body["reason"] if len(models) == 1 else f"model {name!r}: {report.body['reason']}"
            body |= {"status": report.body["status"], "reason": reason}
            if report.failure is not None:
                body |= failure_body(report.failure, debug)
        return JSONResponse(body, status_code=503 if failing is not None else 200)

    async def metrics(request: Request) -> Response:
        request.scope[REPORT] = True
        return Response(render_together([engine.stats.metrics for _, engine in models]), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        request.scope[REPORT] = True
        engine = models.default
        return JSONResponse(openapi_document(config, engine.model_name, engine.parameter_names))

    async def stats(request: Request) -> Response:
        request.scope[REPORT] = True
        default = stats_report(models.default)
        each = {name: default if engine is models.default else stats_report(engine) for name, engine in models}
        return JSONResponse({**default, "default_model": models.default_name, "models": each})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return web_error_response(status, str(getattr(exc, "detail", exc)), openai_face(request.url.path))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return internal_error_response(exc, debug, openai_face(request.url.path))

    app = Starlette(
        routes=[
            Route(PAGE_PATH, predict, methods=["POST"]),
            Route(PAGE_PATH, page, methods=["GET"]),
            Route("/models/{name:path}", predict, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", text_completions, methods=["POST"]),
            Route("/v1/embeddings", embed, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", one_model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    for _, engine in models:
        engine.stats.metrics.watch(engine.queue_depth, partial(_healthy, engine))
    app.add_middleware(Shedding, models=models)  # added first: the innermost, inside the token check
    if config.auth_token is not None:
        app.add_middleware(BearerTokenMiddleware, token=config.auth_token)
    replica = models.default.replica
    if replica is not None:
        app.add_middleware(ReplicaHeader, replica=replica)
    app.add_middleware(
        RequestLimits,
        max_url_bytes=config.max_url_bytes,
        max_headers=config.max_headers,
        max_header_bytes=config.max_header_bytes,
    )
    app.add_middleware(Counting, record=models.record_response)  # added last: the outermost
    return app


def _healthy(engine: Engine) -> bool:
    return check(engine).ok


class _OutputsResponse(Response):
    """JSON of model outputs, rendered with orjson: a list of floats is rendered many times faster than
    with the standard library, where it was the largest cost on the request path.
    Non-finite floats become null, as ``to_jsonable`` makes them."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _timing_headers(result: Result) -> dict[str, str]:
    return {
        QUEUE_WAIT_HEADER: f"{result.queue_wait_s * 1000:.3f}",
        BATCH_SIZE_HEADER: str(result.batch_size),
        INFERENCE_HEADER: f"{result.inference_s * 1000:.3f}",
    }

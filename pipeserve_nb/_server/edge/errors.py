"""The error table, once: each way a request can fail, its HTTP status, and when it happens; and the
one path from a failure to its response.

Every error answer the server sends is built here, from ``ERRORS``: a failure the engine raised
(``error_response``), a refusal of the edge before any handler (``refusal``: 401, 404, 405, 414, 431,
499), an exception no handler expected (``internal_error_response``), and the raw answer of the HTTP
protocol to a request head that never ends (``raw_refusal``). The OpenAPI document's responses and the
table in ``docs/http-api.md`` are made from the same ``ERRORS``.

Two faces, one table: a native route's error body is ``{"error": {"type": ..., "message": ...}}``; on
OpenAI's routes (``/v1/...``, ``openai_face``) it is OpenAI's ``{"error": {"message", "type", "param",
"code"}}``, with OpenAI's category as ``type`` (``invalid_request_error``, ``authentication_error``,
``server_error``), the kind's name in snake case as ``code`` (``model_not_found`` and ``invalid_api_key``
as OpenAI names them) and the request field at fault as ``param``. The status is the same on both faces.
Messages name exception types, never their text, file paths or tracebacks, unless ``debug`` is set.
``Retry-After`` is computed here and only here, from ``Overloaded.retry_after_s``: the forecast wait in
whole seconds, rounded up, at least 1; a 504 says ``x-should-retry: false`` (OpenAI's clients otherwise
retry it, sending the same work again to a server that could not finish it in time).
"""

from __future__ import annotations

import math
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import JSONResponse

from ..._exceptions import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    RequestFailed,
    RequestTimeout,
    ServerStopping,
    TooLarge,
    UnsupportedMediaType,
    WorkerDied,
)
from ..._wire import error_body

__all__ = ["ErrorKind", "ERRORS", "STATUS_OF", "CLIENT_CLOSED", "error_response", "refusal", "web_error_response"]
__all__ += ["internal_error_response", "raw_refusal", "retry_after", "failure_body", "markdown_table", "openai_face"]
__all__ += ["openai_error"]


@dataclass(frozen=True)
class ErrorKind:
    """One way a request fails: its ``name`` (the ``type`` in the error body), its status,
    when it happens, and the exception behind it (None for the edge's own refusals)."""

    name: str
    status: int
    when: str
    exception: type[RequestFailed] | None = None
    reason: str = ""
    """The status line's reason phrase (for the answers the HTTP protocol writes itself)."""


ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(
        "InvalidInput",
        400,
        "empty or whitespace body, invalid UTF-8 or lone surrogates, malformed JSON, JSON nested deeper than "
        "`max_json_depth`, wrong shape; a parameter "
        "the model does not take, or a parameter value the model refuses (its runner raises `InvalidInput`)",
        InvalidInput,
    ),
    ErrorKind("Unauthorized", 401, "the server has a token and the request lacks `Authorization: Bearer <token>`"),
    ErrorKind("NotFound", 404, "unknown path"),
    ErrorKind(
        "ModelNotFound",
        404,
        "the request names a model the server does not hold (the `model` field on `/v1`, the path on "
        "`POST /models/{name}`); the message lists the models it holds",
        ModelNotFound,
    ),
    ErrorKind("MethodNotAllowed", 405, "wrong method for the path"),
    ErrorKind(
        "TooLarge",
        413,
        "body over `max_body_bytes` (refused before it is read), more than `max_inputs_per_request` inputs, "
        "or an input with more tokens than the model takes",
        TooLarge,
    ),
    ErrorKind("UriTooLong", 414, "request target (path and query) over `max_url_bytes`"),
    ErrorKind("UnsupportedMediaType", 415, "a body that is neither text nor JSON", UnsupportedMediaType),
    ErrorKind(
        "HeadersTooLarge",
        431,
        "more than `max_headers` header fields or `max_header_bytes` of them; a head still unfinished past "
        "about that size is cut off (431, then the connection closes)",
        reason="Request Header Fields Too Large",
    ),
    ErrorKind(
        "ClientClosed",
        499,
        "the client went away before its answer (nothing is sent; counted in `/stats` and `/metrics`); "
        "a request still waiting then never reaches the model",
    ),
    ErrorKind(
        "InferenceFailed",
        500,
        "the model raised for this request's inputs (its batch-mates are retried and still answered)",
        InferenceFailed,
    ),
    ErrorKind("InternalError", 500, "a bug in the server itself (the message says no more unless `debug`)"),
    ErrorKind(
        "Overloaded",
        503,
        "the queue holds `max_queue` requests, or the request is predicted to wait over `max_queue_wait_s` "
        "to start; comes with `Retry-After` (the predicted wait, rounded up)",
        Overloaded,
    ),
    ErrorKind("ServerStopping", 503, "the server is draining or stopped", ServerStopping),
    ErrorKind(
        "WorkerDied",
        503,
        "the inference worker has died (it is not restarted: `stop()` and `serve()` again; "
        "`server.failure` holds the cause)",
        WorkerDied,
    ),
    ErrorKind(
        "RequestTimeout",
        504,
        "no answer within `timeout_s`; a request that expires while queued never reaches the model",
        RequestTimeout,
    ),
)

STATUS_OF: dict[type[RequestFailed], int] = {k.exception: k.status for k in ERRORS if k.exception is not None}
"""HTTP status for each way a request can fail."""

_BY_NAME = {k.name: k for k in ERRORS}
CLIENT_CLOSED = _BY_NAME["ClientClosed"].status
"""Status recorded for a request whose client went away before its answer (never sent)."""


def retry_after(exc: Overloaded) -> str:
    """The ``Retry-After`` header of an ``Overloaded`` answer: the forecast wait in whole seconds, rounded up, >= 1."""
    return str(max(1, math.ceil(exc.retry_after_s)))


def openai_face(path: str) -> bool:
    """Whether ``path`` is one of OpenAI's routes, whose errors take OpenAI's shape."""
    return path == "/v1" or path.startswith("/v1/")


_OPENAI_CODES = {"ModelNotFound": "model_not_found", "Unauthorized": "invalid_api_key"}


def openai_error(name: str, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body for the kind ``name`` answered with ``status``."""
    if status == 401:
        category = "authentication_error"
    elif status >= 500:
        category = "server_error"
    else:
        category = "invalid_request_error"
    code = _OPENAI_CODES.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return {"error": {"message": message, "type": category, "param": param, "code": code}}


def _body(name: str, status: int, message: str, openai: bool, param: str | None = None) -> dict[str, Any]:
    return openai_error(name, status, message, param) if openai else error_body(name, message)


def failure_body(exc: RequestFailed, debug: bool = False, openai: bool = False) -> dict[str, Any]:
    """The error body of a request that failed with ``exc`` (with its cause when ``debug``)."""
    message = str(exc)
    cause = exc.__cause__
    if debug and cause is not None:
        message += f" ({type(cause).__name__}: {cause})"
    body = _body(type(exc).__name__, STATUS_OF[type(exc)], message, openai, exc.param)
    if debug and cause is not None:
        body["error"]["traceback"] = "".join(traceback.format_exception(cause))
    return body


def error_response(exc: RequestFailed, debug: bool, openai: bool = False) -> JSONResponse:
    """The answer to a request that failed with ``exc``, in the face's shape."""
    headers = {"retry-after": retry_after(exc)} if isinstance(exc, Overloaded) else {}
    if isinstance(exc, RequestTimeout):
        headers["x-should-retry"] = "false"
    return JSONResponse(failure_body(exc, debug, openai), status_code=STATUS_OF[type(exc)], headers=headers)


def refusal(name: str, message: str, headers: Mapping[str, str] | None = None, openai: bool = False) -> JSONResponse:
    """The answer of the edge's own refusal ``name`` (a kind of ``ERRORS`` without an exception)."""
    kind = _BY_NAME[name]
    return JSONResponse(_body(kind.name, kind.status, message, openai), status_code=kind.status, headers=headers)


def web_error_response(status: int, message: str, openai: bool = False) -> JSONResponse:
    """The answer to a request Starlette refused before any handler, by status (404, 405)."""
    name = next((k.name for k in ERRORS if k.exception is None and k.status == status), "HTTPError")
    return JSONResponse(_body(name, status, message, openai), status_code=status)


def internal_error_response(exc: BaseException, debug: bool, openai: bool = False) -> JSONResponse:
    """The answer when the server itself failed (an exception no handler expected)."""
    message = "internal server error" + (f": {type(exc).__name__}: {exc}" if debug else "")
    body = _body("InternalError", 500, message, openai)
    if debug:
        body["error"]["traceback"] = "".join(traceback.format_exception(exc))
    return JSONResponse(body, status_code=500)


def raw_refusal(name: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer of refusal ``name``, closing the connection: for the HTTP protocol,
    which answers before any ASGI request exists."""
    kind = _BY_NAME[name]
    body = orjson.dumps(error_body(kind.name, message))
    head = (
        f"HTTP/1.1 {kind.status} {kind.reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def markdown_table() -> str:
    """``ERRORS`` as the Markdown table in ``docs/http-api.md``."""
    rows = ["| status | type | when |", "|---|---|---|"]
    rows += [f"| {k.status} | `{k.name}` | {k.when} |" for k in ERRORS]
    return "\n".join(rows)

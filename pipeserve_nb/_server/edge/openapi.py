"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Built from the server's own limits, the model's parameter names and the error table
(``errors.ERRORS``), so what it promises is what the protocol, admission and the app enforce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._exceptions import ModelNotFound
from ..core.config import ServerConfig
from .body import WHITESPACE
from .errors import ERRORS, ErrorKind

__all__ = ["openapi_document"]

_NOT_SPACE = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"  # one character strip() keeps
_TEXT = {"type": "string", "minLength": 1, "pattern": _NOT_SPACE, "description": "a text with at least one non-space"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "examples": ["InvalidInput"]},
                "message": {"type": "string"},
                "traceback": {"type": "string", "description": "only when the server runs with debug"},
            },
        }
    },
}


def openapi_document(config: ServerConfig, model_name: str, parameter_names: frozenset[str] | None) -> dict[str, Any]:
    """The API description for a server with these limits and this model."""
    parameters: dict[str, Any] = {"type": "object", "description": "keyword arguments for the model call"}
    if parameter_names is not None:
        parameters["properties"] = {name: {} for name in sorted(parameter_names)}
        parameters["additionalProperties"] = False
    request_json = {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {
                "oneOf": [
                    _TEXT,
                    {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": config.max_inputs_per_request},
                ]
            },
            "parameters": parameters,
        },
    }
    errors = _error_responses(lambda kind: kind.exception not in (None, ModelNotFound), config)
    denied = _error_responses(lambda kind: False, config)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipeserve_nb model server",
            "version": "1",
            "description": f"Serves {model_name}. Bodies up to {config.max_body_bytes} bytes.",
        },
        "paths": {
            "/": {
                "post": {
                    "summary": "Run the model on one text or a list of texts",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": request_json},
                            "text/plain": {"schema": _TEXT},
                        },
                    },
                    "responses": {
                        "200": _json_response(
                            "one output for a single text, a list of outputs (same order) for a list", {}
                        ),
                        **errors,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "200 while the model is loaded and the worker alive",
                    "responses": {
                        "200": _json_response("serving", {"type": "object"}),
                        "503": _json_response("not serving; error says why", {"type": "object"}),
                        **denied,
                    },
                }
            },
            "/stats": {
                "get": {
                    "summary": "queue depth, requests by status, batch sizes, latency percentiles",
                    "responses": {"200": _json_response("the metrics", {"type": "object"}), **denied},
                }
            },
        },
        "components": {"schemas": {"Error": _ERROR}},
    }


def _error_responses(applies: Callable[[ErrorKind], bool], config: ServerConfig) -> dict[str, Any]:
    """The error responses of a route: the kinds ``applies`` picks, and 401 when there is a token."""
    with_token = config.auth_token is not None
    when: dict[str, list[str]] = {}
    for kind in ERRORS:
        if applies(kind) or (with_token and kind.name == "Unauthorized"):
            when.setdefault(str(kind.status), []).append(f"{kind.name}: {kind.when}")
    error = {"$ref": "#/components/schemas/Error"}
    return {status: _json_response("; ".join(texts), error) for status, texts in sorted(when.items())}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}

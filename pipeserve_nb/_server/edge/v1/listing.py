"""``GET /v1/models`` and ``GET /v1/models/{model}``: the models this server holds, in OpenAI's shape."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...._exceptions import RequestFailed
from ...core.engine import Engine
from ...core.models import Models
from ..errors import error_response

__all__ = ["model_list", "model_entry", "started_now"]


def model_list(models: Models, started: int) -> Response:
    """Every model, the default first. Besides OpenAI's fields (which its clients read), pipeserve's own:
    ``chat`` (whether it answers chat and completions), ``task`` (its pipeline task; null: not known) and
    ``parameters`` (the parameter names its native route takes; null: any), which the try-it page reads."""
    return JSONResponse({"object": "list", "data": [_entry(name, e, started) for name, e in models]})


def model_entry(request: Request, models: Models, started: int) -> Response:
    """One model by the name requests route by; 404 ``model_not_found`` for another name."""
    try:
        engine = models.get(request.path_params["model"])
    except RequestFailed as exc:
        return error_response(exc, models.config.debug, openai=True)
    return JSONResponse(_entry(engine.name, engine, started))


def _entry(name: str, engine: Engine, started: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": started,
        "owned_by": "pipeserve_nb",
        "description": engine.model_name,
        "chat": engine.generating is not None,
        "task": engine.model.runner.task if engine.model is not None else None,
        "parameters": sorted(names) if (names := engine.parameter_names) is not None else None,
    }


def started_now() -> int:
    """The ``created`` time of every model entry: when the server started, in Unix seconds."""
    return int(time.time())

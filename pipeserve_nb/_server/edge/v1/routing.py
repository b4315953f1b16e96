"""A ``/v1`` request's body, read within the size limit, and the model it names.

Every OpenAI route reads its JSON object here and routes by its ``model`` field (``Models.get``: the
default model when it is absent; ``ModelNotFound``, a 404 listing the models held, for a name the server
does not hold). The chosen model's name goes into the request's scope, so that ``Counting`` counts the
answer in that model's numbers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ...._exceptions import InvalidInput
from ...core.engine import Engine
from ...core.models import Models
from ..body import parse_json_object, read_body
from ..middleware import MODEL

__all__ = ["routed", "flag"]


async def routed(request: Request, models: Models, example: str) -> tuple[dict[str, Any], Engine]:
    """The request's fields and the engine of the model it names (``example`` shows a body in errors)."""
    config = models.config
    fields = parse_json_object(await read_body(request, config.max_body_bytes), config.max_json_depth, example)
    name = fields.get("model")
    if name is not None and not isinstance(name, str):
        raise InvalidInput(f"model must be a string, got {name!r}", param="model")
    engine = models.get(name)
    request.scope[MODEL] = engine.name
    return fields, engine


def flag(fields: dict[str, Any], name: str) -> bool:
    """A true-or-false field (false when absent or null)."""
    value = fields.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r}", param=name)
    return value

"""``POST /v1/chat/completions``: OpenAI's chat route over a chat model's generations.

The request is OpenAI's (``model``, ``messages``, ``max_tokens`` or ``max_completion_tokens``,
``temperature``, ``top_p``, ``seed``, ``stop``, ``n``, ``stream``, ``stream_options``); ``ChatPrompts``
checks it and applies the model's chat template on a worker thread (never on the event loop), then the
engine admits its generation (``Engine.generate``: the same admission, deadline and bounds as ``POST /``).
The answer, whole or streamed, is ``answers.respond``'s, in the chat's shape.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from ...._exceptions import InvalidInput, RequestFailed
from ...core.models import Models
from ..errors import error_response
from .answers import ChatShape, include_usage, respond
from .routing import flag, routed

__all__ = ["chat_completions"]

EXAMPLE = '{"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}'


async def chat_completions(request: Request, models: Models) -> Response:
    """Answer one chat request."""
    debug = models.config.debug
    try:
        fields, engine = await routed(request, models, EXAMPLE)
        generating = engine.generating
        if generating is None:
            raise InvalidInput(f"{engine.name} is not a chat model: it has no chat completions", param="model")
        stream = flag(fields, "stream")
        usage = include_usage(fields.get("stream_options")) if stream else False
        prompt = await asyncio.to_thread(generating.prompts.from_messages, fields.get("messages"), fields)
        generation = engine.generate(prompt)
    except RequestFailed as exc:
        return error_response(exc, debug, openai=True)
    return await respond(request, [generation], ChatShape(engine.name), stream=stream, usage=usage, debug=debug)

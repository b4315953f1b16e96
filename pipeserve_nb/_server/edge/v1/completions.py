"""``POST /v1/completions``: OpenAI's (legacy) text completions over a chat model's generations.

``prompt`` is a string, or a list of strings answered as one choice each (not streamed: a stream carries one
prompt); each is continued as it is, with no chat template. The other fields are the chat route's (``ChatPrompts``
checks them the same way), plus ``echo`` (the prompt in front of its answer). What this server cannot honour is
a 400 that says so: token ids as the prompt, ``suffix``, ``logprobs``, ``best_of`` other than 1, ``n`` other
than 1. The prompts' generations start together on the engine (the same admission and bounds as ``POST /``);
a request refused part-way cancels those it had started.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from ...._exceptions import InvalidInput, RequestFailed, TooLarge
from ...core.models import Models
from ...core.stream import Generation
from ..errors import error_response
from .answers import TextShape, include_usage, respond
from .routing import flag, routed

__all__ = ["completions"]

EXAMPLE = '{"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 16}'


async def completions(request: Request, models: Models) -> Response:
    """Answer one completions request."""
    debug = models.config.debug
    generations: list[Generation] = []
    try:
        fields, engine = await routed(request, models, EXAMPLE)
        generating = engine.generating
        if generating is None:
            raise InvalidInput(f"{engine.name} is not a text generation model: it has no completions", param="model")
        texts = _prompts(fields.get("prompt"), models.config.max_inputs_per_request)
        stream, echo = flag(fields, "stream"), flag(fields, "echo")
        if stream and len(texts) > 1:
            raise InvalidInput("a streamed answer takes one prompt: send one request per prompt", param="prompt")
        if fields.get("suffix"):
            raise InvalidInput("suffix is not supported by this server", param="suffix")
        if fields.get("best_of") not in (None, 1):
            raise InvalidInput(f"best_of must be 1 (got {fields.get('best_of')!r})", param="best_of")
        usage = include_usage(fields.get("stream_options")) if stream else False
        prompts = [await asyncio.to_thread(generating.prompts.from_text, text, fields) for text in texts]
        for prompt in prompts:
            generations.append(engine.generate(prompt))
    except RequestFailed as exc:
        for generation in generations:
            generation.cancel("client_gone")  # refused part-way: nobody will read those
        return error_response(exc, debug, openai=True)
    shape = TextShape(engine.name)
    prefixes = texts if echo else ()
    return await respond(request, generations, shape, stream=stream, usage=usage, prefixes=prefixes, debug=debug)


def _prompts(prompt: object, most: int) -> list[str]:
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise InvalidInput(
            "prompt must be a non-empty string or a non-empty list of them (token ids are not taken)", param="prompt"
        )
    if len(texts) > most:
        raise TooLarge(f"{len(texts)} prompts, over max_inputs_per_request={most}", param="prompt")
    return texts

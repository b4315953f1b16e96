"""``POST /`` on a model served one token at a time: each input a generation of the step loop.

The native route keeps the text-generation pipeline's shapes: the inputs are plain prompts (continued as
they are, no chat template), the parameters the pipeline's (``parameters``), and each answer
``[{"generated_text": ...}]`` (with its prompt in front unless ``return_full_text`` is false). The
generations join the same step loop as the chat route's, so a whole answer and a stream share model steps,
admission, deadlines and bounds; nothing runs the model beside the loop.

A whole answer is whole or an error: a generation that ends for the server's reason (its deadline, the
server stopping, the model failing), before or after its first token, answers that status (504, 503, 500).
A client that leaves cancels every generation of its request within one model step.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._exceptions import RequestFailed
from ..._models.generation.parameters import full_text, openai_fields
from ..core.engine import Engine
from ..core.stream import Generation
from .body import ParsedRequest
from .disconnect import unless_disconnected
from .errors import error_response, refusal

__all__ = ["generated_texts"]


async def generated_texts(request: Request, engine: Engine, parsed: ParsedRequest) -> Response:
    """Answer a parsed ``POST /`` request with one generation per input."""
    debug = engine.config.debug
    generations: list[Generation] = []
    try:
        generating = engine.generating
        assert generating is not None
        fields = openai_fields(parsed.parameters)
        full = full_text(parsed.parameters)
        prompts = [
            await asyncio.to_thread(generating.prompts.from_text, text, fields, "max_new_tokens")
            for text in parsed.inputs
        ]
        for prompt in prompts:
            generations.append(engine.generate(prompt))
        finished = await unless_disconnected(asyncio.gather(*(g.result() for g in generations)), generations, request)
        if finished is None:
            return refusal("ClientClosed", "the client went away before its answer")
        for end in finished:
            failure = end.failure()
            if failure is not None:
                raise failure
    except RequestFailed as exc:
        for generation in generations:
            generation.cancel("client_gone")  # the answer is an error: the others' text has nobody to read it
        return error_response(exc, debug)
    outputs = [
        [{"generated_text": (text if full else "") + end.text}]
        for text, end in zip(parsed.inputs, finished, strict=True)
    ]
    return JSONResponse(outputs[0] if parsed.single else outputs)

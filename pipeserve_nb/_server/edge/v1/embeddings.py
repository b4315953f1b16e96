"""``POST /v1/embeddings``: OpenAI's embeddings over a model served in whole batches.

``input`` is a string or a non-empty list of strings (token ids are not taken; an empty string is refused,
as OpenAI refuses it); the texts are one request of the engine, so they are prepared off the event loop,
admitted, batched with other requests and bounded exactly as a ``POST /`` with the same texts.
``encoding_format`` is ``float`` (lists of numbers) or ``base64`` (each vector's little-endian float32
bytes, as the ``openai`` client decodes them). ``dimensions`` is taken only where it is valid for the
model: pipeserve does not shorten vectors (none of the models it bundles is trained to be cut), so it must
equal the model's own size. ``usage`` counts the tokens the model read (characters for a model without a
tokenizer). A model whose output per text is not one vector (a classifier, a token-level feature
extractor) gets a 400 that says what it gives.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ...._exceptions import InvalidInput, RequestFailed, TooLarge
from ...core.models import Models
from ..disconnect import unless_disconnected
from ..errors import error_response, refusal
from .routing import routed

__all__ = ["embeddings"]

EXAMPLE = '{"model": "minilm", "input": ["first text", "second text"]}'
FORMATS = ("float", "base64")


async def embeddings(request: Request, models: Models) -> Response:
    """Answer one embeddings request."""
    debug = models.config.debug
    try:
        fields, engine = await routed(request, models, EXAMPLE)
        if engine.generating is not None:
            raise InvalidInput(f"{engine.name} is a chat model: it makes no embeddings", param="model")
        texts = _texts(fields.get("input"), models.config.max_inputs_per_request)
        encoding = fields.get("encoding_format") or "float"
        if encoding not in FORMATS:
            raise InvalidInput(f"encoding_format must be float or base64, got {encoding!r}", param="encoding_format")
        dimensions = fields.get("dimensions")
        if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
            raise InvalidInput(f"dimensions must be an integer, got {dimensions!r}", param="dimensions")
        result = await unless_disconnected(engine.submit(texts, {}), (), request)
        if result is None:  # nobody is left to read it; ``Counting`` counts it
            return refusal("ClientClosed", "the client went away before its answer")
        vectors = [_vector(engine.name, output) for output in result.outputs]
        size = len(vectors[0])
        if dimensions is not None and dimensions != size:
            raise InvalidInput(
                f"{engine.name} makes vectors of {size} dimensions and cannot shorten them: leave dimensions out "
                f"or send {size}",
                param="dimensions",
            )
    except RequestFailed as exc:
        return error_response(exc, debug, openai=True)
    data = [
        {"object": "embedding", "index": i, "embedding": _base64(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}
    document = {"object": "list", "data": data, "model": engine.name, "usage": usage}
    return Response(orjson.dumps(document), media_type="application/json")


def _texts(given: Any, most: int) -> list[str]:
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInput(
            "input must be a string or a non-empty list of strings (token ids are not taken)", param="input"
        )
    empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if empty is not None:
        raise InvalidInput(f"input[{empty}] is empty: every text needs some content", param="input")
    if len(texts) > most:
        raise TooLarge(f"{len(texts)} texts, over max_inputs_per_request={most}", param="input")
    return texts


def _vector(name: str, output: Any) -> list[float]:
    numbers = isinstance(output, list) and output and all(type(x) in (float, int) for x in output)
    if not numbers:
        shape = type(output).__name__ + (
            f" of {type(output[0]).__name__}" if isinstance(output, list) and output else ""
        )
        raise InvalidInput(
            f"{name} does not give one vector per text (it gives a {shape}): serve a sentence embedder for embeddings",
            param="model",
        )
    return output  # type: ignore[no-any-return]


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

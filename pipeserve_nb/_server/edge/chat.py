"""``POST /v1/chat/completions``: OpenAI's chat route over the engine's generations.

The request is OpenAI's (``messages``, ``max_tokens`` or ``max_completion_tokens``, ``temperature``,
``top_p``, ``seed``, ``stop``, ``n``, ``stream``, ``stream_options``); ``ChatPrompts`` checks it and
applies the model's chat template on a worker thread (never on the event loop). The answer:

- ``stream: false``: one ``chat.completion`` with the whole message, its ``finish_reason`` and ``usage``;
- ``stream: true``: Server-Sent Events, one ``chat.completion.chunk`` per piece of text as it is written
  (the first delta carries the role), a last chunk with the ``finish_reason``, with
  ``stream_options.include_usage`` one more chunk with ``choices: []`` and the ``usage``, then
  ``data: [DONE]``.

Nothing is sent before the first token: a generation that ends before it (its deadline, the server
stopping, the model failing) is answered with its status (504, 503, 500) from the error table, as any
request. A stream that ends for a reason of the server's after its first token (``expired``,
``stopping``, ``failed``) sends that reason as the ``finish_reason``, then an error event
(``data: {"error": {...}}``, as OpenAI sends one mid-stream), then ``[DONE]``. A client that leaves,
before or during the answer, ends its generation within one model step.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..._exceptions import InvalidInput, RequestFailed
from ..._wire import error_body
from ..core.engine import Engine
from ..core.stream import Finished, Generation, Piece
from .body import parse_json_object
from .disconnect import unless_disconnected
from .errors import error_response, refusal

__all__ = ["chat_completions"]

MODEL_ENDS = {"stop": "stop", "length": "length"}
"""The reasons the model ended an answer, as OpenAI names them; any other reason is the server's."""


async def chat_completions(request: Request, engine: Engine, body: bytes) -> Response:
    """Answer one chat request (``body`` already read within the size limit)."""
    config = engine.config
    try:
        fields = parse_json_object(body, config.max_json_depth, '{"messages": [{"role": "user", "content": "Hi"}]}')
        generating = engine.generating
        if generating is None:
            raise InvalidInput(f"{engine.model_name} is not a chat model: it has no /v1/chat/completions")
        stream = fields.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidInput(f"stream must be true or false, got {stream!r}")
        usage = _include_usage(fields.get("stream_options"))
        prompt = await asyncio.to_thread(generating.prompts.from_messages, fields.get("messages"), fields)
        generation = engine.generate(prompt)
    except RequestFailed as exc:
        return error_response(exc, config.debug)
    completion = _Completion(str(fields.get("model") or engine.model_name))
    pieces = generation.pieces()
    try:
        if not stream:
            texts = await unless_disconnected(_collect(pieces), [generation], request)
            if texts is None:  # nobody is left to read it; ``Counting`` counts the answer never sent
                return refusal("ClientClosed", "the client went away before its answer")
            assert generation.finished is not None
            return JSONResponse(completion.whole("".join(texts), generation.finished))
        first = await unless_disconnected(_first(pieces, generation), [generation], request)
    except RequestFailed as exc:  # it ended before its first token: its own status
        return error_response(exc, config.debug)
    if first is None:
        return refusal("ClientClosed", "the client went away before its answer")
    return StreamingResponse(
        _events(completion, first, pieces, generation, usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _collect(pieces: AsyncIterator[Piece]) -> list[str]:
    return [piece.text async for piece in pieces]


async def _first(pieces: AsyncIterator[Piece], generation: Generation) -> Piece | Finished:
    """The first piece, or the end for an answer without text."""
    piece = await anext(pieces, None)
    if piece is None:
        assert generation.finished is not None
        return generation.finished
    return piece


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidInput('stream_options must be an object like {"include_usage": true}')
    return bool(options.get("include_usage", False))


async def _events(
    completion: _Completion, first: Piece | Finished, pieces: AsyncIterator[Piece], generation: Generation, usage: bool
) -> AsyncIterator[bytes]:
    """The Server-Sent Events of one streamed answer; a client that leaves cancels the generation."""
    try:
        yield completion.chunk({"role": "assistant", "content": ""})
        if isinstance(first, Piece):
            yield completion.chunk({"content": first.text})
            async for piece in pieces:
                yield completion.chunk({"content": piece.text})
        finished = generation.finished
        assert finished is not None
        yield completion.chunk({}, MODEL_ENDS.get(finished.reason, finished.reason))
        if finished.reason not in MODEL_ENDS:
            ended = error_body("GenerationEnded", _why(finished.reason))
            ended["error"]["code"] = finished.reason
            yield _sse(ended)
        if usage:
            yield _sse(completion.document("chat.completion.chunk", [], _usage(finished)))
        yield b"data: [DONE]\n\n"
    finally:  # the client left (Starlette cancels this iterator), or the answer is complete
        generation.cancel("client_gone")


def _why(reason: str) -> str:
    return {
        "expired": "the request's deadline passed during the answer",
        "stopping": "the server stopped during the answer",
        "failed": "the model failed during the answer",
    }.get(reason, reason)


def _usage(finished: Finished) -> dict[str, int]:
    total = finished.prompt_tokens + finished.completion_tokens
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": total,
    }


def _sse(document: Any) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"


class _Completion:
    """The id, time and model name every chunk of one answer shares."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def document(self, kind: str, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _sse(
            self.document("chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": finish_reason}], None)
        )

    def whole(self, text: str, finished: Finished) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        reason = MODEL_ENDS.get(finished.reason, finished.reason)
        return self.document(
            "chat.completion", [{"index": 0, "message": message, "finish_reason": reason}], _usage(finished)
        )

"""A generated answer in OpenAI's shapes, whole or streamed: what the chat and completions routes share.

A route checks its request, starts its generations on the engine (one per prompt) and hands them here with
the ``Shape`` of its answers (``ChatShape``: messages and deltas; ``TextShape``: text). Then:

- not streamed: every generation is awaited (a client that leaves cancels them), one document with a
  choice per generation, its ``finish_reason`` and the ``usage`` of them all;
- streamed (one generation): nothing is sent before the first token, so a generation that ends before it
  (its deadline, the server stopping, the model failing) is answered with its status (504, 503, 500), as
  any request. Then Server-Sent Events: the shape's opening chunk (the chat's first delta carries the role),
  a chunk per piece of text as it is written (``usage: null``), a last choice chunk with the
  ``finish_reason``, with ``stream_options.include_usage`` one more chunk with ``choices: []`` and the usage,
  then ``data: [DONE]``. A stream that ends for a reason of the server's after its first token
  (``expired``, ``stopping``, ``failed``) sends that reason as the ``finish_reason``, then an error event in
  OpenAI's shape (as OpenAI sends one mid-stream), then ``[DONE]``. A client that leaves ends its generation
  within one model step.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ...._exceptions import InvalidInput, RequestFailed
from ...core.stream import Finished, Generation, Piece
from ..disconnect import unless_disconnected
from ..errors import error_response, openai_error, refusal

__all__ = ["MODEL_ENDS", "Shape", "ChatShape", "TextShape", "include_usage", "respond"]

MODEL_ENDS = {"stop": "stop", "length": "length"}
"""The reasons the model ended an answer, as OpenAI names them; any other reason is the server's."""


class Shape:
    """The documents of one answer: the id, time and model name they share, and how a choice is written."""

    prefix = "cmpl-"
    whole_kind = "text_completion"
    chunk_kind = "text_completion"

    def __init__(self, model: str) -> None:
        self.id = self.prefix + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        """A whole answer's choice."""
        return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}

    def piece(self, text: str | None, reason: str | None = None) -> dict[str, Any]:
        """A streamed chunk's choice: a piece of text, or the end (``reason``)."""
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}

    def opening(self) -> list[dict[str, Any]]:
        """The choices of the chunks sent before the first piece."""
        return []

    def document(self, kind: str, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }

    def chunk(self, choice: dict[str, Any]) -> bytes:
        return _sse(self.document(self.chunk_kind, [choice], None))


class TextShape(Shape):
    """``/v1/completions``: a choice has ``text``."""


class ChatShape(Shape):
    """``/v1/chat/completions``: a choice has a ``message``, a chunk a ``delta`` (the first one the role)."""

    prefix = "chatcmpl-"
    whole_kind = "chat.completion"
    chunk_kind = "chat.completion.chunk"

    def choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": reason}

    def piece(self, text: str | None, reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": reason}

    def opening(self) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]


def include_usage(options: Any) -> bool:
    """``stream_options.include_usage``, checked."""
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidInput('stream_options must be an object like {"include_usage": true}', param="stream_options")
    return bool(options.get("include_usage", False))


async def respond(
    request: Request,
    generations: Sequence[Generation],
    shape: Shape,
    *,
    stream: bool,
    usage: bool = False,
    prefixes: Sequence[str] = (),
    debug: bool = False,
) -> Response:
    """The answer to started ``generations`` (one when ``stream``); ``prefixes`` go before each text (echo)."""
    try:
        if not stream:
            ended = await unless_disconnected(_whole(generations), generations, request)
            if ended is None:  # nobody is left to read it; ``Counting`` counts the answer never sent
                return refusal("ClientClosed", "the client went away before its answer")
            return JSONResponse(_document(shape, ended, prefixes))
        (generation,) = generations
        pieces = generation.pieces()
        first = await unless_disconnected(_first(pieces, generation), generations, request)
    except RequestFailed as exc:  # it ended before its first token (or a whole answer did not end well)
        for generation in generations:
            generation.cancel("client_gone")  # the answer is an error: the others' text has nobody to read it
        return error_response(exc, debug, openai=True)
    if first is None:
        return refusal("ClientClosed", "the client went away before its answer")
    prefix = prefixes[0] if prefixes else ""
    return StreamingResponse(
        _events(shape, prefix, first, pieces, generation, usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _whole(generations: Sequence[Generation]) -> list[tuple[str, Finished]]:
    """Each generation's text and end; a generation the server ended raises its error."""
    ended = []
    for generation in generations:
        texts = [piece.text async for piece in generation.pieces()]
        finished = generation.finished
        assert finished is not None
        failure = finished.failure()
        if failure is not None:
            raise failure
        ended.append(("".join(texts), finished))
    return ended


def _document(shape: Shape, ended: list[tuple[str, Finished]], prefixes: Sequence[str]) -> dict[str, Any]:
    choices = [
        shape.choice(i, (prefixes[i] if prefixes else "") + text, MODEL_ENDS[finished.reason])
        for i, (text, finished) in enumerate(ended)
    ]
    return shape.document(shape.whole_kind, choices, _usage([finished for _, finished in ended]))


async def _first(pieces: AsyncIterator[Piece], generation: Generation) -> Piece | Finished:
    """The first piece, or the end for an answer without text; raises the error of one ended by the server
    before its first token."""
    piece = await anext(pieces, None)
    if piece is None:
        assert generation.finished is not None
        return generation.finished
    return piece


async def _events(
    shape: Shape,
    prefix: str,
    first: Piece | Finished,
    pieces: AsyncIterator[Piece],
    generation: Generation,
    usage: bool,
) -> AsyncIterator[bytes]:
    """The Server-Sent Events of one streamed answer; a client that leaves cancels the generation."""
    try:
        for choice in shape.opening():
            yield shape.chunk(choice)
        if prefix:
            yield shape.chunk(shape.piece(prefix))
        if isinstance(first, Piece):
            yield shape.chunk(shape.piece(first.text))
            async for piece in pieces:
                yield shape.chunk(shape.piece(piece.text))
        finished = generation.finished
        assert finished is not None
        yield shape.chunk(shape.piece(None, MODEL_ENDS.get(finished.reason, finished.reason)))
        if finished.reason not in MODEL_ENDS:
            ended = openai_error("GenerationEnded", 500, str(finished.failure()))
            ended["error"]["code"] = finished.reason
            yield _sse(ended)
        if usage:
            yield _sse(shape.document(shape.chunk_kind, [], _usage([finished])))
        yield b"data: [DONE]\n\n"
    finally:  # the client left (Starlette cancels this iterator), or the answer is complete
        generation.cancel("client_gone")


def _usage(ended: Sequence[Finished]) -> dict[str, int]:
    prompt = sum(f.prompt_tokens for f in ended)
    completion = sum(f.completion_tokens for f in ended)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(document: Any) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"

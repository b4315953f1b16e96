"""The request body format of ``POST /``: parsing and validation, no I/O.

Two forms are accepted:

- raw text (no Content-Type, ``text/*``, or ``application/x-www-form-urlencoded`` as
  ``curl -d`` sends): the UTF-8 body is one input; the answer is that input's output.
- JSON (``application/json``): ``{"inputs": "text"}`` answers one output,
  ``{"inputs": ["a", "b"]}`` a list of outputs in the same order; an optional
  ``"parameters": {...}`` object is passed to the model as keyword arguments.

JSON is parsed with orjson (strict RFC 8259: no NaN, no lone surrogates, no byte order
mark; integers past 64 bits become floats, numbers past a double's range are refused), and
no value may nest deeper than ``max_depth`` (objects and lists; the body itself is level 1),
so no document can exhaust a stack.

A body that breaks these rules raises ``InvalidInput``, ``TooLarge`` or
``UnsupportedMediaType``; the app answers them from the error table (``errors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from ..._exceptions import InvalidInput, TooLarge, UnsupportedMediaType

__all__ = ["WHITESPACE", "ParsedRequest", "parse_body", "parse_json_object", "read_body"]

WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What ``str.strip()`` removes (every character ``str.isspace()`` calls space): a text made
only of these is empty. The OpenAPI description spells the rule out with this set, since
JSON Schema's ``\\S`` (ECMAScript's) counts U+0085 and U+001C to U+001F as text."""

_RAW_TYPES = ("", "application/x-www-form-urlencoded")
_FIELDS = ("inputs", "parameters")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid request: its inputs, the model parameters, and the answer's shape."""

    inputs: list[str]
    parameters: dict[str, Any]
    single: bool


def parse_body(content_type: str | None, body: bytes, max_inputs: int, max_depth: int = 32) -> ParsedRequest:
    """Parse and validate a ``POST /`` body; raise ``InvalidInput``, ``TooLarge`` or ``UnsupportedMediaType``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return _parse_json(body, max_inputs, max_depth)
    if media_type in _RAW_TYPES or media_type.startswith("text/"):
        return ParsedRequest([_text(_decode(body), "the body")], {}, single=True)
    raise UnsupportedMediaType(
        f"Content-Type {media_type!r} is not supported; send raw text (text/plain) "
        'or JSON (application/json) like {"inputs": "some text"}'
    )


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not valid UTF-8 (bad byte at offset {exc.start})") from None


def _text(value: str, where: str) -> str:
    if not value.strip():
        raise InvalidInput(f"{where} is empty; send the text to run the model on")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        raise InvalidInput(f"{where} has an unpaired surrogate at offset {exc.start}; it is not text") from None
    return value


def parse_json_object(body: bytes, max_depth: int, example: str) -> dict[str, Any]:
    """A JSON body that must be an object, by the same rules as ``POST /`` (``example`` shows one in errors)."""
    text = _decode(body)
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if exc.msg == "depth limit exceeded":
            raise InvalidInput(_too_deep(max_depth)) from None
        raise InvalidInput(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the JSON body must be an object like {example}, got {_kind(doc)}")
    if not _within_depth(doc, max_depth):
        raise InvalidInput(_too_deep(max_depth))
    return doc


def _parse_json(body: bytes, max_inputs: int, max_depth: int) -> ParsedRequest:
    doc = parse_json_object(body, max_depth, '{"inputs": "text"}')
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown}; expected 'inputs' and optional 'parameters'")
    if "inputs" not in doc:
        raise InvalidInput('missing "inputs": send {"inputs": "text"} or {"inputs": ["a", "b"]}')
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f'"parameters" must be an object, got {_kind(parameters)}')
    inputs = doc["inputs"]
    if isinstance(inputs, str):
        return ParsedRequest([_text(inputs, '"inputs"')], parameters, single=True)
    if not isinstance(inputs, list):
        raise InvalidInput(f'"inputs" must be a string or a list of strings, got {_kind(inputs)}')
    if not inputs:
        raise InvalidInput('"inputs" is an empty list; send at least one text')
    if len(inputs) > max_inputs:
        raise TooLarge(f'"inputs" has {len(inputs)} texts; at most {max_inputs} are allowed per request')
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise InvalidInput(f'"inputs"[{i}] must be a string, got {_kind(item)}')
        _text(item, f'"inputs"[{i}]')
    return ParsedRequest(list(inputs), parameters, single=False)


def _within_depth(value: Any, levels: int) -> bool:
    """Whether ``value`` nests at most ``levels`` levels of objects and lists (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > levels:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def _too_deep(max_depth: int) -> str:
    return f"the JSON body nests deeper than max_json_depth={max_depth} levels of objects and lists"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with ``TooLarge`` as soon as it is known to pass ``limit`` bytes."""
    refusal = f"the body is over the limit of {limit} bytes; send less per request"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(refusal)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(refusal)
        chunks.append(chunk)
    return b"".join(chunks)

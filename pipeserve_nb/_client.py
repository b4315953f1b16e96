"""Client helpers: send inputs to a server, get outputs back or a ``ServerError``.

``query`` is synchronous and safe to call from a notebook cell (the server runs on its
own loop in its own thread); ``aquery`` is its ``await``-able twin. ``stream`` and ``astream``
ask a chat model (``/v1/chat/completions``, streamed) and yield the answer's text as it is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ._exceptions import ServerError
from ._wire import error_of

if TYPE_CHECKING:
    import httpx  # imported where a client is made: a load generator's process never needs it

__all__ = ["query", "aquery", "stream", "astream", "auth_headers", "Inputs", "Prompt", "Queries"]

Inputs = str | list[str]
Prompt = str | list[dict[str, Any]]
"""A chat prompt: one user message as a string, or OpenAI's list of messages."""
CHAT_PATH = "/v1/chat/completions"
DEFAULT_TIMEOUT_S = 120.0


def query(
    url: str,
    inputs: Inputs,
    *,
    parameters: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    token: str | None = None,
    client: httpx.Client | None = None,
) -> Any:
    """POST ``inputs`` to the server at ``url`` and return its JSON answer.

    A string gets one output back, a list of strings a list of outputs. ``token`` is sent
    as ``Authorization: Bearer <token>`` (for a server started with an ``auth_token``).

    Example:
        >>> len(query(server.url, "hello world"))  # doctest: +SKIP
        384
    """
    import httpx

    payload, headers = _payload(inputs, parameters), auth_headers(token)
    if client is None:
        with httpx.Client(trust_env=False) as own:
            return _answer(own.post(url, json=payload, headers=headers, timeout=timeout_s))
    return _answer(client.post(url, json=payload, headers=headers, timeout=timeout_s))


async def aquery(
    url: str,
    inputs: Inputs,
    *,
    parameters: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    token: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> Any:
    """Async ``query``: ``await aquery(url, "hello")`` in a notebook cell or coroutine."""
    import httpx

    payload, headers = _payload(inputs, parameters), auth_headers(token)
    if client is None:
        async with httpx.AsyncClient(trust_env=False) as own:
            return _answer(await own.post(url, json=payload, headers=headers, timeout=timeout_s))
    return _answer(await client.post(url, json=payload, headers=headers, timeout=timeout_s))


def stream(
    url: str,
    prompt: Prompt,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    token: str | None = None,
    client: httpx.Client | None = None,
    **fields: Any,
) -> Iterator[str]:
    """Ask the chat model at ``url`` and yield its answer's text as it is written.

    ``fields`` are OpenAI's chat fields (``max_tokens``, ``temperature``, ``stop``, ...). An error
    before the answer raises ``ServerError`` with its status; one during it (the server stopped) too.

    Example (against a chat model's server, e.g. ``serve(model="smollm2")``)::

        for text in stream(chat.url, "What is the capital of France?"):
            print(text, end="")
    """
    import httpx

    own = client is None
    http = httpx.Client(trust_env=False) if client is None else client
    try:
        body, headers = _chat_body(prompt, fields), auth_headers(token)
        with http.stream("POST", url + CHAT_PATH, json=body, headers=headers, timeout=timeout_s) as response:
            if not response.is_success:
                response.read()
                _answer(response)
            yield from _texts(response.iter_lines())
    finally:
        if own:
            http.close()


async def astream(
    url: str, prompt: Prompt, *, timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None, **fields: Any
) -> AsyncIterator[str]:
    """Async ``stream``: ``async for text in astream(server.url, "Hi"): ...``."""
    import httpx

    body, headers = _chat_body(prompt, fields), auth_headers(token)
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        http.stream("POST", url + CHAT_PATH, json=body, headers=headers, timeout=timeout_s) as response,
    ):
        if not response.is_success:
            await response.aread()
            _answer(response)
        async for line in response.aiter_lines():
            for text in _texts([line]):
                yield text


def _chat_body(prompt: Prompt, fields: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return {"messages": messages, **fields, "stream": True}


def _texts(lines: Iterable[str]) -> Iterator[str]:
    """The text of each chunk of a streamed chat answer (Server-Sent Events); an error event raises."""
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = orjson.loads(line[len("data: ") :])
        error = error_of(chunk)
        if error is not None:
            raise ServerError(200, *error)
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


def auth_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token`` (none for None)."""
    return {"authorization": f"Bearer {token}"} if token is not None else {}


def _payload(inputs: Inputs, parameters: dict[str, Any] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"inputs": inputs}
    if parameters:
        payload["parameters"] = parameters
    return payload


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = error_of(response.json())
    except ValueError:
        error = None
    kind, message = error if error is not None else ("HTTPError", response.text[:500])
    raise ServerError(response.status_code, kind, message)


class Queries:
    """``query``, ``aquery`` and ``health`` as methods of a server handle, which sets ``url``,
    ``_client`` (an ``httpx.Client`` carrying the token) and ``_token``."""

    _client: httpx.Client
    _token: str | None

    @property
    def url(self) -> str:
        """The server's base URL (the handle's own)."""
        raise NotImplementedError

    def query(
        self,
        inputs: Inputs,
        *,
        parameters: dict[str, Any] | None = None,
        model: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Run ``inputs`` through the server and return the outputs (sync, safe in a cell); ``model``: which of
        a server's models (``server.models``; None: the first)."""
        return query(self._path(model), inputs, parameters=parameters, timeout_s=timeout_s, client=self._client)

    async def aquery(
        self,
        inputs: Inputs,
        *,
        parameters: dict[str, Any] | None = None,
        model: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Async ``query``: ``await server.aquery("text")``."""
        return await aquery(self._path(model), inputs, parameters=parameters, timeout_s=timeout_s, token=self._token)

    def _path(self, model: str | None) -> str:
        """The URL that runs ``model``: ``POST /`` for the first, ``POST /models/{name}`` for any."""
        return self.url if model is None else f"{self.url}/models/{quote(model, safe='')}"

    def stream(self, prompt: Prompt, *, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any) -> Iterator[str]:
        """A chat model's answer to ``prompt``, piece by piece as it is written (sync, safe in a cell)::

        for text in server.stream("What is the capital of France?", max_tokens=32):
            print(text, end="")
        """
        return stream(self.url, prompt, timeout_s=timeout_s, client=self._client, **fields)

    def astream(self, prompt: Prompt, *, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any) -> AsyncIterator[str]:
        """Async ``stream``: ``async for text in server.astream("Hi"): ...``."""
        return astream(self.url, prompt, timeout_s=timeout_s, token=self._token, **fields)

    def health(self) -> dict[str, Any]:
        """The ``/health`` answer as a dict (``status`` is ``"ok"`` when serving; behind Ray's
        proxy, the answer of whichever replica it routed to)."""
        result: dict[str, Any] = self._client.get(f"{self.url}/health", timeout=10.0).json()
        return result

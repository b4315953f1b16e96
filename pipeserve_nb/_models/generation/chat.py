"""A chat request checked and turned into what the step loop runs: prompt token ids and ``Sampling``.

``ChatPrompts`` takes OpenAI's chat request fields (``messages``, ``max_tokens`` or
``max_completion_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, ``n``) or a plain prompt,
applies the model's chat template, and refuses what the server cannot honour with ``InvalidInput``
(a 400 that says what to change): malformed or empty messages, a role the template does not know,
content that is not text, ``n`` other than 1, a token budget over the server's cap, and a prompt whose
tokens plus the budget pass the model's context. It runs off the inference thread, so it encodes with a
private copy of the tokenizer's backend (``tokens.private_backend``), never with the one the model's
thread uses. Fields that do not change the answer (``user``,
``stream_options``, ...) are the face's business and are ignored here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..._exceptions import InvalidInput
from ..tokens import private_backend
from .sampling import Sampling

__all__ = ["ChatModel", "ChatPrompts", "PromptRequest", "ROLES", "chat_model_of"]

ROLES = ("system", "developer", "user", "assistant")
"""The roles a message may have (``developer`` is OpenAI's newer name for ``system``, and is sent as one)."""

_REFUSED = {
    "tools": "tools (function calling) are not supported by this server",
    "tool_choice": "tools (function calling) are not supported by this server",
    "functions": "functions (function calling) are not supported by this server",
    "logprobs": "logprobs are not supported by this server",
}


@dataclass(frozen=True, slots=True)
class ChatModel:
    """A causal language model that can be served one step at a time: the model, its tokenizer (with a chat
    template), and its context (the most tokens of prompt and answer together)."""

    model: Any
    tokenizer: Any
    context_tokens: int


def chat_model_of(pipe: Any) -> ChatModel | None:
    """The pipeline's model as a ``ChatModel`` when it is a text-generation pipeline whose tokenizer has a chat
    template and whose model says its context; else None (it is served as whole calls only)."""
    tokenizer = getattr(pipe, "tokenizer", None)
    context = getattr(getattr(getattr(pipe, "model", None), "config", None), "max_position_embeddings", None)
    if getattr(pipe, "task", None) != "text-generation" or tokenizer is None or not isinstance(context, int):
        return None
    if not getattr(tokenizer, "chat_template", None):
        return None
    return ChatModel(pipe.model, tokenizer, context)


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """What the step loop runs for one request: the prompt's token ids and how to generate."""

    ids: list[int]
    sampling: Sampling


class ChatPrompts:
    """Turns chat requests into ``PromptRequest`` for one model.

    Parameters:
        tokenizer: the model's tokenizer, with its chat template.
        context_tokens: the most tokens the model attends to (prompt and answer together).
        max_new_tokens: the most tokens a request may ask for (the server's cap), also the default.
    """

    def __init__(self, tokenizer: Any, context_tokens: int, max_new_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.max_new_tokens = max_new_tokens
        self._encoder = private_backend(tokenizer)  # safe beside the inference thread's use of the tokenizer

    def from_messages(self, messages: Any, fields: Mapping[str, Any]) -> PromptRequest:
        """A chat request: ``messages`` through the chat template, the other ``fields`` as OpenAI names them."""
        turns = [_turn(i, m) for i, m in enumerate(_message_list(messages))]
        text = self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        return self._request(self._encode(str(text), special=False), fields)

    def from_text(self, prompt: Any, fields: Mapping[str, Any], budget: str = "max_tokens") -> PromptRequest:
        """A plain prompt, continued as it is (no chat template); ``budget`` is the caller's name for the
        token budget, used in the errors (``max_new_tokens`` on ``POST /``)."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInput("prompt must be a non-empty string", param="prompt")
        return self._request(self._encode(prompt, special=True), fields, budget)

    def _encode(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text`` (the template writes its special tokens itself: ``special=False`` then)."""
        if self._encoder is not None:
            return list(self._encoder.encode(text, add_special_tokens=special).ids)
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _request(self, ids: list[int], fields: Mapping[str, Any], budget: str = "max_tokens") -> PromptRequest:
        for name, why in _REFUSED.items():
            if fields.get(name) not in (None, False, [], "none"):
                raise InvalidInput(f"{name}: {why}", param=name)
        n = fields.get("n", 1)
        if n != 1 or isinstance(n, bool):
            raise InvalidInput(f"n must be 1: this server writes one answer per request (got {n!r})", param="n")
        room = self.context_tokens - len(ids)
        asked = _budget(fields)
        if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
            raise InvalidInput(f"{budget} must be an integer >= 1, got {asked!r}", param=budget)
        if asked is not None and asked > self.max_new_tokens:
            raise InvalidInput(
                f"{budget} is {asked}, over this server's cap of {self.max_new_tokens} tokens", param=budget
            )
        if room < 1:
            raise InvalidInput(
                f"the prompt has {len(ids)} tokens, which leaves no room in the model's context of "
                f"{self.context_tokens} tokens for an answer",
                param="messages",
            )
        if asked is not None and len(ids) + asked > self.context_tokens:
            raise InvalidInput(
                f"the prompt has {len(ids)} tokens and {budget} is {asked}: together over the model's context "
                f"of {self.context_tokens} tokens; ask for at most {room} or send less",
                param=budget,
            )
        sampling = Sampling(
            max_new_tokens=min(self.max_new_tokens, room) if asked is None else asked,
            temperature=_given(fields, "temperature", 1.0),
            top_p=_given(fields, "top_p", 1.0),
            seed=fields.get("seed"),
            stop=_stops(fields.get("stop")),
        )
        return PromptRequest(ids, sampling)


def _given(fields: Mapping[str, Any], name: str, default: float) -> Any:
    """The field's value, or OpenAI's default when it is absent or null."""
    value = fields.get(name)
    return default if value is None else value


def _budget(fields: Mapping[str, Any]) -> Any:
    for name in ("max_completion_tokens", "max_tokens"):
        if fields.get(name) is not None:
            return fields[name]
    return None


def _message_list(messages: Any) -> Sequence[Any]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list of {role, content} objects", param="messages")
    return messages


def _turn(index: int, message: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InvalidInput(f"{where} must be an object with a role and a content", param=where)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidInput(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", param=f"{where}.role")
    return {"role": "system" if role == "developer" else role, "content": _text(where, message.get("content"))}


def _text(where: str, content: Any) -> str:
    """A message's text: a string, or OpenAI's list of content parts of type text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidInput(f"{where}.content: only text parts are supported ({{'type': 'text', 'text': ...}})")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidInput(f"{where}.content must be a string or a list of text parts")


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise InvalidInput("stop must be a string or a list of at most 4 strings", param="stop")

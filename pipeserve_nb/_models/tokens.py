"""What the server learns from a model before it runs it: token counts, token limits, parameter names."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["token_counter", "max_tokens", "keyword_names", "private_backend", "card_seq_length"]


def token_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """A function that counts each text's tokens (special tokens included, nothing truncated) with
    ``tokenizer``, safely beside the pipeline's own use of it on another thread."""
    encoder = private_backend(tokenizer)
    if encoder is not None:

        def count(texts: list[str]) -> list[int]:
            return [len(e.ids) for e in encoder.encode_batch(texts, add_special_tokens=True)]

        return count

    def count_slow(texts: list[str]) -> list[int]:  # a slow tokenizer keeps no call state
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    return count_slow


def max_tokens(tokenizer: Any, model: Any, seq_length: int | None = None) -> int | None:
    """The smallest of the limits the tokenizer, the model's position table and its card state."""
    limits = [seq_length, getattr(getattr(model, "config", None), "max_position_embeddings", None)]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and tokenizer_limit < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(tokenizer_limit)
    known = [n for n in limits if isinstance(n, int) and n > 0]
    return min(known) if known else None


def keyword_names(fn: Callable[..., Any], *, skip_first: bool = False) -> frozenset[str] | None:
    """The keyword parameters ``fn`` takes (after its first, the inputs, if ``skip_first``);
    None if it takes ``**kwargs`` or cannot be inspected."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = set()
    for i, p in enumerate(signature.parameters.values()):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        positional = p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        if p.kind is inspect.Parameter.KEYWORD_ONLY or (positional and (i > 0 or not skip_first)):
            names.add(p.name)
    return frozenset(names)


def private_backend(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's Rust backend that never truncates or pads, or None.

    transformers reconfigures the backend's truncation and padding on every call, so
    sharing one between the event loop and the worker thread could count a truncated
    length (or fail with "Already borrowed"). The copy is also about twice as quick as
    the transformers wrapper.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    encoder = copy.deepcopy(backend)
    encoder.no_truncation()
    encoder.no_padding()
    return encoder


def card_seq_length(model_dir: str) -> int | None:
    """``max_seq_length`` from a sentence-transformers model directory, if it states one."""
    path = Path(model_dir) / "sentence_bert_config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("max_seq_length")
    return value if isinstance(value, int) else None

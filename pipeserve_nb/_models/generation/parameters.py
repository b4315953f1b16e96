"""The generation parameters of the native route (``POST /``), as a text-generation pipeline names them.

``POST /`` on a model served one token at a time takes the pipeline's names (``max_new_tokens``,
``do_sample``, ``temperature``, ``top_p``, ``seed``, ``stop``, ``return_full_text``), so a request that
worked against the pipeline keeps working; ``openai_fields`` turns them into the fields ``ChatPrompts``
checks (OpenAI's names), so both routes share one set of bounds. As with the pipeline, an answer is greedy
unless it asks to sample (``do_sample: true``, or a ``temperature`` above 0 without ``do_sample: false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._exceptions import InvalidInput

__all__ = ["PIPELINE_PARAMETERS", "full_text", "openai_fields"]

PIPELINE_PARAMETERS = frozenset(
    {"max_new_tokens", "do_sample", "temperature", "top_p", "seed", "stop", "return_full_text"}
)
"""The parameters ``POST /`` takes for a generation; any other name is refused (a 400 that lists these)."""


def openai_fields(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's fields for ``parameters`` (``InvalidInput`` for a name or value the route does not take)."""
    unknown = sorted(set(parameters) - PIPELINE_PARAMETERS)
    if unknown:
        names = ", ".join(sorted(PIPELINE_PARAMETERS))
        raise InvalidInput(f"unknown parameter {', '.join(map(repr, unknown))}: a generation takes {names}")
    sample = parameters.get("do_sample")
    if sample is not None and not isinstance(sample, bool):
        raise InvalidInput(f"do_sample must be true or false, got {sample!r}")
    temperature = parameters.get("temperature")
    if sample is None:
        sample = temperature is not None and temperature != 0
    fields: dict[str, Any] = {"temperature": (1.0 if temperature is None else temperature) if sample else 0.0}
    for ours, theirs in (("max_new_tokens", "max_tokens"), ("top_p", "top_p"), ("seed", "seed"), ("stop", "stop")):
        if parameters.get(ours) is not None:
            fields[theirs] = parameters[ours]
    return fields


def full_text(parameters: Mapping[str, Any]) -> bool:
    """Whether the answer starts with its prompt (the pipeline's ``return_full_text``, true unless set false)."""
    value = parameters.get("return_full_text", True)
    if not isinstance(value, bool):
        raise InvalidInput(f"return_full_text must be true or false, got {value!r}")
    return value

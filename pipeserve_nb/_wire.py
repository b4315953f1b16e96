"""The HTTP contract the server writes and its clients read: timing headers and the error body.

Both sides import these names from here (the server's app; ``query``/``aquery`` and the load
generator), so a rename cannot leave one side reading a header the other no longer sends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QUEUE_WAIT_HEADER", "BATCH_SIZE_HEADER", "INFERENCE_HEADER", "REPLICA_HEADER", "error_body", "error_of"]

QUEUE_WAIT_HEADER = "x-queue-wait-ms"
"""On every successful answer: how long the request waited before the model first ran it."""

BATCH_SIZE_HEADER = "x-batch-size"
"""How many inputs shared the model call that answered the request (the largest, if several)."""

INFERENCE_HEADER = "x-inference-ms"
"""How long the model calls that ran the request took."""

REPLICA_HEADER = "x-replica"
"""On every answer of a replica of a Ray Serve deployment (``serve_on_ray``): which replica sent it."""


def error_body(kind: str, message: str) -> dict[str, Any]:
    """The JSON body of every error answer: ``{"error": {"type": ..., "message": ...}}``."""
    return {"error": {"type": kind, "message": message}}


def error_of(document: Any) -> tuple[str, str] | None:
    """``(type, message)`` of an error body, or None if ``document`` is not one; of OpenAI's shape (on ``/v1``),
    its ``code`` is the type (``invalid_input``, ``model_not_found``: its ``type`` is only a category)."""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or "type" not in error or "message" not in error:
        return None
    kind = error["code"] if "param" in error and error.get("code") else error["type"]
    return str(kind), str(error["message"])

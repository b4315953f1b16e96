"""The app for an ASGI server of your own, configured by environment variables.

    PIPESERVE_MODEL=bert-base-uncased PIPESERVE_TASK=fill-mask \\
        uvicorn pipeserve_nb.asgi:app --lifespan on --port 8000

Variables (all optional): ``PIPESERVE_MODEL`` (Hub id or path; default: the bundled
all-MiniLM-L6-v2), ``PIPESERVE_TASK``, ``PIPESERVE_DEVICE``, ``PIPESERVE_MAX_BATCH_SIZE``,
``PIPESERVE_MAX_WAIT_MS``, ``PIPESERVE_MAX_QUEUE``, ``PIPESERVE_TIMEOUT_S``,
``PIPESERVE_MAX_BATCH_TOKENS``, ``PIPESERVE_ARRIVAL_ORDER`` (1 to batch in arrival order),
``PIPESERVE_CALL_OVERHEAD_TOKENS`` (the price of a model call when grouping by length),
``PIPESERVE_TORCH_THREADS``, ``PIPESERVE_MAX_BODY_BYTES``, ``PIPESERVE_TOKEN`` (clients must then send
``Authorization: Bearer <token>``; set it whenever uvicorn binds a non-loopback address,
since this module cannot see which address that is).
The model loads in the app's lifespan (once per process: run a single worker).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from ._app import create_app
from ._config import ServerConfig
from ._engine import Engine
from ._models import ModelSpec
from ._policy import BatchPolicy

__all__ = ["app", "app_from_env"]


def app_from_env(env: dict[str, str] | None = None) -> Starlette:
    """Build the app from ``PIPESERVE_*`` variables (``os.environ`` by default)."""
    e = dict(os.environ if env is None else env)
    default, limits = BatchPolicy(), ServerConfig()
    policy = BatchPolicy(
        max_batch_size=int(e.get("PIPESERVE_MAX_BATCH_SIZE", default.max_batch_size)),
        max_wait_s=float(e.get("PIPESERVE_MAX_WAIT_MS", "0")) / 1000,
        max_batch_tokens=int(e["PIPESERVE_MAX_BATCH_TOKENS"]) if e.get("PIPESERVE_MAX_BATCH_TOKENS") else None,
        sort_by_length=e.get("PIPESERVE_ARRIVAL_ORDER", "") not in ("1", "true", "yes"),
        call_overhead_tokens=float(e.get("PIPESERVE_CALL_OVERHEAD_TOKENS", default.call_overhead_tokens)),
    )
    config = ServerConfig(
        max_queue=int(e.get("PIPESERVE_MAX_QUEUE", limits.max_queue)),
        timeout_s=float(e.get("PIPESERVE_TIMEOUT_S", limits.timeout_s)),
        max_body_bytes=int(e.get("PIPESERVE_MAX_BODY_BYTES", limits.max_body_bytes)),
        auth_token=e.get("PIPESERVE_TOKEN") or None,
        torch_threads=int(e["PIPESERVE_TORCH_THREADS"]) if e.get("PIPESERVE_TORCH_THREADS") else None,
    )
    spec = ModelSpec(
        model=e.get("PIPESERVE_MODEL") or None,
        task=e.get("PIPESERVE_TASK") or None,
        device=e.get("PIPESERVE_DEVICE") or None,
    )
    return create_app(Engine(spec, policy, config))


app = app_from_env()

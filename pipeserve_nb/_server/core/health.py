"""The health check, told truthfully: what ``GET /health`` answers, from the engine's state.

``/health`` answers 200 ``{"status": "ok", ...}`` only while the engine runs, its batch loop
runs, its inference thread lives, and no model call has run longer than the *stuck bound*.
Otherwise 503, with ``status`` (``starting``, ``stuck``, ``failed``, ``draining``,
``stopped``) and a ``reason`` in words. A stuck call (a deadlocked tokenizer, a hung GPU)
cannot be interrupted, so the check is all a load balancer or Ray Serve can go by: it
reports the call and how long it has run, and recovers by itself if the call returns.
Requests meanwhile still get their 504 at their deadline.

The stuck bound is ``stuck_call_s`` when set; else ``STUCK_FACTOR`` times the call's
predicted time (the call cost fitted from the calls the server ran), and at least
``STUCK_FLOOR_S``: a first call, or one of unusual inputs, may be slow; a hung one is hung.

Every answer also says the model, its device and dtype, the queue depth (every request
accepted and not yet started), whether the inference thread lives, and how long the
running call has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._wire import error_body
from .engine import Engine, EngineState

__all__ = ["Health", "check", "stuck_bound_s", "STUCK_FACTOR", "STUCK_FLOOR_S"]

STUCK_FACTOR = 10.0
STUCK_FLOOR_S = 10.0


@dataclass(frozen=True, slots=True)
class Health:
    """One answer of the health check."""

    ok: bool
    body: dict[str, Any]


def stuck_bound_s(configured_s: float | None, predicted_s: float | None) -> float:
    """How long a call may run before it counts as stuck (see the module docstring)."""
    if configured_s is not None:
        return configured_s
    return max(STUCK_FLOOR_S, STUCK_FACTOR * predicted_s) if predicted_s is not None else STUCK_FLOOR_S


def check(engine: Engine, debug: bool = False) -> Health:
    """The engine's health now."""
    batches = engine.batches
    running_s = batches.running_for_s() if batches is not None else None
    body: dict[str, Any] = {
        "status": "ok",
        "model": engine.model_name,
        "device": engine.device,
        "dtype": engine.dtype,
        "queue_depth": engine.queue_depth(),
        "worker_alive": engine.worker is not None and engine.worker.is_alive(),
        "model_call_running_s": round(running_s, 3) if running_s is not None else None,
    }
    reason = _problem(engine, running_s, debug)
    if reason is None:
        return Health(True, body)
    body["status"], body["reason"] = reason
    if body["status"] == "failed":  # the error shape of the requests it fails, for clients that read it
        body.update(error_body("WorkerDied", reason[1]))
    return Health(False, body)


def _problem(engine: Engine, running_s: float | None, debug: bool) -> tuple[str, str] | None:
    """``(status, reason)`` when the server should not get traffic, else None."""
    state = engine.state
    if state is EngineState.FAILED or (state is EngineState.RUNNING and not engine.serving()):
        failure = engine.failure
        kind = type(failure).__name__ if failure is not None else "the batch loop ended"
        detail = f": {failure}" if debug and failure is not None else ""
        return "failed", f"the inference worker died ({kind}{detail})"
    if state is EngineState.CREATED:
        return "starting", "the server is starting"
    if state is not EngineState.RUNNING:
        return state.value, f"the server is {state.value} and takes no new requests"
    batches = engine.batches
    if running_s is not None and batches is not None:
        bound = stuck_bound_s(engine.config.stuck_call_s, batches.predicted_s)
        if running_s > bound:
            return "stuck", (
                f"a model call has run for {running_s:.1f} s, over its bound of {bound:.1f} s "
                f"({batches.running.size if batches.running else '?'} inputs); it cannot be interrupted: "
                "requests will time out until it returns"
            )
    return None

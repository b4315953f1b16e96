"""The health check, told truthfully: whether the server should get traffic, from the engine's state.

``check`` says ok only while the engine runs, its batch loop runs, its inference thread lives, and
no model call has run past its bound. Otherwise not ok, with ``status`` (``starting``, ``stuck``,
``failed``, ``draining``, ``stopped``) and a ``reason`` in words; a dead worker also carries the
``WorkerDied`` failure its requests get, so the edge answers in the same error shape (``GET /health``:
200 or 503). A running call cannot be interrupted, so the check is all a load balancer or Ray Serve
can go by: it reports the call and how long it has run, and recovers by itself when the call returns.

A call is past its bound once it has run longer than the shorter of:

- ``timeout_s``: by then every request it holds has been answered 504, so more traffic now only
  queues behind a call that has already failed its callers;
- the *stuck bound*: ``stuck_call_s`` when set; else ``STUCK_FACTOR`` times the call's predicted time
  (the call cost fitted from the calls the server ran), and at least ``STUCK_FLOOR_S``: a first
  call, or one of unusual inputs, may be slow; a hung one is hung.

Every answer also says the model, its device and dtype, the queue depth (every request accepted
and not yet started), whether the inference thread lives, and how long the running call has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._exceptions import RequestFailed
from .engine import Engine, EngineState
from .request import worker_died

__all__ = ["Health", "check", "stuck_bound_s", "call_bound_s", "STUCK_FACTOR", "STUCK_FLOOR_S"]

STUCK_FACTOR = 10.0
STUCK_FLOOR_S = 10.0


@dataclass(frozen=True, slots=True)
class Health:
    """One answer of the health check: ``failure`` is the error a dead worker's requests get."""

    ok: bool
    body: dict[str, Any]
    failure: RequestFailed | None = None


def stuck_bound_s(configured_s: float | None, predicted_s: float | None) -> float:
    """How long a call may run before it counts as stuck (see the module docstring)."""
    if configured_s is not None:
        return configured_s
    return max(STUCK_FLOOR_S, STUCK_FACTOR * predicted_s) if predicted_s is not None else STUCK_FLOOR_S


def call_bound_s(timeout_s: float, configured_s: float | None, predicted_s: float | None) -> float:
    """How long a call may run before the check fails: the request timeout or the stuck bound, the shorter."""
    return min(timeout_s, stuck_bound_s(configured_s, predicted_s))


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
    problem = _problem(engine, running_s, debug)
    if problem is None:
        return Health(True, body)
    body["status"], body["reason"] = problem
    failure = worker_died(engine.failure) if problem[0] == "failed" else None
    return Health(False, body, failure)


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
    if running_s is None or batches is None:
        return None
    config = engine.config
    bound = call_bound_s(config.timeout_s, config.stuck_call_s, batches.predicted_s)
    if running_s <= bound:
        return None
    inputs = batches.running.size if batches.running else "?"
    if bound == config.timeout_s:
        why = f"past timeout_s={config.timeout_s:g}: every request it holds was answered 504"
    else:
        why = f"over its bound of {bound:.1f} s"
    return "stuck", (
        f"a model call has run for {running_s:.1f} s, {why} ({inputs} inputs); it cannot be interrupted: "
        "requests will time out until it returns"
    )

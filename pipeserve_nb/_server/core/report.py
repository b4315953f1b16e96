"""What ``GET /stats`` answers: the engine's state and the numbers of its ``Stats``, as JSON values."""

from __future__ import annotations

from typing import Any

from .engine import Engine

__all__ = ["stats_report"]


def stats_report(engine: Engine) -> dict[str, Any]:
    """The ``/stats`` document of ``engine`` (the same on a replica of a Ray deployment, with
    ``replica`` set to its name)."""
    return {
        "model": engine.model_name,
        "device": engine.device,
        "dtype": engine.dtype,
        "state": engine.state.value,
        "policy": repr(engine.policy),
        "replica": engine.replica,
        "queue_depth": engine.queue_depth(),
        "running_batch": _running_batch(engine),
        **engine.stats.snapshot(),
        "call_cost": _call_cost(engine),
        "generation": engine.generating.report() if engine.generating is not None else None,
    }


def _running_batch(engine: Engine) -> dict[str, Any] | None:
    """The batch in the model right now (its inputs, padded tokens, time so far), or None."""
    batches = engine.batches
    batch = batches.running if batches is not None else None
    if batches is None or batch is None:
        return None
    for_s = batches.running_for_s()
    return {
        "size": batch.size,
        "padded_tokens": batch.padded_tokens,
        "for_ms": None if for_s is None else round(for_s * 1000, 3),
    }


def _call_cost(engine: Engine) -> dict[str, Any] | None:
    """The fitted call cost, the calibration of start-wait forecasts (admission by time), and how soon answered
    batches' clients have lately all sent again (the policy's wait for returns compares it with the fixed cost)."""
    batches = engine.batches
    if batches is None:
        return None
    returned = batches.queue.returns.seconds
    return {
        **batches.cost.snapshot(),
        "wait_factor": round(batches.calibration.factor, 3),
        "return_ms": None if returned is None else round(returned * 1000, 3),
    }

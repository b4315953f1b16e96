"""One ``/stats`` view of a deployment: every replica's document, and their counters summed.

Counts and seconds add up across replicas; percentiles do not (the p99 of two replicas is
not a function of their p99s), so the combined view leaves them to each replica's document.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["combine"]

_SUMMED = ("requests", "batches", "real_tokens", "padded_tokens", "model_busy_s", "queue_depth")
_MERGED = ("requests_by_status", "dropped_before_inference", "batch_size_histogram")


def combine(replicas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The deployment's ``/stats``: the first replica's model and policy, the sums of every
    count, the rates of the last seconds summed, and ``replicas`` (each one's own document)."""
    documents = list(replicas.values())
    first = documents[0] if documents else {}
    out: dict[str, Any] = {key: first.get(key) for key in ("model", "device", "dtype", "policy")}
    states = {d.get("state") for d in documents}
    out["state"] = states.pop() if len(states) == 1 else "mixed: " + ", ".join(sorted(str(s) for s in states))
    out["replica"] = None
    for key in _SUMMED:
        out[key] = sum(d.get(key) or 0 for d in documents)
    out["model_busy_s"] = round(out["model_busy_s"], 6)
    for key in _MERGED:
        merged: Counter[str] = Counter()
        for d in documents:
            merged.update(d.get(key) or {})
        out[key] = dict(sorted(merged.items(), key=lambda kv: (len(kv[0]), kv[0])))
    sizes = out["batch_size_histogram"]
    inputs = sum(int(k) * v for k, v in sizes.items())
    out["mean_batch_size"] = inputs / out["batches"] if out["batches"] else None
    padded = out["padded_tokens"]
    out["padding_efficiency"] = round(out["real_tokens"] / padded, 4) if padded else None
    recent = [d.get("recent") or {} for d in documents]
    out["recent"] = {key: round(sum(r.get(key) or 0.0 for r in recent), 3) for key in ("answers_per_s", "ok_per_s")}
    out["replicas"] = {name: dict(d) for name, d in replicas.items()}
    return out

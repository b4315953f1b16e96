"""The one percentile definition: nearest rank, used by the server's ``/stats`` and by the
measurement summaries alike, so their figures can be compared."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "percentiles"]


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    return percentiles(values, (q,))[0]


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float]:
    """The nearest-rank percentiles ``qs`` of ``values``, sorting them once."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    for q in qs:
        if not 0 < q <= 100:
            raise ValueError(f"q must be in (0, 100], got {q}")
    return [ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] for q in qs]

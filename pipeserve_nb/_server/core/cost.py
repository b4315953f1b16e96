"""What a model call costs: a line ``seconds = fixed_s + per_token_s x padded tokens``, fitted online.

Every batch the server runs is one observation (its padded tokens: inputs x the longest
input's tokens; its seconds in the model). The fit is least squares with exponential
forgetting (each observation weighs ``decay`` times the one after it), so it follows a
machine whose speed drifts, as a shared CPU's does within minutes. Its uses:

- admission by time predicts how long what is waiting will take to run (``Forecast``);
- the health check calls a model call "stuck" when it runs far longer than predicted.

Guards, each against a way one call could mislead it: the first call is not observed (it
pays one-time set-up: lazy initialisation, allocator warm-up; it can take many times a later call);
nothing is predicted before ``min_calls`` calls; once it predicts, one observation counts
at most ``OUTLIER_FACTOR`` times its prediction (a pause of the whole process is not the
model's cost; a lasting slow-down still moves the fit, call by call). Both coefficients are
kept >= 0: with too little spread in the batches seen to tell the fixed part from the
per-token part (a warm-up of small batches, a cold server's first calls), the cost is a
constant, the mean call: extrapolating a line through the origin from small calls to full
ones overestimated them several times over and refused work the model could do; a constant
underestimates full calls instead, which the calibration of waits (``WaitCalibration``) and
the count bound absorb until bigger calls spread the fit. Pure arithmetic; no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CallCost", "Forecast", "WaitCalibration", "backlog_s", "OUTLIER_FACTOR"]

OUTLIER_FACTOR = 5.0


@dataclass(frozen=True, slots=True)
class Forecast:
    """A forecast start wait: ``raw_s`` from the call cost alone, ``wait_s`` once calibrated;
    ``calls``: the model calls planned for what waits (after the running one)."""

    raw_s: float
    wait_s: float
    calls: int = 0


class CallCost:
    """An online fit of a model call's seconds against its padded tokens.

    Example:
        >>> cost = CallCost(skip_first=0)
        >>> for tokens, seconds in [(100, 0.015), (200, 0.025), (400, 0.045)]:
        ...     cost.observe(tokens, seconds)
        >>> round(cost.predict(300), 4)
        0.035
    """

    def __init__(self, decay: float = 0.9, *, skip_first: int = 1, min_calls: int = 3) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.skip_first = skip_first
        self.min_calls = min_calls
        self.calls = 0
        self.seen = 0
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self.fixed_s = 0.0
        self.per_token_s = 0.0

    def observe(self, padded_tokens: int, seconds: float) -> None:
        """One model call of ``padded_tokens`` took ``seconds``."""
        self.seen += 1
        if self.seen <= self.skip_first:
            return
        predicted = self.predict(padded_tokens)
        if predicted is not None and predicted > 0:
            seconds = min(seconds, OUTLIER_FACTOR * predicted)
        d, x, y = self.decay, float(padded_tokens), seconds
        self._w = d * self._w + 1.0
        self._x = d * self._x + x
        self._y = d * self._y + y
        self._xx = d * self._xx + x * x
        self._xy = d * self._xy + x * y
        self.calls += 1
        self._fit()

    def _fit(self) -> None:
        w, sx, sy, sxx, sxy = self._w, self._x, self._y, self._xx, self._xy
        spread = w * sxx - sx * sx  # w^2 x the weighted variance of x
        if spread > 1e-9 * max(sxx * w, 1.0):
            slope = (w * sxy - sx * sy) / spread
            fixed = (sy - slope * sx) / w
            if slope >= 0.0 and fixed >= 0.0:
                self.fixed_s, self.per_token_s = fixed, slope
                return
            if slope < 0.0:  # bigger calls were not slower: a constant fits best
                self.fixed_s, self.per_token_s = sy / w, 0.0
                return
        self.fixed_s, self.per_token_s = sy / w, 0.0  # no spread to tell them apart: a constant

    @property
    def fitted(self) -> bool:
        """Whether enough calls were seen to predict (before that, ``predict`` returns None)."""
        return self.calls >= self.min_calls

    def predict(self, padded_tokens: int) -> float | None:
        """Predicted seconds of a call of ``padded_tokens``; None until ``fitted``."""
        if not self.fitted:
            return None
        return self.fixed_s + self.per_token_s * padded_tokens

    def snapshot(self) -> dict[str, float | int | None]:
        """The fit as JSON-ready values (milliseconds)."""
        if not self.fitted:
            return {"calls_seen": self.seen, "fixed_ms": None, "per_token_ms": None}
        return {
            "calls_seen": self.seen,
            "fixed_ms": round(self.fixed_s * 1000, 4),
            "per_token_ms": round(self.per_token_s * 1000, 6),
        }


def backlog_s(cost: CallCost, calls: Sequence[tuple[int, int]]) -> float | None:
    """Predicted seconds to run ``calls`` (each ``(inputs, padded tokens)``); None before any fit."""
    if not cost.fitted:
        return None
    return sum(cost.fixed_s + cost.per_token_s * tokens for _, tokens in calls)


class WaitCalibration:
    """How far real start waits run past their forecast, measured request by request.

    The forecast (``backlog_s`` of the waiting calls) assumes the requests waiting now are
    the ones that run first. A length-aware policy also batches *later* arrivals ahead of a
    waiting request (the oldest is always in the next batch, but its batch-mates are its
    neighbours in length, old or new), so under an overload real waits spread around their
    forecast, the slowest well past it. A request admitted near the bound (its calibrated forecast at least half of
    ``bound_s``: where the bound binds, and where one batch more or less is a small part of
    the wait) contributes its real wait over its raw forecast; ``factor`` is the
    ``quantile`` of the last ``window`` of those ratios, kept within [``low``, ``high``];
    until ``min_samples`` were seen it is ``prior``, a ratio of the size seen under overload, so
    that the first seconds of an overload (before any request admitted in it has started) do not
    admit a queue twice as long as the bound. Admission multiplies its forecast by it, so that the
    chosen quantile of real waits, not only the median, stays within the bound. The quantile is
    the p99 because the bound is promised at the p99 (``make reliability`` checks it); a lower
    quantile lets the slowest of those admitted near the bound wait past it.
    """

    def __init__(
        self,
        bound_s: float | None,
        *,
        quantile: float = 0.99,
        window: int = 512,
        min_samples: int = 16,
        low: float = 0.5,
        high: float = 4.0,
        prior: float = 2.0,
    ) -> None:
        self.bound_s = bound_s
        self.quantile = quantile
        self.min_samples = min_samples
        self.low, self.high = low, high
        self._ratios: deque[float] = deque(maxlen=window)
        self._new = 0
        self.factor = prior

    def observe(self, forecast: Forecast, waited_s: float) -> None:
        """A request admitted with ``forecast`` started after ``waited_s``."""
        if self.bound_s is None or forecast.raw_s <= 0 or forecast.wait_s < 0.5 * self.bound_s:
            return
        self._ratios.append(waited_s / forecast.raw_s)
        self._new += 1
        if len(self._ratios) >= self.min_samples and self._new >= 8:  # re-sort now and then, not per request
            self._new = 0
            ordered = sorted(self._ratios)
            q = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
            self.factor = min(self.high, max(self.low, q))

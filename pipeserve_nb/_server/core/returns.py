"""How soon the clients of an answered batch send again: what the policy's wait for returns rests on.

Each time the worker becomes free, the batch it just ran was answered; its clients may send again (a
closed loop, a chat, a pipeline) or not (independent arrivals). ``Returns`` times each batch's return: from
the moment the worker became free until as many requests came as the batch held. A batch whose return did
not complete before the worker was free again counts with the time until then (a lower bound, and at least
one model call: long for a wait). ``seconds`` is an exponentially weighted mean of these, so it follows a
load that changes. Pure arithmetic; the batch queue gives it its clock readings.

Example:
    >>> returns = Returns()
    >>> returns.freed(10.0, answered=2)
    >>> returns.arrived(10.001); returns.arrived(10.003)
    >>> round(returns.seconds * 1000, 3)
    3.0
"""

from __future__ import annotations

__all__ = ["Returns"]


class Returns:
    """The time until an answered batch's clients all sent again, averaged (see the module docstring)."""

    def __init__(self, weight: float = 0.2) -> None:
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        self.seconds: float | None = None
        """The weighted mean time to a full return; None before one was timed."""
        self._since = 0.0
        self._expected = 0  # requests still to come back to complete the open return; 0: none open

    def freed(self, now: float, answered: int) -> None:
        """The worker became free at ``now`` after a batch of ``answered`` requests."""
        if self._expected > 0:
            self._record(now - self._since)  # not all came back while that batch's successor ran
        self._since, self._expected = now, answered

    def arrived(self, now: float) -> None:
        """A request came at ``now``."""
        if self._expected > 0:
            self._expected -= 1
            if self._expected == 0:
                self._record(now - self._since)

    def _record(self, seconds: float) -> None:
        mean = self.seconds
        self.seconds = seconds if mean is None else mean + self.weight * (seconds - mean)

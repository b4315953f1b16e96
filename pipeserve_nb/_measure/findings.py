"""A lesson's findings: what a notebook measured, and whether each effect it set out to show appeared.

A lesson prints conclusions from numbers measured in its own run. On a busy machine a run can fail to
show the effect it was built for: a load meant to overload a server finds it faster than the capacity
measured a minute earlier, and nothing is refused. Printing the usual conclusion from such a run
states something its own numbers contradict. ``Findings`` keeps the two apart:

- ``require(effect, holds, failed=...)`` records whether the run met what ``effect`` needs; when it did
  not, the cell says so at once, in words (what happened, what to do), and the effect is marked unmet;
- ``conclude(effect, line)`` prints the conclusion only for an effect that was shown, and otherwise
  the reason it was not: never a placeholder ("-", "None", "0 requests") standing for a finding.

The values themselves (``findings["capacity_rps"] = ...``) are a plain ``dict``. The tests and
``make notebooks`` read the last ``Findings`` a kernel made with ``Findings.recorded()``; a reader
sees only the printed lines.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["Findings", "RERUN_ADVICE"]

RERUN_ADVICE = (
    "Other work on this machine probably changed its speed during the run: close it, then run the notebook again."
)
"""What a reader can do about a run that did not show its effect."""

_latest: Findings | None = None


class Findings(dict[str, Any]):
    """The numbers a lesson measured (a ``dict``) and the effects its run did or did not show.

    Example:
        >>> findings = Findings("04")
        >>> findings["refused"] = 0
        >>> findings.require("fast 503s", findings["refused"] > 0, failed="the server refused nothing")
        This run could not show fast 503s: the server refused nothing. Other work on ...
        >>> findings.conclude("fast 503s", lambda: f"- The breaker refused {findings['refused']} requests.")
        - This run did not show fast 503s (the server refused nothing), so there is no conclusion about it.
    """

    def __init__(self, lesson: str) -> None:
        super().__init__()
        self.lesson = lesson
        self.shown: dict[str, bool] = {}
        self.unmet: dict[str, str] = {}
        global _latest
        _latest = self

    def require(self, effect: str, holds: bool, *, failed: str, advice: str = RERUN_ADVICE) -> None:
        """Record whether this run can show ``effect``; when it cannot (``holds`` false), print
        ``failed`` (what happened, with its numbers) and ``advice``. Nothing is returned, so a cell
        ending with it shows nothing more (``holds(effect)`` tells afterwards)."""
        holds = bool(holds)
        self.shown[effect] = holds
        if holds:
            self.unmet.pop(effect, None)
        else:
            self.unmet[effect] = failed
            print(f"This run could not show {effect}: {failed}. {advice}", flush=True)

    def holds(self, effect: str) -> bool:
        """Whether ``effect`` was required and shown (an effect never required has not been shown)."""
        return self.shown.get(effect, False)

    def conclude(self, effect: str, line: Callable[[], str] | str) -> None:
        """Print ``line`` (called only now, so it may use numbers an unmet effect lacks) if ``effect``
        was shown; otherwise why there is no conclusion about it."""
        if self.holds(effect):
            print(line() if callable(line) else line)
        elif effect in self.unmet:
            print(f"- This run did not show {effect} ({self.unmet[effect]}), so there is no conclusion about it.")
        else:
            raise KeyError(f"no require({effect!r}, ...) ran before conclude({effect!r}, ...)")

    def record(self) -> dict[str, Any]:
        """The findings as JSON-ready values, with ``"shown"`` and ``"unmet"`` (for tests and tools)."""
        return {
            "lesson": self.lesson,
            "values": _plain(dict(self)),
            "shown": dict(self.shown),
            "unmet": dict(self.unmet),
        }

    @staticmethod
    def recorded() -> dict[str, Any] | None:
        """``record()`` of the last ``Findings`` made in this process, or None."""
        return None if _latest is None else _latest.record()


def _plain(value: Any) -> Any:
    """``value`` with NumPy and pandas scalars as Python numbers, tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(getattr(value, "item", None)):  # a NumPy scalar (a pandas cell is one)
        value = value.item()
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)

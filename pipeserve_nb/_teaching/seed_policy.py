"""The seed page's batching loop as a ``Policy``, for teaching: a timer reset on every arrival."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._options import Int, Number, check_fields, option
from .._server.core.formation import Batchable, Pick, pick_batch, plan_calls

__all__ = ["SeedPagePolicy"]


@dataclass(frozen=True, kw_only=True)
class SeedPagePolicy:
    """The Transformers "pipelines for a webserver" page's batching loop, for teaching.

    It reproduces the page's sketch faithfully, pitfalls included: after each request
    is taken, wait up to ``max_wait_s`` for the next one, so *every arrival restarts the
    timer*. Under a steady trickle (one request per < ``max_wait_s``) the batch keeps
    growing and its first request waits far longer than ``max_wait_s``. It also always
    pays ``max_wait_s`` on an empty queue, and has no cap unless ``max_batch_size`` is
    given. Unlike the page, it never drops the first request it takes.

    Parameters:
        max_wait_s: the per-get timeout (the page uses 0.001).
        max_batch_size: optional cap in inputs; None (the page's choice) means no cap.
    """

    max_wait_s: float = option(0.001, Number(of="seconds"), "the per-get timeout", unit="s")
    max_batch_size: int | None = option(None, Int(optional=True), "optional cap (None: no cap)", unit="inputs")

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def cap(self) -> int | None:
        """The batch cap in inputs, or None for no cap."""
        return self.max_batch_size

    @property
    def window(self) -> int | None:
        """The pool is one batch: the page never reorders."""
        return self.max_batch_size

    def collect_deadline(self, first_s: float, last_s: float) -> float:
        """``max_wait_s`` after the newest request became available: every arrival resets it."""
        return last_s + self.max_wait_s

    def return_wait_s(
        self, answered: int, returned: int, waiting: int, fixed_s: float | None, return_s: float | None
    ) -> float:
        """Never: the page knows nothing of its clients."""
        return 0.0

    def pick(self, waiting: Sequence[Batchable]) -> Pick:
        """Everything waiting, in arrival order (up to the cap, if one is given)."""
        return pick_batch(waiting, cap=self.max_batch_size, max_tokens=None, by_length=False)

    def plan(self, waiting: Sequence[Batchable]) -> list[tuple[int, int]]:
        """The calls that will run ``waiting``: in arrival order, up to the cap."""
        return plan_calls(waiting, cap=self.max_batch_size, max_tokens=None, by_length=False)

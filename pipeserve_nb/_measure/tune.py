"""``tune()``: the batching policy for your model and your load, measured, ready to pass to ``serve()``.

A grid of policy settings (``max_batch_size`` x ``max_wait_s`` x ``max_batch_tokens`` x ``wait_for_returns``), each
served in turn with one loaded copy of the model and measured under each load (``sweep``, a fresh server per setting).
What comes back (``Tuning``) is the table, the settings on the Pareto front of goodput against p99 at each load, a plot
of them, and the best setting: among those whose p99 stays within the target at every load and that answered every
request, the one with the most goodput, each load counted alike (its goodput at a load over the most any setting reached
there, averaged over the loads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidSetting
from .._live.stats_view import table_html
from .._models.loading import load_model
from .._models.spec import LoadedModel
from .._options import Number, check
from .._server.core.config import ServerConfig
from .._server.core.policy import BatchPolicy
from .loads import ClosedLoop, Load
from .sweep import sweep

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["tune", "Tuning"]

SETTINGS = ("max_batch_size", "max_wait_s", "max_batch_tokens", "wait_for_returns")
"""The policy settings a tuning grid spans, in the table's first columns."""


@dataclass(frozen=True)
class Tuning:
    """What ``tune()`` measured and chose.

    Attributes:
        table: one row per (setting, load): ``policy`` (the setting's label), the settings' columns, then the
            columns of ``sweep`` (``load``, ``goodput_rps``, ``p50_ms``, ``p99_ms``, ...) and ``score`` (the
            setting's goodput at that load over the most any setting reached there).
        policies: each setting's policy by label.
        best: the chosen policy (``serve(model, policy=tuning.best)``), None when no setting met the target.
        best_label: its label.
        p99_target_ms: the latency target it was chosen under (None: none).
    """

    table: pd.DataFrame
    policies: dict[str, BatchPolicy]
    best: BatchPolicy | None
    best_label: str | None
    p99_target_ms: float | None

    def summary(self) -> pd.DataFrame:
        """One row per setting: its worst p99 over the loads, its mean score, whether it answered every request
        and met the target; the best first."""
        table = self.table
        each = table.groupby("policy", sort=False).agg(
            worst_p99_ms=("p99_ms", "max"), score=("score", "mean"), all_answered=("all_answered", "all")
        )
        target = self.p99_target_ms
        each["meets_target"] = each.all_answered & (True if target is None else each.worst_p99_ms <= target)
        return each.sort_values(["meets_target", "score"], ascending=False)

    def pareto(self, load: str) -> pd.DataFrame:
        """The rows of ``load`` that no other setting beats on both goodput and p99, by p99."""
        rows = self.table[self.table.load == load]
        front = [
            i
            for i, row in rows.iterrows()
            if not any(
                other.goodput_rps >= row.goodput_rps
                and other.p99_ms <= row.p99_ms
                and (other.goodput_rps > row.goodput_rps or other.p99_ms < row.p99_ms)
                for _, other in rows.iterrows()
            )
        ]
        return rows.loc[front].sort_values("p99_ms")

    def plot(self) -> Figure:
        """Goodput against p99, one point per setting and one panel per load; the Pareto front joined, the best
        setting marked, the target drawn."""
        import matplotlib.pyplot as plt

        loads = list(dict.fromkeys(self.table.load))
        fig, axes = plt.subplots(1, len(loads), figsize=(5.2 * len(loads), 4.2), squeeze=False)
        for ax, load in zip(axes[0], loads, strict=True):
            rows = self.table[self.table.load == load]
            ax.scatter(rows.p99_ms, rows.goodput_rps, color="#9aa5b1", zorder=2, label="a setting")
            front = self.pareto(load)
            ax.plot(front.p99_ms, front.goodput_rps, "o-", color="#2a6fdb", zorder=3, label="Pareto front")
            for _, row in front.iterrows():
                ax.annotate(
                    row.policy, (row.p99_ms, row.goodput_rps), fontsize=7, xytext=(4, 4), textcoords="offset points"
                )
            if self.best_label is not None:
                best = rows[rows.policy == self.best_label]
                ax.scatter(
                    best.p99_ms,
                    best.goodput_rps,
                    s=160,
                    facecolors="none",
                    edgecolors="#d1242f",
                    zorder=4,
                    label="best",
                )
            if self.p99_target_ms is not None:
                ax.axvline(self.p99_target_ms, color="#d1242f", linestyle=":", label="p99 target")
            ax.set_title(f"{load}: goodput against p99")
            ax.set_xlabel("p99 latency (ms)")
            ax.set_ylabel("goodput (answers/s)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("tune(): each batching setting measured, the Pareto front joined")
        fig.tight_layout()
        return fig

    def _repr_html_(self) -> str:
        if self.best is None:
            target = f"{self.p99_target_ms:g} ms" if self.p99_target_ms is not None else "none"
            verdict = f"no setting answered every request with p99 within the target ({target}) at every load"
        else:
            verdict = f"best: {self.best_label}, serve(model, policy=tuning.best)"
        lines = [
            (
                label,
                f"worst p99 {row.worst_p99_ms:.1f} ms, score {row.score:.2f}" + ("" if row.meets_target else " (out)"),
            )
            for label, row in self.summary().iterrows()
        ]
        return table_html("tune()", lines, verdict + "; tuning.table, tuning.plot(), tuning.pareto(load)")


def tune(
    model: Any = None,
    loads: Sequence[Load] = (ClosedLoop(concurrency=1, duration_s=2.0), ClosedLoop(concurrency=16, duration_s=2.0)),
    *,
    p99_target_ms: float | None = None,
    max_batch_size: Sequence[int] = (1, 8, 32),
    max_wait_s: Sequence[float] = (0.0, 0.005),
    max_batch_tokens: Sequence[int | None] = (None,),
    wait_for_returns: Sequence[bool] = (True,),
    texts: Sequence[str] | None = None,
    config: ServerConfig | None = None,
    in_process: bool = False,
    repeats: int = 1,
    progress: bool = True,
) -> Tuning:
    """Measure every combination of the given policy settings under each load, and choose the best.

    Parameters:
        model: what ``serve()`` takes (None: the bundled embedder); loaded once, every setting serves that copy.
        loads: the loads to tune for: your traffic's concurrency or rate (``ClosedLoop``, ``OpenLoop``), or
            the traffic your server recorded, sent again (``Replay(recording.traffic, speed=...)``).
        p99_target_ms: the latency target: a setting whose p99 exceeds it at any load is not chosen.
        max_batch_size, max_wait_s, max_batch_tokens, wait_for_returns: the values of each setting to try (the
            grid is their product; the other settings keep ``BatchPolicy``'s defaults). ``wait_for_returns=(False,)``
            sweeps fixed policies only: no wait but ``max_wait_s``.
        texts: the texts to send (default: the bundled corpus); your own make the answer yours.
        config: the server limits each setting is served with (default ``ServerConfig()``).
        in_process, repeats, progress: as for ``sweep``.

    Example:
        >>> loads = [ClosedLoop(concurrency=8, duration_s=1.0)]  # doctest: +SKIP
        >>> tuning = tune(loads=loads, max_batch_size=(1, 32), max_wait_s=(0.0,), progress=False)  # doctest: +SKIP
        >>> len(tuning.table), tuning.best_label in tuning.policies  # doctest: +SKIP
        (2, True)
    """
    if p99_target_ms is not None:
        check("p99_target_ms", p99_target_ms, Number(strict=True))
    grid = list(product(max_batch_size, max_wait_s, max_batch_tokens, wait_for_returns))
    if not grid or not loads:
        raise InvalidSetting("tune() needs at least one value of each setting and at least one load")
    policies = {
        _label(size, wait, tokens, returns): BatchPolicy(
            max_batch_size=size, max_wait_s=wait, max_batch_tokens=tokens, wait_for_returns=returns
        )
        for size, wait, tokens, returns in grid
    }
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    table = sweep(
        policies,
        loads,
        model=loaded,
        config=config,
        texts=texts,
        in_process=in_process,
        repeats=repeats,
        progress=progress,
    )
    for position, name in enumerate(SETTINGS, start=1):  # each row's settings beside its label
        table.insert(position, name, [getattr(policies[label], name) for label in table.policy])
    table["all_answered"] = table.ok == table.requests
    table["score"] = table.goodput_rps / table.groupby("load").goodput_rps.transform("max")
    tuning = Tuning(table, policies, None, None, p99_target_ms)
    chosen = tuning.summary()
    chosen = chosen[chosen.meets_target]
    if chosen.empty:
        return tuning
    label = str(chosen.index[0])
    return Tuning(table, policies, policies[label], label, p99_target_ms)


def _label(size: int, wait: float, tokens: int | None, returns: bool) -> str:
    label = f"batch {size}, wait {wait * 1000:g} ms" + (f", {tokens} tokens" if tokens is not None else "")
    return label if returns else label + ", fixed"

"""Plots for the lessons. Each returns a ``matplotlib.figure.Figure`` with a title (``title=`` to
change it), closed in pyplot so a notebook shows it once, where it is returned, for the caller to
restyle or save."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .results import LoadResult

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["plot_latency_cdf", "plot_latency_over_time", "plot_throughput_latency", "plot_batch_sizes"]


def _figure(width: float = 7.0, height: float = 4.0) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt  # selects the notebook's inline backend, so a returned figure renders

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    plt.close(fig)  # not pyplot's to show: the caller displays, restyles or saves it
    return fig, ax


def _as_mapping(results: LoadResult | Mapping[str, LoadResult]) -> Mapping[str, LoadResult]:
    return {results.load.describe(): results} if isinstance(results, LoadResult) else results


def plot_latency_cdf(
    results: LoadResult | Mapping[str, LoadResult], *, log_x: bool = True, title: str = "Latency of successful requests"
) -> Figure:
    """Share of successful requests answered within each latency, one line per run."""
    fig, ax = _figure()
    ax.set_title(title)
    for label, result in _as_mapping(results).items():
        df = result.frame()
        lat = df.loc[(df.status >= 200) & (df.status < 300), "latency_ms"].sort_values()
        if len(lat):
            ax.step(lat, [(i + 1) / len(lat) for i in range(len(lat))], where="post", label=label)
    ax.set(xlabel="latency from intended send (ms)", ylabel="share of successful requests", ylim=(0, 1.01))
    if log_x:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_latency_over_time(
    results: LoadResult | Mapping[str, LoadResult], *, title: str = "Each request's latency over the run"
) -> Figure:
    """Each request's latency against its intended send time; failures marked by status."""
    fig, ax = _figure()
    ax.set_title(title)
    for label, result in _as_mapping(results).items():
        df = result.frame()
        ok = (df.status >= 200) & (df.status < 300)
        ax.scatter(df.intended_s[ok], df.latency_ms[ok], s=6, label=f"{label} ok")
        for status in sorted(set(df.status[~ok])):
            part = df[df.status == status]
            ax.scatter(part.intended_s, part.latency_ms, s=10, marker="x", label=f"{label} {status or 'no answer'}")
    ax.set(xlabel="intended send time (s)", ylabel="latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_throughput_latency(
    sweep: pd.DataFrame, *, latency: str = "p99_ms", by: str = "policy", title: str = "Latency against throughput"
) -> Figure:
    """Latency against goodput, one line per ``by`` group, points in order of offered load."""
    fig, ax = _figure()
    ax.set_title(title)
    for name, group in sweep.groupby(by, sort=False):
        ax.plot(group["goodput_rps"], group[latency], marker="o", label=str(name))
    ax.set(xlabel="goodput (successful answers / s)", ylabel=f"{latency.removesuffix('_ms')} latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_batch_sizes(
    results: LoadResult | Mapping[str, LoadResult], *, title: str = "How many inputs shared each request's batch"
) -> Figure:
    """How many inputs shared each successful request's batch (from ``X-Batch-Size``)."""
    fig, ax = _figure()
    ax.set_title(title)
    series = {label: r.frame()["batch_size"].dropna().astype(int) for label, r in _as_mapping(results).items()}
    top = max((int(s.max()) for s in series.values() if len(s)), default=1)
    bins = [b - 0.5 for b in range(1, top + 2)]
    for label, sizes in series.items():
        ax.hist(sizes, bins=bins, alpha=0.6, label=label)
    ax.set(xlabel="batch size (inputs)", ylabel="requests")
    ax.legend(fontsize="small")
    return fig

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

__all__ = [
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_throughput_latency",
    "plot_batch_sizes",
    "plot_generation",
]


def _figure(width: float = 8.5, height: float = 4.0) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt  # selects the notebook's inline backend, so a returned figure renders

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    plt.close(fig)  # not pyplot's to show: the caller displays, restyles or saves it
    return fig, ax


def _legend(ax: Any) -> None:
    """The legend beside the plot, never over its data."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


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
    _legend(ax)
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
    _legend(ax)
    return fig


def plot_throughput_latency(
    sweep: pd.DataFrame, *, latency: str = "p99_ms", by: str = "policy", title: str = "Latency against throughput"
) -> Figure:
    """Latency against goodput, one line per ``by`` group, points in order of offered load, each
    labelled with its load (``c=8`` for a closed loop, ``120/s`` for an open one)."""
    fig, ax = _figure()
    ax.set_title(title)
    for name, group in sweep.groupby(by, sort=False):
        (line,) = ax.plot(group["goodput_rps"], group[latency], marker="o", label=str(name))
        for _, row in group.iterrows():
            ax.annotate(
                _load_label(row), (row["goodput_rps"], row[latency]), textcoords="offset points", xytext=(3, 3),
                fontsize="x-small", color=line.get_color(),
            )  # fmt: skip
    ax.set(xlabel="goodput (successful answers / s)", ylabel=f"{latency.removesuffix('_ms')} latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _load_label(row: Any) -> str:
    concurrency, rate = row.get("concurrency"), row.get("rate_rps")
    if concurrency is not None and concurrency == concurrency:  # not NaN
        return f"c={int(concurrency)}"
    if rate is not None and rate == rate:
        return f"{rate:.4g}/s"
    return str(row.get("load", ""))


def plot_batch_sizes(
    results: LoadResult | Mapping[str, LoadResult], *, title: str = "Batch size of each request's model call"
) -> Figure:
    """Each successful request's batch size (``X-Batch-Size``) against its intended send time, on a
    log scale: a batch that grows without a cap shows as a climbing band, a cap as a ceiling."""
    fig, ax = _figure()
    ax.set_title(title)
    for label, result in _as_mapping(results).items():
        df = result.frame().dropna(subset=["batch_size"])
        ax.scatter(df.intended_s, df.batch_size, s=6, alpha=0.6, label=f"{label} (largest {int(df.batch_size.max())})"
                   if len(df) else label)  # fmt: skip
    ax.set(xlabel="intended send time (s)", ylabel="inputs in the request's batch")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def plot_generation(
    table: pd.DataFrame,
    *,
    by: str = "policy",
    x: str = "clients",
    title: str = "Streamed generation: tokens per second and time to first token",
) -> Figure:
    """Two panels from rows of ``StreamResult.summary()`` (with a ``by`` and an ``x`` column): tokens/s
    against ``x``, and the median and p99 time to first token against ``x`` (log scale), one line per group."""
    import matplotlib.pyplot as plt

    fig, (rate, first) = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
    plt.close(fig)
    fig.suptitle(title)
    for name, group in table.groupby(by, sort=False):
        group = group.sort_values(x)
        (line,) = rate.plot(group[x], group["tokens_per_s"], marker="o", label=str(name))
        first.plot(group[x], group["ttft_p50_ms"], marker="o", color=line.get_color(), label=f"{name} p50")
        first.plot(group[x], group["ttft_p99_ms"], marker="x", linestyle=":", color=line.get_color(), label="p99")
    rate.set(xlabel=f"concurrent {x}", ylabel="tokens generated / s", title="Throughput")
    first.set(
        xlabel=f"concurrent {x}", ylabel="time to first token (ms)", title="Time to first token (p50, p99 dotted)"
    )
    first.set_yscale("log")
    for ax in (rate, first):
        ax.set_xticks(sorted(set(table[x])))
        ax.grid(alpha=0.3)
    rate.legend(fontsize="small")
    return fig

"""A load run's display in a notebook: its summary in a few lines, and its warnings in plain sight."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import LoadResult

__all__ = ["result_html"]

_TH = "text-align:left;padding:1px 10px 1px 0;color:#555;font-weight:600"
_TD = "text-align:left;padding:1px 10px 1px 0;font-variant-numeric:tabular-nums"


def result_html(result: LoadResult) -> str:
    """The run's load, statuses, rates and latencies, and each of ``result.warnings``."""
    s = result.summary
    statuses = ", ".join(f"{status or 'no answer'}: {n}" for status, n in s.by_status.items())
    latency = (
        f"p50 {s.p50_ms:.1f}, p90 {s.p90_ms:.1f}, p99 {s.p99_ms:.1f}, max {s.max_ms:.1f} ms"
        if s.p50_ms is not None and s.p90_ms is not None and s.p99_ms is not None and s.max_ms is not None
        else "- (no successful request)"
    )
    where = "a thread of this process" if result.in_process else "a separate process"
    rows = [
        ("load", f"{result.load.describe()} against {result.url}, sent from {where}"),
        ("requests", f"{s.requests} sent, {s.answered} answered ({statuses})"),
        ("rates", f"{s.goodput_rps:.1f} successful/s, {s.throughput_rps:.1f} answered/s over {s.wall_s:.2f} s"),
        ("latency of 200s", latency),
        ("mean batch", "-" if s.mean_batch_size is None else f"{s.mean_batch_size:.2f} inputs"),
    ]
    body = "".join(
        f"<tr><th style='{_TH}'>{html.escape(k)}</th><td style='{_TD}'>{html.escape(v)}</td></tr>" for k, v in rows
    )
    warnings = "".join(f"<div style='color:#b35c00'>&#9888; {html.escape(w)}</div>" for w in result.warnings)
    return (
        "<table style='border-collapse:collapse;font-size:12px'><caption style='text-align:left;font-weight:600'>"
        f"LoadResult</caption>{body}</table>{warnings}<div style='color:#777;font-size:11px'>result.summary: these "
        "figures; result.frame(): one row per request</div>"
    )

"""A load run's display in a notebook: its summary in a few lines, and its warnings in plain sight."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from .._live.stats_view import table_html

if TYPE_CHECKING:
    from .results import LoadResult

__all__ = ["result_html"]


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
    if result.generator_cpu_s is not None and s.requests:
        per_request_us = result.generator_cpu_s / s.requests * 1e6
        rows.append(("generator CPU", f"{result.generator_cpu_s:.2f} s, {per_request_us:.0f} µs per request"))
    warnings = "".join(f"<div style='color:#b35c00'>&#9888; {html.escape(w)}</div>" for w in result.warnings)
    note = "result.summary: these figures; result.frame(): one row per request"
    return table_html("LoadResult", rows, note, after=warnings)

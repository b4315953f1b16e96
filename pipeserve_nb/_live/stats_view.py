"""Compact displays of a server's state for a notebook: a ``/stats`` answer, and a handle's summary.

``StatsView`` is the ``dict`` that ``server.stats()`` returns (every key as ``/stats`` has it),
displayed as a few lines of the numbers a reader looks for instead of a 40-line dict.
``handle_html`` is a server handle's display: what it serves, where, its live numbers, and
how to watch and stop it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .readings import status_groups

__all__ = ["StatsView", "handle_html", "table_html"]

_TABLE = "border-collapse:collapse;font-size:12px"
_TH = "text-align:left;padding:1px 10px 1px 0;color:#555;font-weight:600"
_TD = "text-align:left;padding:1px 10px 1px 0;font-variant-numeric:tabular-nums"


class StatsView(dict[str, Any]):
    """A ``/stats`` answer: a plain ``dict`` (index it as the JSON), shown compactly in a notebook."""

    def lines(self) -> list[tuple[str, str]]:
        """``(label, value)`` of the figures a reader looks for first."""
        latency, wait = self.get("latency_ms", {}), self.get("queue_wait_ms", {})
        groups = status_groups(self.get("requests_by_status", {}))
        dropped = {k: v for k, v in self.get("dropped_before_inference", {}).items() if v}
        cost = self.get("call_cost") or {}
        inputs = sum(int(size) * n for size, n in self.get("batch_size_histogram", {}).items())
        out = [
            ("model", " · ".join(str(x) for x in (self.get("model"), self.get("device"), self.get("dtype")) if x)),
            ("state", f"{self.get('state')}, {self.get('queue_depth', 0)} waiting"),
            ("requests", f"{self.get('requests', 0)} (" + ", ".join(f"{k}: {v}" for k, v in groups.items() if v) + ")"),
            ("inputs run", f"{inputs} (a request may carry several texts)"),
            ("latency (200s)", _percentiles(latency)),
            ("queue wait", _percentiles(wait)),
            (
                "batches",
                f"{self.get('batches', 0)} model calls, {_num(self.get('mean_batch_size'))} inputs each on average, "
                f"padding efficiency {_share(self.get('padding_efficiency'))}",
            ),
        ]
        if dropped:
            out.append(("dropped before inference", ", ".join(f"{k}: {v}" for k, v in dropped.items())))
        if cost.get("fixed_ms") is not None:
            line = f"{cost['fixed_ms']:.1f} ms + {cost.get('per_token_ms', 0):.3f} ms per padded token"
            if cost.get("return_ms") is not None:  # what the default policy's wait for returns weighs against it
                line += f"; clients all back {cost['return_ms']:.1f} ms after their batch was answered"
            out.append(("call cost", line))
        return out

    def _repr_html_(self) -> str:
        note = "a dict: index it as /stats' JSON, e.g. stats['requests_by_status']"
        return table_html("server.stats()", self.lines(), note)


def handle_html(
    kind: str, rows: Sequence[tuple[str, str]], stats: StatsView | None, hints: Sequence[str], after: str = ""
) -> str:
    """A handle's display: its ``rows`` (name, state, url, ...), the live figures of ``stats`` when
    the server answered, ``after`` (HTML: the browser link), and ``hints`` (how to watch and stop it)."""
    lines = list(rows)
    if stats is not None:
        live = dict(stats.lines())  # the server's own state ("running, 2 waiting") replaces the handle's one word
        lines = [(k, live.pop(k) if k == "state" and k in live else v) for k, v in lines]
        lines += [(k, v) for k, v in live.items() if k not in ("model", "state")]
    return table_html(kind, lines, " · ".join(hints), after)


def table_html(caption: str, lines: Sequence[tuple[str, str]], note: str, after: str = "") -> str:
    """A compact two-column table of ``(label, value)`` lines (both escaped), then ``after`` (HTML,
    inserted as it is) and a muted ``note``: the one look of pipeserve's notebook displays."""
    body = "".join(
        f"<tr><th style='{_TH}'>{html.escape(k)}</th><td style='{_TD}'>{html.escape(v)}</td></tr>" for k, v in lines
    )
    return (
        f"<table style='{_TABLE}'><caption style='text-align:left;font-weight:600'>{html.escape(caption)}</caption>"
        f"{body}</table>{after}" + (f"<div style='color:#777;font-size:11px'>{html.escape(note)}</div>" if note else "")
    )


def _percentiles(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "-"
    return f"p50 {_num(summary.get('p50'))} ms, p99 {_num(summary.get('p99'))} ms (last {summary['count']})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"

"""The panel's small charts, as inline SVG: a trend line and a bar chart, each with a title.

Plain SVG in the HTML (no script, no extension, no font files), so it renders wherever a
notebook shows HTML: JupyterLab, Notebook 7, VS Code, Colab, and a static HTML export.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["trend", "bars"]

WIDTH, HEIGHT = 230, 70
_TOP, _BOTTOM, _LEFT = 16, 12, 4
_LINE, _FILL, _INK, _MUTED = "#1f77b4", "#d8e6f3", "#222", "#777"


def trend(title: str, values: Sequence[float | None], span_s: float, unit: str = "") -> str:
    """A line of ``values`` (oldest first, evenly spaced over ``span_s``; None is a gap),
    scaled from 0 to its largest value, titled with the latest value."""
    known = [v for v in values if v is not None]
    top = max(known, default=0.0) or 1.0
    last = next((v for v in reversed(values) if v is not None), None)
    label = f"{title}: {_number(last)}{unit}" if last is not None else f"{title}: -"
    plot_w, plot_h = WIDTH - 2 * _LEFT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(values) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
            continue
        y = _TOP + plot_h * (1 - v / top)
        segments[-1].append(f"{_LEFT + i * step:.1f},{y:.1f}")
    lines = "".join(
        f"<polyline points='{' '.join(s)}' fill='none' stroke='{_LINE}' stroke-width='1.5'/>"
        for s in segments
        if len(s) > 1
    )
    dots = "".join(_dot(s[0]) for s in segments if len(s) == 1)
    return _svg(
        label,
        f"<rect x='{_LEFT}' y='{_TOP}' width='{plot_w}' height='{plot_h}' fill='#fafafa' stroke='#eee'/>"
        + lines
        + dots
        + _text(_LEFT + plot_w, _TOP + 9, f"max {_number(top)}{unit}", anchor="end", muted=True)
        + _text(_LEFT, HEIGHT - 2, f"-{span_s:.0f} s", muted=True)
        + _text(_LEFT + plot_w, HEIGHT - 2, "now", anchor="end", muted=True),
    )


def bars(title: str, counts: Sequence[tuple[str, int]]) -> str:
    """One bar per ``(label, count)``, scaled to the largest count, each count above its bar."""
    plot_w, plot_h = WIDTH - 2 * _LEFT, HEIGHT - _TOP - _BOTTOM - 10
    top = max((c for _, c in counts), default=0) or 1
    width = plot_w / max(len(counts), 1)
    body = []
    for i, (label, count) in enumerate(counts):
        h = plot_h * count / top
        x = _LEFT + i * width
        body.append(
            f"<rect x='{x + 1:.1f}' y='{_TOP + 10 + plot_h - h:.1f}' width='{width - 2:.1f}' height='{h:.1f}' "
            f"fill='{_LINE}'/>"
        )
        if count:
            body.append(_text(x + width / 2, _TOP + 8 + plot_h - h, str(count), anchor="middle", muted=True))
        body.append(_text(x + width / 2, HEIGHT - 2, label, anchor="middle", muted=True))
    if not counts:
        body.append(_text(WIDTH / 2, HEIGHT / 2 + 4, "no model calls", anchor="middle", muted=True))
    return _svg(title, "".join(body))


def _svg(title: str, body: str) -> str:
    heading = _text(_LEFT, 11, title, bold=True)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='{html.escape(title, quote=True)}'>"
        f"<title>{html.escape(title)}</title>{heading}{body}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", muted: bool = False, bold: bool = False) -> str:
    weight = " font-weight='600'" if bold else ""
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='10' font-family='sans-serif' text-anchor='{anchor}' "
        f"fill='{_MUTED if muted else _INK}'{weight}>{html.escape(text)}</text>"
    )


def _dot(point: str) -> str:
    x, y = point.split(",")
    return f"<circle cx='{x}' cy='{y}' r='1.5' fill='{_LINE}'/>"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"

"""The live view's panel: one HTML fragment drawn from a server's readings.

A pure function of the readings (``render``), so a test can check what a reader sees.
Every number sits in an element with a ``data-metric`` attribute, for the browser test
and for anyone who scrapes the page. Styles are inline and colours explicit, so the panel
reads the same in a light or dark notebook theme and in a static export.
"""

from __future__ import annotations

import html

from .charts import bars, trend
from .readings import GenerationNumbers, History, Numbers, numbers, trends

__all__ = ["render"]

_STATE_COLOURS = {
    "running": "#2e7d32",
    "draining": "#ef6c00",
    "stopped": "#616161",
    "final": "#616161",
    "unreachable": "#c62828",
}


def render(
    history: History, *, name: str, url: str, note: str = "", final: str | None = None, state: str | None = None
) -> str:
    """The panel for the latest reading in ``history``; ``note`` is a line under the title
    (a load's progress), ``final`` says why the panel no longer updates (None while it does),
    ``state`` is the server's state where the panel knows better than its last reading
    (``"stopped"``, ``"unreachable"``)."""
    latest = history.latest
    if latest is None:
        body = "<div>waiting for the first reading of /stats ...</div>"
        return _frame(name, state or "starting", body, url, note, final)
    models = latest.stats.get("models") or {}
    if len(models) > 1:  # a server with several models: a panel of each, side by side
        panels = [
            f"<div style='flex:1 1 420px;min-width:0'><div style='font-weight:600;margin:4px 0'>"
            f"{html.escape(model)}</div>{_body(history.of_model(model))}</div>"
            for model in models
        ]
        body = f"<div style='display:flex;flex-wrap:wrap;gap:12px'>{''.join(panels)}</div>"
        return _frame(name, state or str(latest.stats.get("state", "?")), body, url, note, final)
    return _frame(name, state or numbers(history).state, _body(history), url, note, final)


def _body(history: History) -> str:
    """The numbers and charts of one model's readings."""
    n = numbers(history)
    span = history.readings[-1].at_s - history.readings[0].at_s
    series = trends(history)
    if n.generation is not None:  # a chat model: its streams are what a reader watches
        return (
            _model_line(n)
            + _generation_cells(n.generation, n.by_status)
            + _generation_charts(n.generation, series, span)
        )
    charts = "".join(
        [
            trend("answered (200) per s", series["ok_per_s"], span),
            trend("waiting (queue + pool)", series["queue_depth"], span),
            trend(f"p99 latency, last {n.window_s:.0f} s", series["p99_ms"], span, " ms"),
            bars(f"batch sizes, last {n.window_s:.0f} s (calls)", n.batch_sizes),
        ]
    )
    return _model_line(n) + _cells(n) + f"<div style='display:flex;flex-wrap:wrap;gap:6px'>{charts}</div>"


def _model_line(n: Numbers) -> str:
    parts = [n.model] + [p for p in (n.device, n.dtype) if p]
    return f"<div style='color:#555;margin:2px 0 6px'>{html.escape(' · '.join(parts))}</div>"


def _cells(n: Numbers) -> str:
    cells = [
        ("answered / s", "ok_per_s", _fixed(n.ok_per_s, 1)),
        ("all answers / s", "answers_per_s", _fixed(n.answers_per_s, 1)),
        ("waiting", "queue_depth", str(n.queue_depth)),
        ("batch now", "running_batch", "-" if n.running_batch is None else str(n.running_batch)),
        ("padding eff.", "padding_efficiency", _share(n.padding_efficiency)),
        ("p50 ms", "p50_ms", _fixed(n.p50_ms, 1)),
        ("p99 ms", "p99_ms", _fixed(n.p99_ms, 1)),
        ("model busy", "model_busy_share", _share(n.model_busy_share)),
    ]
    cells += [(f"{group}", f"status_{group}", str(count)) for group, count in n.by_status.items()]
    return _table(cells)


def _table(cells: list[tuple[str, str, str]]) -> str:
    tds = "".join(
        f"<td style='padding:2px 8px 2px 0;vertical-align:top'><div style='color:#777;font-size:10px'>"
        f"{html.escape(label)}</div><div style='font-size:15px;font-variant-numeric:tabular-nums' "
        f"data-metric='{key}'>{html.escape(value)}</div></td>"
        for label, key, value in cells
    )
    return f"<table style='border-collapse:collapse;margin-bottom:6px'><tr>{tds}</tr></table>"


def _generation_cells(g: GenerationNumbers, by_status: dict[str, int]) -> str:
    cells = [
        ("tokens / s", "tokens_per_s", _fixed(g.tokens_per_s, 1)),
        ("streams", "streams", str(g.running)),
        ("waiting", "streams_waiting", str(g.waiting)),
        ("first token p50 ms", "first_token_p50_ms", _fixed(g.first_token_p50_ms, 0)),
        ("first token p99 ms", "first_token_p99_ms", _fixed(g.first_token_p99_ms, 0)),
        ("between tokens p50 ms", "inter_token_p50_ms", _fixed(g.inter_token_p50_ms, 1)),
    ]
    cells += [(f"{group}", f"status_{group}", str(count)) for group, count in by_status.items()]
    return _table(cells)


def _generation_charts(g: GenerationNumbers, series: dict[str, list[float | None]], span: float) -> str:
    charts = "".join(
        [
            trend("tokens generated per s", series["tokens_per_s"], span),
            trend("streams in the model's steps", series["streams"], span),
            trend("streams waiting for a slot", series["streams_waiting"], span),
            bars("how streams ended", _ends(g.ended)),
        ]
    )
    return f"<div style='display:flex;flex-wrap:wrap;gap:6px'>{charts}</div>"


_END_LABELS = {"client_gone": "left", "expired": "late", "stopping": "halted"}
"""Short labels for the reasons a stream ended (a bar is a few letters wide): the client left, its deadline
passed, the server stopped."""


def _ends(ended: dict[str, int]) -> list[tuple[str, int]]:
    """The bars of how streams ended: the model's two ends always, the others once they happened."""
    shown = [(r, n) for r, n in ended.items() if r in ("stop", "length") or n]
    return [(_END_LABELS.get(reason, reason), n) for reason, n in shown]


def _frame(name: str, state: str, body: str, url: str, note: str, final: str | None) -> str:
    if final and state not in ("stopped", "unreachable"):
        state = "final"  # a last reading: the server may still run, but this panel no longer follows it
    colour = _STATE_COLOURS.get(state, "#1565c0")
    badge = (
        f"<span data-metric='state' style='background:{colour};color:#fff;border-radius:3px;padding:0 5px;"
        f"font-size:11px'>{html.escape(state)}</span>"
    )
    note_html = f"<div data-metric='note' style='margin:2px 0'>{html.escape(note)}</div>" if note else ""
    footer = (
        f"final state: {final}"
        if final
        else "live: updates about twice a second, stops when the server stops (dashboard.stop() stops it earlier)"
    )
    return (
        f"<div class='pipeserve-dashboard' data-server='{html.escape(name, quote=True)}' "
        f"data-live='{'no' if final else 'yes'}' style='font-family:sans-serif;font-size:12px;background:#fff;"
        "color:#222;border:1px solid #ddd;border-radius:6px;padding:8px 10px;max-width:960px'>"
        f"<div><b>{html.escape(name)}</b> {badge} <span style='color:#777'>{html.escape(url)}</span></div>"
        f"{note_html}{body}"
        f"<div data-metric='footer' style='color:#777;font-size:10px;margin-top:4px'>{html.escape(footer)}</div>"
        "</div>"
    )


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"

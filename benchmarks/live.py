"""What the live view costs the server it watches (issue 14), measured for ``make bench``.

A dashboard reads ``/stats`` about twice a second and renders its panel on a thread of the
process that also runs the server (the kernel, in a notebook). Measured on one default
server: the median latency at concurrency 1 with no panel and with one updating (started
without a display, so the reading and the rendering happen and only the kernel's message send
does not), in rounds that alternate which comes first (off-on, on-off, ...), so that the
machine's drift falls on both alike; and the two
costs themselves, timed alone: one ``/stats`` answer, one rendering of the panel.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

import pipeserve_nb as ps

from .lineup import DEFAULT_POLICY, SERVER_CONFIG

ROUNDS = 4
"""An even number: as many rounds start with the panel as without it."""


def measure_live_cost(texts: list[str], requests: int, quick: bool) -> dict[str, Any]:
    """c=1 median latency without and with a panel updating, per round; and each update's parts."""
    rounds = 1 if quick else ROUNDS
    off: list[float] = []
    on: list[float] = []
    reads_per_s: list[float] = []
    with ps.serve(policy=DEFAULT_POLICY, config=SERVER_CONFIG, name="live-cost") as server:
        _c1_p50(server, texts, 20)  # warm up
        for i in range(rounds):
            if i % 2 == 0:
                off.append(_c1_p50(server, texts, requests))
            panel = server.dashboard().start()
            started, reads = time.monotonic(), panel.reads
            on.append(_c1_p50(server, texts, requests))
            reads_per_s.append((panel.reads - reads) / (time.monotonic() - started))
            panel.stop()
            if i % 2 == 1:
                off.append(_c1_p50(server, texts, requests))
        html_ms = _median_ms(lambda: panel.html(), 20 if quick else 200)
        with httpx.Client(trust_env=False) as client:
            stats_ms = _median_ms(lambda: client.get(f"{server.url}/stats").raise_for_status(), 20 if quick else 200)
    return {
        "off_p50_ms": off,
        "on_p50_ms": on,
        "reads_per_s": statistics.mean(reads_per_s),
        "render_ms": html_ms,
        "stats_request_ms": stats_ms,
    }


def live_section(live: dict[str, Any]) -> list[str]:
    """The report's section on the live view's cost."""
    off, on = live["off_p50_ms"], live["on_p50_ms"]
    change = statistics.median(on) - statistics.median(off)
    spread = max(off) - min(off)
    if change <= spread:
        verdict = f"no measurable slowdown (the runs without a panel spread over {spread:.2f} ms)"
    else:
        verdict = f"a slowdown larger than the spread of the runs without a panel ({spread:.2f} ms)"
    rows = [f"| {i + 1} | {a:.2f} | {b:.2f} |" for i, (a, b) in enumerate(zip(off, on, strict=True))]
    return [
        "",
        "## The live view's cost (`server.dashboard()`)",
        "",
        "The default server at concurrency 1, in rounds without and with a panel updating in the "
        f"server's process ({live['reads_per_s']:.1f} readings of `/stats` per second, each rendered), the "
        "order alternating between rounds (`benchmarks/live.py`):",
        "",
        "| round | median latency, no panel (ms) | median latency, panel updating (ms) |",
        "|---:|---:|---:|",
        *rows,
        "",
        f"Change of the median: **{change:+.2f} ms**, {verdict}. Each update costs the server one `/stats` answer "
        f"({live['stats_request_ms']:.2f} ms round trip, median) and the kernel one rendering of the panel "
        f"({live['render_ms']:.2f} ms of Python, on the panel's own thread).",
    ]


def _c1_p50(server: ps.ServerHandle, texts: list[str], requests: int) -> float:
    result = ps.run_load(server, ps.ClosedLoop(concurrency=1, requests=requests), texts=texts, progress=False)
    p50 = result.summary.p50_ms
    assert p50 is not None and result.summary.ok == requests, result.summary
    return float(p50)


def _median_ms(work: Any, times: int) -> float:
    took = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)

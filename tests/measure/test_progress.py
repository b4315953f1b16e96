"""A load's progress bar, as a notebook shows it (a real kernel's widget messages): it ends at
its last answer, with the statuses, green only when every answer was a 200."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..kernel import Kernel, Message, started_kernel

pytestmark = [pytest.mark.gate, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with started_kernel("import pipeserve_nb as p\nserver = p.serve(name='bars')") as k:
        yield k


def widget_states(messages: list[Message]) -> list[dict[str, Any]]:
    """Every widget state change the kernel sent, in order."""
    return [m["content"]["data"]["state"] for m in messages if m["msg_type"] in ("comm_open", "comm_msg")]


def test_a_run_where_every_request_succeeded_ends_full_and_green(kernel: Kernel) -> None:
    # a run longer than the bar's 1 s delay, with a known total
    states = widget_states(kernel.run("p.run_load(server, p.ClosedLoop(concurrency=2, requests=150))"))
    values = [s["value"] for s in states if isinstance(s.get("value"), float)]
    texts = [s["value"] for s in states if isinstance(s.get("value"), str)]
    assert values and values[-1] == 150.0  # closed after its last update, not before
    assert any("200:\u2007150" in t or "200: 150" in t for t in texts)
    assert {"bar_style": "success"} in states and not [s for s in states if s.get("bar_color")]


def test_a_run_where_every_request_failed_ends_red(kernel: Kernel) -> None:
    states = widget_states(kernel.run("p.run_load('http://127.0.0.1:9', p.ClosedLoop(concurrency=1, duration_s=1.5))"))
    assert {"bar_color": "#c62828"} in states  # nothing listens on port 9: every request got status 0


def test_a_run_with_some_refusals_ends_orange(kernel: Kernel) -> None:
    kernel.run("small = p.serve(name='small', config=p.ServerConfig(max_queue=1))")
    states = widget_states(
        kernel.run("r = p.run_load(small, p.OpenLoop(rate_rps=400, duration_s=1.5), in_process=True)")
    )
    assert int(kernel.stdout("print(r.summary.ok)")) > 0
    refused = [t for s in states if isinstance(t := s.get("value"), str) and "503" in t]
    assert refused and {"bar_color": "#ef6c00"} in states

"""A load's progress line, as a notebook shows it (a real kernel's display messages): plain HTML with a
text twin, updated in place, that ends at its last answer with the statuses, green only when every
answer was a 200; no widget, so a saved or exported notebook shows the same last line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipeserve_nb._measure.progress import NONE_OK, OK, SOME_FAILED

from ..kernel import Kernel, Message, started_kernel

pytestmark = [pytest.mark.gate, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with started_kernel("import pipeserve_nb as p\nserver = p.serve(name='bars')") as k:
        yield k


def drawn(messages: list[Message]) -> list[dict[str, Any]]:
    """Every state of the progress line the kernel sent, in order (what the notebook keeps is the last)."""
    assert not [m for m in messages if m["msg_type"].startswith("comm_")]  # no widget anywhere
    return [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and "pipeserve-progress" in m["content"]["data"].get("text/html", "")
    ]


def test_a_run_where_every_request_succeeded_ends_full_and_green(kernel: Kernel) -> None:
    # a run longer than the line's 1 s delay, with a known total
    states = drawn(kernel.run("p.run_load(server, p.ClosedLoop(concurrency=2, requests=150))"))
    assert len(states) >= 2  # drawn while it ran, then its last state
    last = states[-1]
    assert "closed c=2: 150/150 done in " in last["text/plain"] and last["text/plain"].endswith("(200: 150)")
    assert f"data-colour='{OK}'" in last["text/html"] and "width:100%" in last["text/html"]
    assert all("(200" not in s["text/plain"] for s in states[:-1])  # the statuses come with the end only


def test_a_run_where_every_request_failed_ends_red(kernel: Kernel) -> None:
    states = drawn(kernel.run("p.run_load('http://127.0.0.1:9', p.ClosedLoop(concurrency=1, duration_s=1.5))"))
    assert f"data-colour='{NONE_OK}'" in states[-1]["text/html"]  # nothing listens on port 9: status 0 each
    assert "(no answer: " in states[-1]["text/plain"] and "200" not in states[-1]["text/plain"]


def test_a_run_with_some_refusals_ends_orange(kernel: Kernel) -> None:
    kernel.run("small = p.serve(name='small', config=p.ServerConfig(max_queue=1))")
    states = drawn(kernel.run("r = p.run_load(small, p.OpenLoop(rate_rps=400, duration_s=1.5), in_process=True)"))
    assert int(kernel.stdout("print(r.summary.ok)")) > 0
    assert "503: " in states[-1]["text/plain"] and f"data-colour='{SOME_FAILED}'" in states[-1]["text/html"]


def test_a_short_run_draws_nothing(kernel: Kernel) -> None:
    assert drawn(kernel.run("p.run_load(server, p.ClosedLoop(concurrency=1, requests=2))")) == []

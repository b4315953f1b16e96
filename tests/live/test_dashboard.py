"""The live panel in a real Jupyter kernel, read from the kernel's own messages (what every
frontend receives): it updates while a load runs in another cell, agrees with ``/stats``, ends
with the server, and never stacks updaters when its cell is re-run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from pipeserve_nb import serve
from pipeserve_nb._live.dashboard import Dashboard

from ..kernel import Kernel, Message, started_kernel

pytestmark = [pytest.mark.gate, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with started_kernel("import pipeserve_nb as p, threading\nserver = p.serve(name='live')") as k:
        yield k


def next_panel(kernel: Kernel, display_id: str, until: Any) -> dict[str, str]:
    """Wait for a background update of panel ``display_id`` whose numbers satisfy ``until``."""
    message = kernel.wait_for(lambda m: any(until(n) for n in panels([m], display_id)))
    return panels([message], display_id)[-1]


def panels(messages: list[Message], display_id: str | None = None) -> list[dict[str, str]]:
    """The numbers of each panel drawn in ``messages`` (optionally of one display), in order, with
    its ``display_id``, ``server`` and ``kind`` (``display_data`` when shown, then updates)."""
    found = []
    for m in messages:
        if m["msg_type"] not in ("display_data", "update_display_data"):
            continue
        html = m["content"]["data"].get("text/html", "")
        if "pipeserve-dashboard" not in html or display_id not in (None, m["content"]["transient"]["display_id"]):
            continue
        numbers = dict(re.findall(r"data-metric='(\w+)'[^>]*>([^<]*)<", html))
        numbers["live"] = re.search(r"data-live='(\w+)'", html).group(1)  # type: ignore[union-attr]
        numbers["display_id"] = m["content"]["transient"]["display_id"]
        numbers["server"] = re.search(r"data-server='([^']*)'", html).group(1)  # type: ignore[union-attr]
        numbers["kind"] = m["msg_type"]
        found.append(numbers)
    return found


def shown(messages: list[Message]) -> str:
    """The display id of the one panel a cell showed (other panels' updates may arrive meanwhile)."""
    (new,) = [n["display_id"] for n in panels(messages) if n["kind"] == "display_data"]
    return new


def dashboard_threads(kernel: Kernel) -> list[str]:
    out = kernel.stdout("print([t.name for t in threading.enumerate() if t.name.startswith('pipeserve-dashboard')])")
    return re.findall(r"'([^']+)'", out)


def test_the_panel_updates_during_a_load_in_another_cell_and_agrees_with_stats(kernel: Kernel) -> None:
    first = panels(kernel.run("server.dashboard()"))
    assert len(first) == 1 and first[0]["live"] == "yes"
    display_id = first[0]["display_id"]
    during = kernel.run("r = p.run_load(server, p.ClosedLoop(concurrency=8, requests=300), progress=False)")
    counts = [int(n["status_200"]) for n in panels(during, display_id) if "status_200" in n]
    assert len(set(counts)) >= 2 and counts == sorted(counts), counts  # it moved while the load ran
    sent = int(kernel.stdout("print(server.stats()['requests_by_status']['200'])"))
    assert sent >= 300
    assert int(kernel.stdout("print(r.summary.ok)")) == 300
    # the updates go on after the cell: one of them shows what /stats says
    next_panel(kernel, display_id, lambda n: n.get("status_200") == str(sent))


def test_rerunning_the_cell_leaves_one_updater_and_marks_the_old_panel(kernel: Kernel) -> None:
    first = shown(kernel.run("server.dashboard()"))
    messages = kernel.run("server.dashboard()") + kernel.run("server.dashboard()")
    assert dashboard_threads(kernel) == ["pipeserve-dashboard-live"]
    old = panels(messages, first)
    assert old and old[-1]["live"] == "no" and "a newer panel" in old[-1]["footer"]


def test_stopping_the_server_draws_the_final_state_and_ends_the_updater(kernel: Kernel) -> None:
    display_id = shown(kernel.run("s2 = p.serve(name='live-2')\nd2 = s2.dashboard()\nd2"))
    kernel.run("p.run_load(s2, p.ClosedLoop(concurrency=2, requests=20), progress=False)")
    final = panels(kernel.run("s2.stop()"), display_id)[-1]  # stop() returns after the panel's last drawing
    assert final["live"] == "no" and final["state"] == "stopped" and final["status_200"] == "20"
    assert "the server stopped" in final["footer"]
    assert "pipeserve-dashboard-live-2" not in dashboard_threads(kernel)


def test_a_load_can_show_the_panel_instead_of_a_bar(kernel: Kernel) -> None:
    messages = kernel.run("p.run_load(server, p.ClosedLoop(concurrency=4, requests=120), dashboard=True)")
    own = panels(messages, shown(messages))
    assert "of 120 answered" in own[0]["note"] and own[-1]["live"] == "no"
    assert "120 of 120 answered (200: 120)" in own[-1]["note"]
    assert not any("tqdm" in str(m["content"]) for m in messages if m["msg_type"] == "display_data")
    assert dashboard_threads(kernel) == ["pipeserve-dashboard-live"]  # the cell's own panel from before, not the load's


def test_outside_a_notebook_the_panel_says_where_it_works(embedder: Any) -> None:
    with serve(embedder, name="no-kernel") as server:
        panel = server.dashboard()
        with pytest.raises(RuntimeError, match="notebook"):
            panel.show()
        assert not panel.live and isinstance(panel, Dashboard)


def test_the_panel_of_a_server_behind_a_token_reads_its_numbers(kernel: Kernel) -> None:
    config = "p.ServerConfig(auth_token='a-secret-of-enough-length-42')"
    display_id = shown(kernel.run(f"s3 = p.serve(name='live-auth', config={config})\ns3.dashboard()"))
    kernel.run("s3.query('hello')")
    next_panel(kernel, display_id, lambda n: n.get("status_200") == "1")  # /stats answered it with the token
    kernel.run("s3.stop()")


def test_a_sweep_shows_one_panel_per_server_across_its_loads(kernel: Kernel) -> None:
    code = (
        "frame = p.sweep({'cap 8': p.BatchPolicy(max_batch_size=8)},"
        " [p.ClosedLoop(concurrency=2, requests=20), p.ClosedLoop(concurrency=4, requests=20)],"
        " warmup_requests=0, dashboard=True)"
    )
    messages = kernel.run(code)
    own = panels(messages, shown(messages))
    notes = [n["note"] for n in own]
    assert "sweep: load 1 of 2 (closed c=2)" in notes and "sweep: load 2 of 2 (closed c=4)" in notes
    assert own[-1]["live"] == "no" and own[-1]["status_200"] == "40" and "all 2 loads ran" in own[-1]["footer"]

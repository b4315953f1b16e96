"""The compact displays a notebook shows: ``server.stats()``, a server handle, a load's result."""

from __future__ import annotations

import httpx

from pipeserve_nb import ClosedLoop, LoadedModel, run_load, serve


def test_stats_is_the_json_as_a_dict_shown_in_a_few_lines(embedder: LoadedModel) -> None:
    with serve(embedder, name="views") as server:
        for text in ("one", "two", "three", "four", "five"):  # enough calls for the call cost to be fitted
            server.query(text)
        assert httpx.post(server.url, json={"inputs": []}).status_code == 400
        stats = server.stats()
        raw = httpx.get(f"{server.url}/stats").json()
    assert isinstance(stats, dict) and set(stats) == set(raw) and stats["requests_by_status"] == {"200": 5, "400": 1}
    html = stats._repr_html_()
    assert html.count("<tr>") <= 10  # a few lines, not the 40-line dict
    assert "6 (200: 5, 4xx: 1)" in html and "all-MiniLM-L6-v2" in html and "p99" in html
    # requests and batches count different things: what each counts is said beside the number
    assert "<td style" in html and ">5 (a request may carry several texts)<" in html
    assert f">{stats['batches']} model calls, " in html
    cost = stats["call_cost"]  # one client, each request sent on the last answer: its return was timed
    assert f"; clients all back {cost['return_ms']:.1f} ms after their batch was answered<" in html


def test_a_running_handle_shows_its_live_numbers_and_how_to_stop_it(embedder: LoadedModel) -> None:
    with serve(embedder, name="views") as server:
        server.query("hello")
        running = server._repr_html_()
    stopped = server._repr_html_()
    assert "running" in running and server.url in running and "1 (200: 1)" in running
    assert running.count(">state<") == 1 and "running, 0 waiting" in running  # one state row: the server's
    assert "server.stop()" in running and "server.dashboard()" in running
    assert "stopped" in stopped and "server.stop()" not in stopped


def test_a_load_result_shows_its_statuses_and_its_warnings() -> None:
    result = run_load("http://127.0.0.1:9", ClosedLoop(concurrency=1, requests=3), in_process=True, progress=False)
    html = result._repr_html_()
    assert "3 sent, 0 answered (no answer: 3)" in html
    assert result.warnings and all(w in html for w in result.warnings)  # warnings in plain sight
    assert "no successful request" in html

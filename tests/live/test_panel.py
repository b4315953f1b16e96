"""What the panel shows, from a real server's ``/stats`` readings: its numbers are the server's,
its rates the difference of counters over time, its text escaped."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx

from pipeserve_nb import BatchPolicy, LoadedModel, serve
from pipeserve_nb._live.panel import render
from pipeserve_nb._live.readings import History, Reading, numbers, size_buckets, status_groups


def shown(html: str) -> dict[str, str]:
    return dict(re.findall(r"data-metric='(\w+)'[^>]*>([^<]*)<", html))


def test_the_panel_shows_the_servers_numbers(embedder: LoadedModel) -> None:
    history = History()
    with serve(embedder, name="<panel & co>", policy=BatchPolicy(max_batch_size=4)) as server:
        history.add(Reading(0.0, server.stats()))
        with ThreadPoolExecutor(8) as pool:
            texts = [f"sentence {i} " + "more " * (i % 5) for i in range(24)]
            assert {r.status_code for r in pool.map(lambda t: httpx.post(server.url, content=t.encode()), texts)} == {
                200
            }
        assert httpx.post(server.url, json={"inputs": []}).status_code == 400
        stats = server.stats()
        history.add(Reading(3.0, stats))
    html = render(history, name=server.name, url=server.url)
    n, on_page = numbers(history), shown(html)
    assert n.ok_per_s == 24 / 3.0 and n.answers_per_s == 25 / 3.0  # counters' growth over the 3 s between readings
    assert on_page["ok_per_s"] == "8.0" and on_page["queue_depth"] == "0" and on_page["running_batch"] == "-"
    assert on_page["status_200"] == "24" and on_page["status_4xx"] == "1" and on_page["status_503"] == "0"
    assert on_page["p99_ms"] == f"{stats['recent']['latency_ms']['p99']:.1f}"
    assert on_page["padding_efficiency"] == f"{stats['recent']['padding_efficiency']:.0%}"
    assert n.batch_sizes == size_buckets(stats["recent"]["batch_size_histogram"])
    assert sum(c for _, c in n.batch_sizes) == stats["batches"] and len(n.batch_sizes) == 3  # 1, 2, ≤4
    assert "&lt;panel &amp; co&gt;" in html and "<panel" not in html  # the name is text, not markup
    assert html.count("<svg") == 4 and html.count("<title>") == 4  # three trends and the batch sizes, titled
    assert on_page["state"] == "running" and "live" in on_page["footer"]
    # a panel that stopped following a server still running (a load ended) is badged final, not running
    ended = shown(render(history, name=server.name, url=server.url, final="the load ended"))
    assert ended["state"] == "final" and ended["footer"] == "final state: the load ended"


def test_the_final_panel_says_why_it_stopped_and_the_servers_state() -> None:
    history = History()
    html = render(history, name="s", url="http://x", final="the server stopped", state="stopped")
    assert shown(html)["state"] == "stopped" and "final state: the server stopped" in html
    assert "data-live='no'" in html


def test_status_groups_and_batch_size_buckets() -> None:
    assert status_groups({"200": 5, "400": 1, "413": 2, "499": 1, "503": 7, "504": 3, "500": 1}) == {
        "200": 5, "4xx": 4, "503": 7, "504": 3, "5xx": 1,
    }  # fmt: skip
    assert size_buckets({"1": 2, "3": 1, "4": 5, "9": 1}) == [("1", 2), ("2", 0), ("≤4", 6), ("≤8", 0), ("≤16", 1)]
    assert size_buckets({}) == []


def test_the_panel_of_a_chat_model_shows_its_streams(smollm2: LoadedModel) -> None:
    history = History()
    question = {"messages": [{"role": "user", "content": "Tell me about Paris."}], "max_tokens": 12}
    with serve(smollm2, name="chat-panel") as server:
        history.add(Reading(0.0, server.stats()))
        with ThreadPoolExecutor(4) as pool:  # a busy machine can take over httpx's default 5 s for four streams
            chats = [
                pool.submit(httpx.post, server.url + "/v1/chat/completions", json=question, timeout=60)
                for _ in range(4)
            ]
            answers = [chat.result() for chat in chats]
        assert {a.status_code for a in answers} == {200}
        stats = server.stats()
        history.add(Reading(2.0, stats))
    on_page, report = shown(render(history, name=server.name, url=server.url)), stats["generation"]
    assert on_page["tokens_per_s"] == f"{report['completion_tokens'] / 2.0:.1f}"  # the counter's growth over 2 s
    assert on_page["streams"] == "0" and on_page["streams_waiting"] == "0" and on_page["status_200"] == "4"
    assert on_page["first_token_p50_ms"] == f"{report['time_to_first_token_ms']['p50']:.0f}"
    assert on_page["inter_token_p50_ms"] == f"{report['inter_token_ms']['p50']:.1f}"
    html = render(history, name=server.name, url=server.url)
    assert html.count("<svg") == 4 and "tokens generated per s" in html and "how streams ended" in html

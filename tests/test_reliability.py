"""``make reliability`` in its quick mode: every bad-input case answered as documented, and
an overload soak at about 3x capacity that loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeserve_nb import ServerConfig

from .helpers import SCRIPT_TIMEOUT_S, run_quick

pytestmark = pytest.mark.gate  # the full gate: subprocesses and long runs


@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_bad_input_table_and_overload_soak(tmp_path: Path) -> None:
    done = run_quick("reliability", tmp_path)
    data = json.loads((tmp_path / "reliability.json").read_text())

    cases = {c["name"]: c for c in data["cases"]}
    assert len(cases) >= 25
    for case in cases.values():
        assert case["observed"] == case["expected"], case
        assert case["next_request"] == 200, case  # the server kept serving
    not_http = cases.pop("control character in a header value: not HTTP, refused by the parser (plain text)")
    assert (not_http["kind"], not_http["message"]) == (None, "Invalid HTTP request received.")
    for case in cases.values():
        if case["expected"] != 200:
            assert case["kind"] and case["message"], case  # everything that is HTTP gets a JSON error
    assert cases["body over the limit, refused before it is read"]["kind"] == "TooLarge"

    for soak in (data["soak"], data["soak_count_only"]):
        assert soak["rate_rps"] >= 3 * data["capacity_first_rps"] - 0.5  # 3x its closed loop (both rounded to 0.1)
        assert soak["capacity_before_rps"] > 0 and soak["capacity_after_rps"] > 0
        assert soak["lost"] == 0 and soak["sent"] == soak["answered"] == soak["server_counted"]
        assert set(soak["by_status"]) <= {"200", "503", "504"}
        assert soak["health_probes"] > 10 and soak["health_not_200"] == 0
        assert soak["queue_depth_after"] == 0
        for split in (soak["split"], soak["split_closed"]):  # where the time went was read, for both loads
            assert 0 < split["model_busy_share"] <= 1.05 and split["items_per_busy_s"] > 0
            assert split["loop_cores"] > 0 and split["model_cores"] > 0 and split["generator_cores"] > 0
        assert soak["rss_peak_mb"] - soak["rss_start_mb"] < 300  # bounded by the queue, not by the load
    timed = data["soak"]
    assert (
        timed["max_queue_wait_s"] == ServerConfig().max_queue_wait_s
        and data["soak_count_only"]["max_queue_wait_s"] is None
    )
    assert timed["by_status"].get("503", 0) > 0 and timed["retry_after_s"]  # it was overloaded, and said when to retry
    assert all(v >= 1 for v in timed["retry_after_s"])
    assert set(data["targets"]) >= {"no 504", "every request answered exactly once"}
    assert data["targets"]["every request answered exactly once"]

    paired = data["paired_rounds"]  # the goodput target's rounds: capacity, a 3x soak, capacity again
    assert len(paired["rounds"]) == 1
    for r in paired["rounds"]:
        assert r["capacity_before_rps"] > 0 and r["capacity_after_rps"] > 0 and r["soak_goodput_rps"] > 0
        assert r["lost"] == 0  # every request answered (whether a 2 s soak refuses depends on the machine's speed)
    assert "goodput >= 0.9 of capacity, median of paired rounds" in data["targets"]

    hung = data["hung_model"]
    assert hung["health_before"] == 200 and hung["health_during"]["http_status"] == 503
    assert hung["health_during"]["status"] == "stuck"
    assert hung["health_during"]["reason"].startswith("a model call has run for")
    assert (
        hung["request_status"] == 504 and hung["stop_warning"] and "still inside a model call" in hung["stop_warning"]
    )
    assert hung["request_status_when_the_call_returns"] == 200
    assert (tmp_path / "reliability.md").read_text() in done.stdout

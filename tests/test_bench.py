"""``make bench`` in its quick smoke mode: it runs end to end and writes its report.

Its two parts run as two tests: everything but the Ray Serve rows (``--part local``), and
the Ray Serve rows (``--part ray``), which start a Ray cluster and so run in the Ray group
(``conftest``) while the rest runs beside it. ``make bench`` runs both parts in one process.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from .helpers import SCRIPT_TIMEOUT_S, run_quick

pytestmark = pytest.mark.gate  # the full gate: subprocesses and long runs


def _benchmark_module(name: str) -> ModuleType:
    """A module of the ``benchmarks`` package (the repository root is on the tests' path)."""
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_quick_bench_writes_the_tables_plots_and_target_verdicts(tmp_path: Path) -> None:
    done = run_quick("bench", tmp_path, "--part", "local")
    report = (tmp_path / "latest.md").read_text()
    headings = ("## The limit: the model in-process, no server", "## Servers", "## Before and after", "## Targets")
    for heading in (*headings, "## Plots"):
        assert heading in report
    assert "quick smoke run, not a measurement" in report
    assert report.count(" — met") + report.count(" — missed") == 7
    assert "## Precision: float32, bfloat16 autocast, bfloat16 weights" in report
    assert "the **float32** in-process limit" in report and "lowest cosine" in report
    assert "windows of 32 in arrival order" in report and "Per-request overhead" in report
    assert "The price of a model call" in report
    assert "## The live view's cost (`server.dashboard()`)" in report and "Change of the median" in report
    assert "Where the gap to the limit goes" in report and "replayed in order in a process" in report
    # the three factors multiply to the ratio they take apart (the same run's goodput over the same limit)
    ratio = float(re.search(r"of the in-process limit [^*]*\*\*(\d+\.\d+)\*\*", report)[1])  # type: ignore[index]
    product = float(re.search(r" x \d+\.\d+ x \d+\.\d+ = (\d+\.\d+)\.", report)[1])  # type: ignore[index]
    assert abs(product - ratio) <= 0.02
    frame = pd.read_csv(tmp_path / "latest.csv")
    assert len(frame) == 9 * 6  # nine servers, six loads each
    assert frame.policy.str.contains("float32").any()  # the float32 rows stay beside the default's
    assert set(frame.load) >= {"closed c=1", "closed c=8", "closed c=32"}
    assert (frame.requests == frame.answered).all()  # every request got an answer
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "batch_sizes_c32.png", "latency_cdf_c32.png", "overload_2x_over_time.png", "throughput_latency.png",
    ]  # fmt: skip
    assert report in done.stdout
    assert "## Past one process: pipeserve on Ray Serve\n\nNot measured in this run (`--part local`)" in report
    assert not (tmp_path / "latest_ray.json").exists()


@pytest.mark.ray  # it starts a local Ray cluster
@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_quick_bench_ray_part_measures_the_ray_serve_rows(tmp_path: Path) -> None:
    done = run_quick("bench", tmp_path, "--part", "ray")
    report = (tmp_path / "latest_ray.md").read_text()
    assert report in done.stdout and "quick smoke run, not a measurement" in report
    assert not (tmp_path / "latest.md").exists()  # the full report is not overwritten by a part of it
    # five servers, each measured at c=1 and c=32, every request answered once
    assert "## Past one process: pipeserve on Ray Serve" in report and "### Where the time goes" in report
    ray, on_ray = json.loads((tmp_path / "latest_ray.json").read_text()), _benchmark_module("on_ray")
    assert list(ray["targets"]) == list(on_ray.TARGETS)
    for label, measured in ray["targets"].items():
        assert f"| {label} |" in report
        for load in ("c1", "c32"):
            assert measured[load]["requests"] == measured[load]["answered"] > 0, (label, load)
        assert set(measured["cpu_ms_per_answer"]) == set(on_ray.ROLES)
        assert measured["cpu_ms_per_answer"][on_ray.LOADGEN] > 0  # the generator's own process was read
    assert ray["targets"][on_ray.ONE]["cpu_ms_per_answer"][on_ray.PROXY] > 0  # Ray's proxy was found and read
    assert ray["targets"][on_ray.ALONE]["cpu_ms_per_answer"][on_ray.PROXY] == 0  # measured before Ray started
    assert len(ray["targets"][on_ray.TWO]["replica_mb"]) == 2 and ray["targets"][on_ray.PLAIN]["plain_mean_batch"] >= 1


@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_quick_generation_bench_measures_every_server_and_says_each_target(tmp_path: Path) -> None:
    done = run_quick("generation", tmp_path)
    report = (tmp_path / "generation.md").read_text()
    assert report in done.stdout and "quick smoke run, not a measurement" in report
    measured = json.loads((tmp_path / "generation.json").read_text())
    servers = measured["servers"]
    assert set(servers) == {"pipeserve (continuous)", "transformers serve --continuous-batching"}
    for name, rows in servers.items():
        for load in ("c=1", "c=2"):
            assert rows[load]["answered"] == rows[load]["requests"] > 0, (name, load)  # every stream answered
            assert rows[load]["tokens"] > 0 and f"| {load[2:]} | {name} |" in report
        assert rows["abandoned"]["idle"] is not None and rows["abandoned"]["after_status"] == 200, (name, rows)
    assert set(measured["alone"]) == {"c=1", "c=2"} and measured["dtype"] in ("float32", "bfloat16")
    assert report.count(" — met") + report.count(" — missed") == 5


def test_quick_levers_measure_each_variant_against_the_model_alone_and_the_floor(tmp_path: Path) -> None:
    # the variant with the most moving parts (a spawned process runs the model), and the floor
    done = run_quick("levers", tmp_path, "--only", "own process", "no model")
    report = (tmp_path / "levers.md").read_text()
    assert report in done.stdout and "A quick smoke run, not a measurement." in report
    levers, shares = report.split("**Where each variant's share of the limit goes at c=32**")
    rows = {cells[0].lstrip("| "): cells for cells in _table(levers)}
    assert set(rows) == {"variant", "own process", "no model"}
    apart, floor = rows["own process"], rows["no model"]
    assert float(apart[1]) > 0 and float(apart[2]) > 0 and float(apart[3]) > 0  # answers, ratio, CPU per answer
    assert floor[2] == "—" and floor[5] == "—"  # no model: nothing to take a ratio against
    assert float(floor[3]) > 0 and "cannot pass **" in report  # the bound from the floor's CPU per answer
    # the server's own c=32 batches, replayed by the model alone: only a server that runs a model has them
    split = {cells[0].lstrip("| "): cells for cells in _table(shares)}
    assert set(split) == {"variant", "own process"}
    ratio, batches, path, bound, reached = (float(cell.rstrip(" |")) for cell in split["own process"][1:])
    assert 0 < path < 1 and bound == pytest.approx(batches * path, abs=0.02) and batches > 0 and reached > 0
    assert ratio == float(apart[2])  # the same share of the limit as the first table's
    assert "Issue 37's targets in this run" not in report  # judged for the default and cores="own" only


def _table(markdown: str) -> list[list[str]]:
    return [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")]


def test_quick_policies_judge_the_default_against_the_best_setting_at_six_loads(tmp_path: Path) -> None:
    done = run_quick("policies", tmp_path)
    report = (tmp_path / "policies.md").read_text()
    assert report in done.stdout and "a quick smoke run, not a measurement" in report
    rows = [
        line.split(" | ") for line in report.splitlines() if line.startswith("| closed") or line.startswith("| open")
    ]
    loads = [cells[0].lstrip("| ") for cells in rows]
    assert loads[:3] == ["closed c=1", "closed c=8", "closed c=32"] and len(loads) == 6
    assert all(re.fullmatch(r"open [\d.]+ rps", load) for load in loads[3:])
    for cells in rows:
        # one of the grid's two fixed settings, measured again against the default (one round, quick)
        assert cells[1] in ("batch 1, wait 0 ms, fixed", "batch 32, wait 0 ms, fixed"), cells
        assert re.fullmatch(r"[\d.]+ \([\d.]+\)", cells[3]), cells
        default_batch, best_batch = (float(x) for x in cells[5].split(" / "))
        assert default_batch >= 1.0 and best_batch >= 1.0, cells
        if cells[1] == "batch 1, wait 0 ms, fixed":
            assert best_batch == 1.0, cells  # no batching ran batches of one
        assert cells[-1].rstrip(" |") in ("yes", "**no**")


def test_the_levers_report_judges_issue_37s_targets_against_the_bound_each_servers_batches_leave() -> None:
    report = _benchmark_module("report_levers")
    cores = os.cpu_count() or 1
    path_ms = 0.25 * cores  # the floor's CPU per answer: the same share of the cores on any machine
    floor = report.Round("no model", 0.9, 0.1, 2000.0, path_ms, 8.0, 400.0)
    # the model alone on each server's batches: 0.95 of the limit, or as fast as the limit itself
    default = report.Round("default", 14.0, 13.0, 200.0, 6.0, 8.0, 400.0, replay_rps=380.0)
    own = report.Round("own cores", 8.2, 7.0, 372.0, 5.5, 8.0, 400.0, replay_rps=400.0)
    text = report.levers_report([floor, default, own], rounds=1, seconds=1.0)
    share = 1 / (1 + path_ms * 400.0 / (cores * 1000))  # the path's share at own's batches' speed
    assert 0.9 * share < 0.9 < share  # own's bound (1.00 x share) is above the target, the default's under it
    default_bound = 0.95 / (1 + path_ms * 380.0 / (cores * 1000))
    missed = "missed, out of reach here: the bound its own batches leave is"
    assert f"`default`, c=32 >= 0.9 of the limit: **0.50** — {missed} {default_bound:.2f}" in text
    assert "`own cores`, c=32 >= 0.9 of the limit: **0.93** — met." in text
    assert "`default`, c=1 p50 within 0.3 ms of the model alone's single item: **+6.00 ms** — missed." in text
    assert "`own cores`, c=1 p50 within 0.3 ms of the model alone's single item: **+0.20 ms** — met." in text
    slow = report.Round("own cores", 8.2, 7.0, 300.0, 5.5, 8.0, 400.0, replay_rps=400.0)
    within = report.levers_report([floor, slow], rounds=1, seconds=1.0)
    assert f"**0.75** — missed within reach: the bound its own batches leave is {share:.2f}" in within
    shares = within.split("**Where each variant's share of the limit goes at c=32**")[1]
    row = next(cells for cells in _table(shares) if cells[0] == "| own cores")
    assert [float(c.rstrip(" |")) for c in row[1:]] == pytest.approx([0.75, 1.0, share, share, 0.75 / share], abs=0.006)

"""Notebooks executed by a real Jupyter kernel (nbclient), as a reader would run them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .helpers import SCRIPT_TIMEOUT_S, port_is_free

pytestmark = [pytest.mark.gate, pytest.mark.timeout(SCRIPT_TIMEOUT_S)]  # a whole notebook per test: a hang bound

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
CELL_TIMEOUT_S = 300


def _runner() -> Any:
    """The project's notebook runner (scripts/notebooks.py), the one `make notebooks` uses."""
    spec = importlib.util.spec_from_file_location("run_notebooks", SCRIPTS / "notebooks.py")
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def _client(nb: Any) -> NotebookClient:
    return NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )


def _tagged(nb: Any, tag: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if tag in c.get("metadata", {}).get("tags", []))


def _stdout(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


PROBE = """
import json, threading, pipeserve_nb
print(json.dumps({
    "servers": {name: h.port for name, h in pipeserve_nb.running_servers().items()},
    "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("pipeserve-")),
}))
"""


def _probe(client: NotebookClient, nb: Any) -> dict[str, Any]:
    cell = nbformat.v4.new_code_cell(PROBE)
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    nb.cells.pop()
    result: dict[str, Any] = json.loads(_stdout(cell).strip().splitlines()[-1])
    return result


def test_quickstart_runs_and_rerunning_the_start_cell_keeps_one_model_copy() -> None:
    nb = nbformat.read(NOTEBOOKS / "00-quickstart.ipynb", as_version=4)
    client = _client(nb)
    start, stop = _tagged(nb, "start"), _tagged(nb, "stop")
    with client.setup_kernel(env=_runner().kernel_env(ci=True)):
        for index, cell in enumerate(nb.cells[:stop]):
            client.execute_cell(cell, index)
        first = _probe(client, nb)
        client.execute_cell(nb.cells[start], start)  # the reader re-runs the start cell
        again = _probe(client, nb)
        client.execute_cell(nb.cells[stop], stop)
        after = _probe(client, nb)

    assert list(first["servers"]) == ["default"]
    assert list(again["servers"]) == ["default"] and again["servers"] != first["servers"]
    assert again["threads"].count("pipeserve-inference") == 1  # one model copy after a re-run
    assert after == {"servers": {}, "threads": []}
    assert port_is_free(first["servers"]["default"]) and port_is_free(again["servers"]["default"])

    outputs = {i: _stdout(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    assert "384 floats, L2 norm 1.0000" in "".join(outputs.values())
    assert "curl -X POST -d 'test sentence' http://127.0.0.1:" in "".join(outputs.values())
    assert re.search(r"40 of 40 requests answered OK at \d+/s", "".join(outputs.values()))
    assert re.search(r"open loop at [\d.]+ req/s: 40 of 40 OK", "".join(outputs.values()))
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the latency CDF, shown once
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    raw = json.loads(path.read_text())
    missing = [i for i, c in enumerate(raw["cells"]) if "id" not in c]
    assert missing == [], f"{path.name}: cells {missing} have no id (nbformat 4.5 requires one)"


# -- the lessons, executed as `make notebooks` does, in CI mode ---------------------------------


FINDINGS = "application/vnd.pipeserve.findings+json"
"""The lessons' machine-readable findings: a display of this type only, which no frontend shows."""


def _lesson(name: str, out: Path) -> tuple[Any, dict[str, Any]]:
    """Execute a lesson with the project's own runner; return it and its findings."""
    nb = _runner().execute(NOTEBOOKS / name, out, ci=True)
    assert (out / name.replace(".ipynb", ".html")).stat().st_size > 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            assert [o for o in cell.outputs if o.output_type == "error"] == [], cell.source
    assert "running servers: {}" in _stdout(nb.cells[_tagged(nb, "stop")])
    (findings,) = [o.data[FINDINGS] for o in nb.cells[_tagged(nb, "findings")].outputs if FINDINGS in o.get("data", {})]
    assert not [o for o in nb.cells[_tagged(nb, "findings")].outputs if "{" in o.get("text", "")]  # none in view
    return nb, dict(findings)


# Each lesson's numbers are printed by the notebook, from its own run; what is asserted here is the mechanism
# each lesson rests on (what the server reports: queue waits against the configured deadline, batch sizes,
# statuses, counts), never the size of a timing effect, which a busy machine can shrink.


def test_timeout_reset_lesson_shows_each_pitfall(tmp_path: Path) -> None:
    _, f = _lesson("03-timeout-reset-pitfalls.ipynb", tmp_path)
    # reset timer: a request waited past the timeout it was given, in a batch the cap would have cut
    assert f["seed_first_wait_ms"] > f["timeout_ms"] and f["seed_max_batch"] > 8
    assert f["capped_max_batch"] <= 8  # a cap bounds the batch
    assert f["deadline_first_wait_ms"] < f["seed_first_wait_ms"]
    # a lone request pays the seed loop's 1 ms on an empty queue (a timer never fires early); that wait 0 does
    # not wait is a fact about the absence of a timer, checked on a fake clock (tests/server/test_batch_queue.py):
    # here, beside other work, the event loop's own lateness can be larger than 1 ms
    assert f["lone_seed_wait_ms"] >= 1.0
    # the sketch as printed drops every request that arrives alone
    assert f["dropped_unanswered"] == f["dropped_sent"] > 0


def test_overload_lesson_shows_fast_503s_isolated_failures_and_a_free_loop(tmp_path: Path) -> None:
    _, f = _lesson("04-overload-and-errors.ipynb", tmp_path)
    assert f["all_answered"]
    assert 0 < f["peak_waiting"]["breaker by count (max_queue=32)"] <= 32  # what the live panels read
    assert f["breaker_503"] > 0 and f["waits_504"] > 0 and f["time_503"] > 0
    # every answer the client saw under the load, 503s and 504s included, is one the server counted as its own
    # (no client timeout, nothing lost)
    for label, by_status in f["client_by_status"].items():
        assert by_status == f["server_by_status"][label], label
    assert f["waits_504_ms"] >= f["timeout_s"] * 1000  # a 504 comes only at the request's deadline
    assert f["retry_after"] is not None and int(f["retry_after"]) >= 1  # the forecast wait, rounded up
    assert f["poison_statuses"] == [200] * 7 + [500] and f["poison_batch"] > 1
    assert f["poison_error"]["type"] == "InferenceFailed"
    # with the model on the event loop no probe is answered before the job ends; on the worker thread they are
    assert f["seed_answered_during_job"] == 0 and f["ours_answered_during_job"] >= 1


def test_single_copy_lesson_shows_one_copy_and_the_cost_of_the_anti_patterns(tmp_path: Path) -> None:
    _, f = _lesson("01-single-copy-model.ipynb", tmp_path)
    assert f["one_copy_mb"] > 100  # PyTorch and the weights really are in this kernel
    assert f["servers_after_rerun"] == 1
    assert f["rerun_mb"] < f["one_copy_mb"] + 60  # a second copy of the weights alone is ~90 MiB
    assert f["per_request_loads"] >= f["per_request_sent"]  # every request paid a model load
    assert len(f["worker_mb"]) == f["n_workers"] >= 2
    assert all(mb > 0.5 * f["one_copy_mb"] for mb in f["worker_mb"])
    assert f["workers_total_mb"] > 1.5 * f["one_copy_mb"]
    weights = f["weights_mb"]
    assert weights["float32"] > 80 and f["auto_dtype"] in {"bfloat16", "float32"}
    halved = f["auto_dtype"] == "bfloat16"
    assert abs(weights["auto"] - (weights["float32"] / 2 if halved else weights["float32"])) < 0.01
    assert set(f["process_mb"]) == {"float32", "auto"} and min(f["process_mb"].values()) > 100


def test_batching_lesson_shows_where_batching_helps_and_hurts(tmp_path: Path) -> None:
    nb, f = _lesson("02-batching-tradeoffs.ipynb", tmp_path)
    # under load requests share model calls; without batching each runs alone
    assert f["mean_batch_nobatch"] == 1 and f["mean_batch_wait0"] > 1 and f["best_batch"] > 1
    # at light load a request alone waits out the 10 ms it was given (a timer never fires early); that wait 0
    # never waits on purpose is checked on a fake clock (the event loop's lateness here depends on the machine)
    assert f["alone_wait10_n"] > 0 and f["alone_wait10_min_queue_ms"] >= 10
    verdicts = _stdout(nb.cells[_tagged(nb, "findings") - 2])
    assert len(f["my_verdicts"]) == 2 and "closed c=8" in f["my_verdicts"]  # the two loads of section 4
    for load, v in f["my_verdicts"].items():  # each printed verdict is the one its own numbers give
        better = v["ratio"] > 1.05 or v["delta_ms"] < -v["tol_ms"]
        worse = v["ratio"] < 0.95 or v["delta_ms"] > v["tol_ms"]
        rule = (
            "trades latency for throughput" if better and worse else "helps" if better else "hurts" if worse else None
        )
        assert v["verdict"] == (rule or "makes no real difference"), (load, v)
        assert f"{load}: batching {v['verdict']} here ({v['ratio']:.2f}x" in verdicts


@pytest.mark.ray
def test_scaling_out_lesson_serves_every_request_from_both_replicas(tmp_path: Path) -> None:
    nb, f = _lesson("05-scaling-out.ipynb", tmp_path)
    # the cell started a local cluster, re-running serve_on_ray under one name replaced the deployment, and
    # the last stop() ended the cluster: no Ray process is left under the kernel
    stopped = _stdout(nb.cells[_tagged(nb, "stop")])
    assert "this notebook started the Ray cluster it ran on: True" in stopped
    assert "Ray processes left under this kernel: 0" in stopped
    printed = "".join(str(o.get("text", "")) for o in nb.cells[_tagged(nb, "stop")].outputs)
    assert "infinite retries remaining" not in printed  # Ray's retry notices stay out of the cell
    assert f["ray_ok"] == {"1": f["requests"], "2": f["requests"]}
    for replicas in ("1", "2"):
        shares = f["shares"][replicas]
        assert len(shares) == int(replicas) and sum(shares.values()) == f["requests"]
        assert all(n > 0 for n in shares.values())
    assert len(f["replica_mb"]) == 2 and all(mb > 0 for mb in f["replica_mb"])

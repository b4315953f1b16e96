"""Notebooks executed by a real Jupyter kernel (nbclient), as a reader would run them."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from .helpers import RAY_GROUP, SCRIPT_TIMEOUT_S, port_is_free

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


def _lesson(name: str, out: Path, **client_options: Any) -> tuple[Any, dict[str, Any]]:
    """Execute a lesson with the project's own runner; return it and its findings (``Findings.record()``),
    after the checks every lesson passes, slowed or not (``_honest``)."""
    nb = _runner().execute(NOTEBOOKS / name, out, ci=True, **client_options)
    html = (out / name.replace(".ipynb", ".html")).read_text()
    for cell in nb.cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            assert [o for o in cell.outputs if o.output_type == "error"] == [], cell.source
    assert "running servers: {}" in _stdout(nb.cells[_tagged(nb, "stop")])
    record: dict[str, Any] = nb.metadata["pipeserve"]["findings"]
    assert record["lesson"] == name[:2]
    _honest(nb, html, record)
    return nb, {**record["values"], "shown": record["shown"], "unmet": record["unmet"]}


def _honest(nb: Any, html: str, record: dict[str, Any]) -> None:
    """What a reader sees is true to the run: each effect the run could not show is said so where it was
    measured and in the takeaway, whose conclusions are only those of effects shown; no placeholder
    stands for a number; nothing in the exported page needs a widget manager; load messages and
    findings stay out of sight."""
    printed = "".join(_stdout(c) for c in nb.cells if c.cell_type == "code")
    takeaway = _stdout(nb.cells[_tagged(nb, "findings")])
    for effect, failed in record["unmet"].items():
        assert f"This run could not show {effect}: {failed}." in printed
        assert f"This run did not show {effect} ({failed})" in takeaway
    for effect in record["shown"]:
        assert ("did not show " + effect) not in takeaway or effect in record["unmet"]
    assert not re.search(r"(?<![\w.])(-|None|nan) (ms|s|requests)\b|Retry-After None", takeaway), takeaway
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr" and "pipeserve:" in o.text]
    assert "vnd.pipeserve" not in html and "findings" not in takeaway


# Each lesson's numbers are printed by the notebook, from its own run; what is asserted here is the mechanism
# each lesson rests on (what the server reports: queue waits against the configured deadline, batch sizes,
# statuses, counts), never the size of a timing effect, which a busy machine can shrink. An effect that
# needs the machine's cooperation (an overload that overloads) is asserted where the run says it showed it;
# where it says it could not, ``_honest`` checks that it said so and drew no conclusion from it.


def _check_timeout_reset(f: dict[str, Any]) -> None:
    if f["shown"]["the reset-timer trap"]:  # a request waited past the timeout it was given, in an uncapped batch
        assert f["seed_first_wait_ms"] > f["timeout_ms"] and f["seed_max_batch"] > 8
        assert f["deadline_first_wait_ms"] < f["seed_first_wait_ms"]
    assert f["refused"] == 0  # no queue bound cut the seed loop's batch: only its timer did
    assert f["seed_batch_closed_ms"] > 0 and f["trickle_ms"] > 0
    assert f["capped_max_batch"] <= 8  # a cap bounds the batch
    # a lone request pays the seed loop's 1 ms on an empty queue (a timer never fires early); that wait 0 does
    # not wait is a fact about the absence of a timer, checked on a fake clock (tests/server/core)
    assert f["lone_seed_wait_ms"] >= 1.0
    # the sketch as printed drops every request that arrives alone
    assert f["dropped_unanswered"] == f["dropped_sent"] > 0


def _check_overload(f: dict[str, Any], nb: Any) -> None:
    assert f["all_answered"]
    # every answer the client saw under the load, 503s and 504s included, is one the server counted as its own
    # (no client timeout, nothing lost), overloaded or not
    for label, by_status in f["client_by_status"].items():
        assert by_status == f["server_by_status"][label], label
    doubled = _stdout(nb.cells[_tagged(nb, "overload")]).count("doubling the rate")
    assert doubled == f["tries"] - 1  # it says it doubles exactly when another try ran at the doubled rate
    if f["shown"]["what overload does"]:
        assert 0 < f["peak_waiting"]["breaker by count (max_queue=32)"] <= 32  # what the live panels read
        assert f["breaker_503"] > 0 and f["waits_504"] > 0 and f["time_503"] > 0
        assert f["waits_504_ms"] >= f["timeout_s"] * 1000  # a 504 comes only at the request's deadline
        # the median 504 comes at its deadline or later (above); not asserted of each one: a run here saw one
        # 504 at 999.4 ms of a 1 s timeout, from the client's clock, which this test does not explain
        assert len(f["timeout_504_ms"]) == 2 and f["lag_504_ms"] >= 0
        assert f["retry_after"] is not None and int(f["retry_after"]) >= 1  # the forecast wait, rounded up
    # a poisoned input fails alone, whatever batch it shared
    assert f["poison_statuses"] == [200] * 7 + [500] and f["poison_error"]["type"] == "InferenceFailed"
    assert f["shown"]["a poisoned input failing alone"] == (f["poison_batch"] > 1)
    # with the model on the event loop no probe is answered before the job ends; on the worker thread they are
    assert f["seed_answered_during_job"] == 0
    assert f["shown"]["a free event loop"] == (f["ours_answered_during_job"] >= 1)


def _check_batching(f: dict[str, Any], nb: Any) -> None:
    # under load requests share model calls; without batching each runs alone
    assert f["mean_batch_nobatch"] == 1 and f["mean_batch_wait0"] > 1 and f["best_batch"] >= 1
    # at light load a request alone waits out the 10 ms it was given (a timer never fires early); that wait 0
    # never waits on purpose is checked on a fake clock (the event loop's lateness here depends on the machine)
    assert f["alone_wait10_n"] > 0 and f["alone_wait10_min_queue_ms"] >= 10
    assert f["shown"]["batching paying under load"] == (f["best_policy"] != "no batching")
    assert f["shown"]["padding eating the gain"] == (f["gain_varied"] < f["gain_uniform"])
    verdicts = _stdout(nb.cells[_tagged(nb, "my-verdicts")])
    assert len(f["my_verdicts"]) == 2 and "closed c=8" in f["my_verdicts"]  # the two loads of section 4
    for load, v in f["my_verdicts"].items():  # each printed verdict is the one its own numbers give
        better = v["ratio"] > 1.05 or v["delta_ms"] < -v["tol_ms"]
        worse = v["ratio"] < 0.95 or v["delta_ms"] > v["tol_ms"]
        rule = (
            "trades latency for throughput" if better and worse else "helps" if better else "hurts" if worse else None
        )
        assert v["verdict"] == (rule or "makes no real difference"), (load, v)
        assert f"{load}: batching {v['verdict']} here ({v['ratio']:.2f}x" in verdicts
    tuned = f["tuned"]  # tune(): every setting at both loads, and the choice its own rule makes from them
    settings = tuned["settings"]
    assert tuned["rows"] == 2 * len(settings) >= 4
    eligible = {k: s for k, s in settings.items() if s["all_answered"] and s["worst_p99_ms"] <= tuned["target_ms"]}
    best = max(eligible, key=lambda k: eligible[k]["score"]) if eligible else None
    assert tuned["best"] == best
    printed = _stdout(nb.cells[_tagged(nb, "tune")])
    assert (f"tune() chose '{best}'" if best else "no setting kept p99 within") in printed


def test_timeout_reset_lesson_shows_each_pitfall(tmp_path: Path) -> None:
    _, f = _lesson("03-timeout-reset-pitfalls.ipynb", tmp_path)
    _check_timeout_reset(f)


def test_overload_lesson_shows_fast_503s_isolated_failures_and_a_free_loop(tmp_path: Path) -> None:
    nb, f = _lesson("04-overload-and-errors.ipynb", tmp_path)
    _check_overload(f, nb)


def test_single_copy_lesson_shows_one_copy_and_the_cost_of_the_anti_patterns(tmp_path: Path) -> None:
    _, f = _lesson("01-single-copy-model.ipynb", tmp_path)
    assert f["copies"] == 1 and f["rerun_copies"] == 1  # counted from the live models, not process memory
    assert f["shown"] == {"one copy after a re-run": True}
    assert f["one_copy_mb"] > 100  # PyTorch and the weights really are in this kernel
    assert f["servers_after_rerun"] == 1
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
    _check_batching(f, nb)


# -- the same lessons on a slowed machine ------------------------------------------------------------------


@contextmanager
def _slowed_kernel(spell: str | None = None) -> Iterator[dict[str, Any]]:
    """nbclient options that slow a lesson's kernel down as a busy laptop would. Once the kernel is up (before
    its first cell imports PyTorch), it and everything it starts (its load generators, its worker processes)
    are pinned to one CPU; the other CPUs stay free for the rest of the test run. Without ``spell``, a process
    spinning on that CPU takes half of it for the whole run. With ``spell`` (a cell tag), three spinning
    processes take three quarters of it while that cell runs, and none afterwards: a slow spell during one
    measurement, the way another job on a shared machine makes one."""
    cpu = max(os.sched_getaffinity(0))
    hogs: list[subprocess.Popen[bytes]] = []
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass"

    def hog(n: int) -> None:
        hogs.extend(subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n))

    def stop_hogs() -> None:
        for process in hogs:
            process.kill()
            process.wait()
        hogs.clear()

    def pin(**_: Any) -> None:
        kernels = [p for p in psutil.Process().children() if "ipykernel" in " ".join(p.cmdline())]
        assert kernels, "no kernel found to pin"
        for kernel in kernels:
            kernel.cpu_affinity([cpu])
        if spell is None:
            hog(1)

    def tagged(cell: Any) -> bool:
        return spell in cell.get("metadata", {}).get("tags", [])

    options: dict[str, Any] = {"on_notebook_start": pin}
    if spell is not None:
        options["on_cell_execute"] = lambda cell, **_: hog(3) if tagged(cell) else None
        options["on_cell_executed"] = lambda cell, **_: stop_hogs() if tagged(cell) else None
    try:
        yield options
    finally:
        stop_hogs()


# The slowed runs share the Ray tests' xdist group: a spinning process never competes with a Ray cluster's start
# (Ray gives its node a fixed 30 s to register, which a busy 2-core machine can miss). 03 is not rerun slowed: its
# trap is a mechanism of the policy, shown on any machine that can send 120 requests/s, and the time is kept for
# the lessons whose effect needs the machine's cooperation.
@pytest.mark.xdist_group(RAY_GROUP)
@pytest.mark.parametrize(
    ("name", "spell", "check"),
    [
        ("04-overload-and-errors.ipynb", "capacity", _check_overload),  # capacity measured in a slow spell
        ("02-batching-tradeoffs.ipynb", None, _check_batching),  # slowed throughout
    ],
    ids=["04-slow-capacity", "02-slowed"],
)
def test_each_lesson_is_honest_on_a_slowed_machine(name: str, spell: str | None, check: Any, tmp_path: Path) -> None:
    """Each lesson shows its effect or says this run could not, and draws no conclusion its numbers deny
    (``_honest``); the mechanisms hold either way."""
    with _slowed_kernel(spell) as options:
        nb, f = _lesson(name, tmp_path, **options)
    check(f, nb)
    print(f"{name} slowed: shown {f['shown']}, unmet {f['unmet']}")  # for the log: what a slowed run could show


@pytest.mark.ray
def test_scaling_out_lesson_serves_every_request_from_both_replicas(tmp_path: Path) -> None:
    nb, f = _lesson("05-scaling-out.ipynb", tmp_path)
    assert f["shown"] == {} and f["unmet"] == {}  # it measures, and requires no effect of the machine
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


def test_generation_lesson_streams_batches_and_frees_a_left_slot(tmp_path: Path) -> None:
    nb, f = _lesson("06-generation.ipynb", tmp_path)
    assert 0 < f["first_piece_ms"] < f["whole_answer_ms"]  # the first piece came before the answer ended
    assert f["all_answered"]  # every stream of every policy was answered, none refused (no admission by time)
    steps = f["steps"]  # what the servers report: how many streams shared a model step
    assert steps["one at a time"] == 1.0 and steps["static batches"] > 1 and steps["continuous"] > 1
    # the client that left: its generation was running, ended and counted as client_gone, no stream left running
    assert f["running_before"] == 1 and f["client_gone"] == 1 and f["running_after"] == 0
    printed = "".join(_stdout(c) for c in nb.cells if c.cell_type == "code")
    assert "The first words came after" in printed and "1 generation ended because its client left" in printed


def test_rag_lesson_embeds_retrieves_and_answers_through_one_server_of_two_models(tmp_path: Path) -> None:
    nb, f = _lesson("07-rag-openai.ipynb", tmp_path)
    assert f["models"] == ["minilm", "smollm2"]  # one server, both models, listed by the openai client
    assert f["passages"] == 10 and f["dimensions"] == 384 and f["embed_tokens"] > f["passages"]
    assert f["retrieval_hits"] == f["retrieval_questions"] == 3  # the embedder's vectors pick the right passages
    assert f["answer_pieces"] >= 2 and f["usage_tokens"] >= f["answer_pieces"] - 1  # streamed, with the usage chunk
    assert f["answered"] == f["users"] and f["inference_threads"] == ["pipeserve-inference"]  # one per device
    # each model counted its own requests: the embedder the passages, the questions, three idle probes, one busy
    # probe and each user's question; the chat model the streamed answer and each user's
    assert f["embed_requests"] == 1 + 1 + 3 + 1 + f["users"] and f["chat_requests"] == 1 + f["users"]
    printed = "".join(_stdout(c) for c in nb.cells if c.cell_type == "code")
    assert "pieces; the first after" in printed and "The server's inference threads: ['pipeserve-inference']" in printed
    html = (tmp_path / "07-rag-openai.html").read_text()  # the live panel: one part per model, side by side
    assert html.count('data-metric="tokens_per_s"') == 1 and html.count('data-metric="padding_efficiency"') == 1

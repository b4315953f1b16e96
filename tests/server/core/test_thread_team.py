"""``ServerConfig(cores="own")``: the thread that calls ``serve()`` lets its PyTorch thread team go."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

from pipeserve_nb._server.core.thread_team import release_team

from ...helpers import ROOT

# Run in a fresh process: a pytest worker's threads have run the model and hold teams. A thread's first
# parallel op starts its team (torch threads - 1 new OS threads); a thread that has one starts none. The
# count leaves out Python's threads: the server may start one of its own (an executor's worker) meanwhile.
PROBE = """
import os, sys, threading, orjson, torch, pipeserve_nb as ps
def tasks():
    while True:  # OS threads that are not Python's, read between two equal counts of Python's
        python = threading.active_count()
        native = len(os.listdir("/proc/self/task"))
        if threading.active_count() == python:
            return native - python
square = torch.randn(512, 512)
model = ps.load_model()  # on this thread, as a notebook does
torch.mm(square, square)  # and runs a parallel op here (loading may not: no bfloat16 timing on every CPU): a team
server = ps.serve(model, config=ps.ServerConfig(cores=sys.argv[1]))
answered = len(server.query("the model runs on the server's inference thread"))
before = tasks()
torch.mm(square, square)  # a parallel op on this thread
started = tasks() - before
again = len(server.query("and still does"))
server.stop()
print(orjson.dumps({"threads": torch.get_num_threads(), "started": started, "answers": [answered, again]}).decode())
"""


def _probe(cores: str) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, cores], env=env, capture_output=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:].decode(errors="replace")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])  # after what loading prints
    return result


@pytest.mark.parametrize(("cores", "team_kept"), [("shared", True), ("own", False)])
def test_own_cores_end_the_callers_idle_team_and_the_server_answers_on(cores: str, team_kept: bool) -> None:
    probe = _probe(cores)
    if probe["threads"] < 2:
        pytest.skip("one torch thread: no team workers to count")
    # the caller's team survived serve() ("shared"), or was ended and its next op started a new one ("own")
    assert probe["started"] == (0 if team_kept else probe["threads"] - 1), probe
    assert probe["answers"] == [384, 384]  # the server's own team is untouched


def test_a_thread_with_no_team_or_a_process_without_pytorch_has_nothing_to_release() -> None:
    script = "from pipeserve_nb._server.core.thread_team import release_team; import sys; "
    script += "print(release_team(), 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.split() == ["released", "False"]  # nothing to do, and PyTorch not imported for it
    import torch

    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    assert release_team() == "released"  # PyTorch's libgomp found and the call accepted (Linux wheels)

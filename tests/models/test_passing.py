"""Torch work on a passing thread: ``load_model()`` leaves the calling thread without a PyTorch thread team."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import orjson
import pytest

from pipeserve_nb._models.passing import on_a_passing_thread

from ..helpers import ROOT


def test_a_passing_thread_returns_the_result_or_raises_the_error_and_ends() -> None:
    seen: list[threading.Thread] = []

    def work() -> int:
        seen.append(threading.current_thread())
        return 42

    assert on_a_passing_thread(work, "pipeserve-test") == 42
    assert seen[0] is not threading.current_thread() and seen[0].name == "pipeserve-test"
    seen[0].join(5)
    assert not seen[0].is_alive()

    error = KeyboardInterrupt("from the thread")

    def fails() -> None:
        raise error

    with pytest.raises(KeyboardInterrupt) as raised:
        on_a_passing_thread(fails, "pipeserve-test")
    assert raised.value is error  # the very exception, whatever its kind


# Run in a fresh process: a pytest worker's main thread has run the model already and holds a team.
# A thread's first parallel op starts its team (torch threads - 1 new OS threads); a thread that has
# one starts none.
TEAM_PROBE = """
import os, sys, orjson, torch, pipeserve_nb as ps
def tasks(): return len(os.listdir("/proc/self/task"))
square = torch.randn(512, 512)
if sys.argv[1] == "serve":
    server = ps.serve()
    server.query("the model runs on the server's inference thread")
else:
    ps.load_model()("the model loaded, then called from this thread" if sys.argv[1] == "call" else [])
before = tasks()
torch.mm(square, square)  # a parallel op on the main thread
print(orjson.dumps({"threads": torch.get_num_threads(), "started": tasks() - before}).decode())
"""


@pytest.mark.parametrize(("how", "team_before"), [("load", False), ("serve", False), ("call", True)])
def test_loading_or_serving_gives_the_calling_thread_no_thread_team(how: str, team_before: bool) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", TEAM_PROBE, how], env=env, capture_output=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:].decode(errors="replace")
    probe = orjson.loads(done.stdout.splitlines()[-1])  # after what loading prints
    if probe["threads"] < 2:
        pytest.skip("one torch thread: no team workers to count")
    # calling the model from the main thread (the control) gives it a team; loading or serving does not
    assert probe["started"] == (0 if team_before else probe["threads"] - 1), probe

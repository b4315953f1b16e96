"""A local cluster that fails to start is cleaned up and started again.

On a busy machine with few cores, Ray's new node can miss the fixed 30 s it is given to register
(``ray/_private/node.py``): ``ray.init`` raises after the cluster's GCS and raylet have started, and
``ray.shutdown()`` does not end them, because the node never became Ray's global node. The test
makes the first starts fail in exactly that place, after Ray's processes really started.

Each case runs in a process of its own: a local start sets Ray's token authentication in the
process (``RAY_AUTH_MODE`` and a token Ray keeps for the process's life), which would refuse the
clusters the other Ray tests start with tokens of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.gate, pytest.mark.ray]

CASE = r"""
import json, sys
import psutil, ray
from ray._private import node
from pipeserve_nb._ray import cluster

def ray_children():
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "ray" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p.pid)
        except psutil.Error:
            pass
    return found

failures, attempts = int(sys.argv[1]), int(sys.argv[2])
cluster.START_ATTEMPTS = attempts
real = node.Node.start_ray_processes
left = []

def late(self):
    real(self)
    if len(left) < failures:
        left.append(sorted(ray_children()))
        raise Exception("The current node timed out during startup. (the test's late node)")

node.Node.start_ray_processes = late
out = {"left": left}
try:
    cluster.start_local(dashboard=False)
    out["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
    out["answer"] = ray.get(ray.remote(lambda: 42).remote())
except RuntimeError as error:
    out["error"] = str(error)
out["initialized"] = ray.is_initialized()
out["still_running"] = sorted(set().union(*map(set, left)) & ray_children())
ray.shutdown()
print(json.dumps(out))
"""


def _start(failures: int, attempts: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CASE, str(failures), str(attempts)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_failed_local_start_is_cleaned_up_and_tried_again() -> None:
    result = _start(failures=1, attempts=3)
    assert len(result["left"]) == 1 and result["left"][0], "the failed start had started Ray's processes"
    assert result["still_running"] == [], "the failed start's processes still run beside the new cluster"
    assert result["initialized"] and result["nodes"] == 1
    assert result["answer"] == 42, "the cluster of the second try works"


def test_a_start_that_keeps_failing_says_so_and_leaves_nothing_running() -> None:
    result = _start(failures=2, attempts=2)
    assert result["error"].startswith("a local Ray cluster did not start in 2 tries: The current node timed out")
    assert len(result["left"]) == 2 and not result["initialized"]
    assert result["still_running"] == [], "a failed start left Ray's processes running"

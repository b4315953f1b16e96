"""A local cluster that fails to start is cleaned up and started again.

On a busy machine with few cores, Ray's new node can miss the fixed 30 s it is given to register
(``ray/_private/node.py``): ``ray.init`` raises after the cluster's GCS and raylet have started, and
``ray.shutdown()`` does not end them, because the node never became Ray's global node. The test
makes the first start fail in exactly that place, after Ray's processes really started.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import ray
from ray._private import node

from pipeserve_nb._ray import cluster

pytestmark = [pytest.mark.gate, pytest.mark.ray]


def _ray_children() -> set[int]:
    return {
        p.pid for p in psutil.Process().children(recursive=True) if "ray" in " ".join(p.cmdline()) and p.is_running()
    }


@pytest.fixture
def first_start_is_late(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[set[int]]]:
    """The first local start raises Ray's own "timed out" exception once its processes are up; records them."""
    real = node.Node.start_ray_processes
    left_by_failures: list[set[int]] = []

    def late_once(self: Any) -> None:
        real(self)
        if not left_by_failures:
            left_by_failures.append(_ray_children())
            raise Exception("The current node timed out during startup. (the test's late node)")

    monkeypatch.setattr(node.Node, "start_ray_processes", late_once)
    yield left_by_failures
    ray.shutdown()


def test_a_failed_local_start_is_cleaned_up_and_tried_again(first_start_is_late: list[set[int]]) -> None:
    assert not ray.is_initialized()
    cluster.start_local(dashboard=False)

    assert ray.is_initialized()
    (left,) = first_start_is_late
    assert left, "the failed start had started Ray's processes"
    assert not left & _ray_children(), "the failed start's processes still run beside the new cluster"
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    assert ray.get(ray.remote(lambda: 42).remote()) == 42  # the cluster of the second try works


def test_a_start_that_keeps_failing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real = node.Node.start_ray_processes
    started: list[set[int]] = []

    def always_late(self: Any) -> None:
        real(self)
        started.append(_ray_children())
        raise Exception("The current node timed out during startup. (the test's late node)")

    monkeypatch.setattr(node.Node, "start_ray_processes", always_late)
    monkeypatch.setattr(cluster, "START_ATTEMPTS", 2)
    with pytest.raises(RuntimeError, match="did not start in 2 tries: The current node timed out"):
        cluster.start_local(dashboard=False)
    assert len(started) == 2 and not ray.is_initialized()
    assert not set().union(*started) & _ray_children(), "a failed start left Ray's processes running"

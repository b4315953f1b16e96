"""``worker_processes``: real standalone servers, each with its own copy, all gone after the block."""

from __future__ import annotations

import httpx
import psutil
import pytest

from pipeserve_nb import query, worker_processes

pytestmark = pytest.mark.gate  # the full gate: subprocesses and long runs


def test_workers_serve_with_their_flags_and_end_with_the_block() -> None:
    with worker_processes(2, "--dtype", "float32") as workers:
        assert len({w.url for w in workers}) == 2
        assert all(len(query(w.url, "hello")) == 384 for w in workers)
        assert {httpx.get(f"{w.url}/health", trust_env=False).json()["dtype"] for w in workers} == {"float32"}
        pids = [w.pid for w in workers]
        assert all(psutil.pid_exists(pid) for pid in pids)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]

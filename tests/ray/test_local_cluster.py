"""``serve_on_ray()`` from a notebook cell with no cluster given: it starts a local one, and its
``stop()`` leaves no Ray process and no port behind (a real kernel, real Ray)."""

from __future__ import annotations

import pytest

from ..helpers import port_is_free
from ..kernel import started_kernel

pytestmark = pytest.mark.ray

SETUP = "import os, psutil, pipeserve_nb as p\nos.environ.pop('RAY_ADDRESS', None)"


def ray_children(kernel: object) -> int:
    code = "print(sum('ray' in ' '.join(c.cmdline()) for c in psutil.Process().children(recursive=True)))"
    return int(kernel.stdout(code))  # type: ignore[attr-defined]


def test_a_cell_starts_a_local_cluster_and_stop_leaves_nothing_behind() -> None:
    with started_kernel(SETUP) as kernel:
        kernel.run("server = p.serve_on_ray(replicas=1, name='cell')", timeout_s=300)
        assert kernel.stdout("print(server.started_cluster, len(server.query(['a', 'b'])))") == "True 2\n"
        assert kernel.stdout("print(server.stats()['requests_by_status'])") == "{'200': 1}\n"
        assert "RayServerHandle" in kernel.stdout("print(repr(server))")
        port = int(kernel.stdout("print(server.port)"))
        assert ray_children(kernel) > 0, "the cluster's processes run under the kernel"
        kernel.run("server = p.serve_on_ray(replicas=1, name='cell')", timeout_s=300)  # a re-run replaces it
        assert kernel.stdout("print(len(p.running_servers()), server.running)") in ("0 True\n", "1 True\n")
        kernel.run("server.stop()", timeout_s=120)
        assert ray_children(kernel) == 0
        assert port_is_free(port)

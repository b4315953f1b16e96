"""What ``serve_on_ray()`` returns: the deployment's address, the same helpers as a notebook
server's handle, each replica's numbers and their sum, and ``stop()``."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from ray import serve
from ray.serve._private.common import ReplicaState  # the key type of Serve's public status

from .._client import Queries, auth_headers
from .._live.stats_view import StatsView, handle_html
from .._server.core.config import ServerConfig
from .._server.core.policy import Policy
from .._server.run import registry
from .._server.run.handle import Handle
from . import cluster as clusters
from .combine import combine
from .replica import ReplicaSettings

__all__ = ["RayServerHandle", "off_loop"]

T = TypeVar("T")
_ROUNDS = 8


def off_loop(fn: Callable[[], T], timeout_s: float | None = None) -> T:
    """``fn()`` in a thread of its own: Ray's blocking calls refuse to run where an asyncio loop
    runs, as one does under a Jupyter cell."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pipeserve-ray") as pool:
        return pool.submit(fn).result(timeout_s)


class RayServerHandle(Handle, Queries):
    """A pipeserve deployment on Ray Serve: its proxy's address, helpers, and ``stop()``.

    Use it as a context manager to stop the deployment on leaving the block.
    """

    def __init__(
        self,
        settings: ReplicaSettings,
        host: str,
        port: int,
        cluster: clusters.Cluster,
        replicas: int,
        cpus: int,
        public_url: str | None = None,
    ) -> None:
        super().__init__(settings.name, host, port, public_url)
        self.replicas = replicas
        """Replicas asked for (Ray keeps this many running)."""
        self.cpus_per_replica = cpus
        self._settings = settings
        self._cluster = cluster
        self._token = settings.config.auth_token
        self._client = httpx.Client(trust_env=False, headers=auth_headers(self._token))

    @property
    def cluster_address(self) -> str:
        """The Ray cluster's address (GCS)."""
        return self._cluster.address

    @property
    def started_cluster(self) -> bool:
        """Whether pipeserve started the cluster (``stop()`` of its last deployment shuts it down)."""
        return self._cluster.started

    @property
    def model(self) -> str:
        return self._settings.model.describe()

    @property
    def policy(self) -> Policy:
        return self._settings.policy

    @property
    def config(self) -> ServerConfig:
        """The limits each replica runs with (``torch_threads`` set to its CPUs)."""
        return self._settings.config

    def stats(self) -> StatsView:
        """Every running replica's ``/stats`` (under ``"replicas"``, by name) and their counters
        summed (``combine``); displayed in a notebook as a few lines of the sums."""
        return StatsView(combine(off_loop(lambda: self._each_replica("stats"), 60.0)))

    def replica_processes(self) -> list[dict[str, Any]]:
        """``{"replica", "pid", "node"}`` of each running replica."""
        return off_loop(lambda: list(self._each_replica("process").values()), 60.0)

    def _each_replica(self, method: str) -> dict[str, dict[str, Any]]:
        """``method``'s answer from each running replica. Ray's router picks a replica per call
        (uniformly among idle ones), so calls go out in rounds until each has answered."""
        expected = self._running_replicas()
        app = serve.get_app_handle(self.name)
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(_ROUNDS):
            calls = [getattr(app, method).remote() for _ in range(2 * max(1, expected))]
            for call in calls:
                document = call.result(timeout_s=30.0)
                seen[document["replica"]] = document
            if len(seen) >= expected:
                break
        return seen

    def _running_replicas(self) -> int:
        app = serve.status().applications.get(self.name)
        if app is None:
            return 0
        return sum(d.replica_states.get(ReplicaState.RUNNING, 0) for d in app.deployments.values())

    def stop(self, timeout_s: float | None = None) -> None:
        """Delete the deployment (each replica drains for ``config.drain_timeout_s``, Ray's
        graceful shutdown), then let go of the cluster: a cluster pipeserve started ends with its
        last deployment; one it only connected to keeps running. ``timeout_s`` is not used: the
        drain time was given to Ray when the deployment started. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._client.close()
        try:
            serve.delete(self.name)
        finally:
            clusters.release(self._cluster)
            registry.unregister(self)

    def details(self) -> list[tuple[str, Any]]:
        return [
            ("model", self.model),
            ("replicas", f"{self.replicas} x {self.cpus_per_replica} CPU"),
            ("cluster", f"{self.cluster_address} ({'started here' if self.started_cluster else 'connected'})"),
            ("policy", self.policy),
        ]

    def _repr_html_(self) -> str:
        live = None
        if self.running:
            with contextlib.suppress(Exception):  # a display never raises: no live numbers then
                live = self.stats()
        hints = ["per replica: server.stats()['replicas']", "stop it: server.stop()"] if self.running else []
        return handle_html(type(self).__name__, self._rows(), live, hints, self._link_html("try it in a browser"))

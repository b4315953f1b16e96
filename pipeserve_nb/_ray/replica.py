"""The deployment: each Ray Serve replica builds its own engine (one model copy) and pipeserve's app.

Nothing heavy crosses to a replica: it gets the settings (a model id or path, the policy,
the limits), loads its own model in the app's lifespan, and answers every route as a server
of its own would, naming itself in ``X-Replica``. Ray calls ``check_health`` (pipeserve's
``/health``) to decide whether to replace it; the handle calls ``stats`` on each replica.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.serve.deployment import Application
from starlette.applications import Starlette

from .._models.naming import name_of
from .._models.spec import ModelSpec
from .._server.core.config import ServerConfig
from .._server.core.engine import Engine
from .._server.core.health import check
from .._server.core.policy import Policy
from .._server.core.report import stats_report
from .._server.edge.app import create_app

__all__ = ["ReplicaSettings", "PipeserveReplica", "ReplicaUnhealthy", "application", "run"]


@dataclass(frozen=True)
class ReplicaSettings:
    """What each replica is built from (small: pickled to every replica)."""

    name: str
    model: ModelSpec
    policy: Policy
    config: ServerConfig


class ReplicaUnhealthy(RuntimeError):
    """Raised by ``check_health`` with ``/health``'s reason: Ray then replaces the replica."""


class PipeserveReplica:
    """One replica of a pipeserve deployment (wrapped by ``serve.ingress`` in ``application``)."""

    def __init__(self, settings: ReplicaSettings) -> None:
        self._settings = settings
        self._replica = serve.get_replica_context().replica_tag
        self._engine: Engine | None = None

    def __serve_build_asgi_app__(self) -> Starlette:
        s = self._settings
        served = name_of(s.model.model, s.model.task)  # its name in /v1/models and the metrics' model label
        self._engine = Engine(s.model, s.policy, s.config, s.name, replica=self._replica, model=served)
        return create_app(self._engine)

    def check_health(self) -> None:
        """Ray's health check: pipeserve's ``/health``; raises while it would answer 503."""
        if self._engine is None:
            raise ReplicaUnhealthy("the replica has no engine yet")
        report = check(self._engine)
        if not report.ok:
            raise ReplicaUnhealthy(f"{report.body['status']}: {report.body.get('reason')}")

    def stats(self) -> dict[str, Any]:
        """This replica's ``/stats`` document (``replica`` names it)."""
        if self._engine is None:
            return {"replica": self._replica, "state": "created"}
        return stats_report(self._engine)

    def process(self) -> dict[str, Any]:
        """Which process and node this replica runs in (for tests, and for a person looking)."""
        return {"replica": self._replica, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


def application(settings: ReplicaSettings, options: dict[str, Any]) -> Application:
    """The Ray Serve application of ``settings``'s deployment, ready for ``serve.run``."""
    ingress = serve.ingress()(PipeserveReplica)
    deployment: Any = serve.deployment(ingress, name="pipeserve", **options)
    bound: Application = deployment.bind(settings)
    return bound


def run(app: Application, name: str, timeout_s: float) -> None:
    """Deploy ``app`` as the Serve application ``name`` (replacing one of that name) and wait
    until every replica runs; ``RuntimeError`` with Ray's message if it fails or takes longer."""
    serve.run_many([serve.RunTarget(app, name=name, route_prefix="/")], wait_for_applications_running=False)
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(name)
        state = str(status.status) if status is not None else "NOT_STARTED"
        if state.endswith("RUNNING") and not state.endswith("NOT_RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED"):
            raise RuntimeError(status.message if status is not None else state)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not running after {timeout_s:g} s (Ray says {state}: {status and status.message})")
        time.sleep(0.25)  # Ray's controller is polled: it offers no event to wait on

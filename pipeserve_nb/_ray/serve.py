"""``serve_on_ray()``: the same server as a Ray Serve deployment of N replicas, from a notebook cell.

It reads top to bottom like ``serve()``: settings -> hold a cluster (connect, or start a
local one) -> stop a deployment of the same name -> Ray's settings from ours (``mapping``)
-> start Serve's HTTP proxy if it does not run -> deploy and wait until every replica has
loaded its model -> wait until ``/health`` answers 200 through the proxy -> register the
handle under its name. Ray is imported here, when it is called, never at ``import pipeserve_nb``.
"""

from __future__ import annotations

import inspect
import os
import time
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidSetting, ServerStartError
from .._models.spec import ModelSpec
from .._server.core.config import ServerConfig
from .._server.core.policy import BatchPolicy, Policy
from .._server.run.exposure import check_exposure
from .._server.run.registry import register, stop_named
from .._server.run.settings import Address, RayPlacement, address_of
from .._server.run.uvicorn_runner import bind_socket
from .mapping import cpus_per_replica, deployment_options, replica_config

if TYPE_CHECKING:
    from .handle import RayServerHandle

__all__ = ["serve_on_ray", "check_shippable"]

_INSTALL = "serve_on_ray needs Ray Serve: pip install 'pipeserve_nb[ray]'"


def serve_on_ray(
    model: Any = ModelSpec.model,
    *,
    replicas: int = RayPlacement.replicas,
    address: str | None = RayPlacement.ray_address,
    dashboard: bool = RayPlacement.ray_dashboard,
    task: str | None = ModelSpec.task,
    device: str | int | None = ModelSpec.device,
    dtype: str = ModelSpec.dtype,
    policy: Policy | None = None,
    config: ServerConfig | None = None,
    host: str = Address.host,
    port: int = Address.port,
    allow_unauthenticated: bool = Address.allow_unauthenticated,
    public_url: str | None = Address.public_url,
    name: str = "default",
    start_timeout_s: float = 600.0,
) -> RayServerHandle:
    """Serve a model as a Ray Serve deployment of ``replicas`` replicas; return once it answers.

    Each replica is pipeserve's app with its own engine (one model copy, its queue, batching
    policy, admission, errors, ``/stats``, ``/metrics``); Ray's HTTP proxy spreads requests
    over them and replaces a replica whose health check fails. ``docs/ray.md`` maps each of
    Ray's settings to ours.

    Parameters:
        model: None (the bundled model), a Hub id or path each replica can load, or a plain
            function ``fn(inputs, **params) -> list`` (sent to each replica). Not a loaded
            pipeline: each replica loads its own copy, nothing heavy is pickled.
        replicas: how many replicas, each with the cluster's CPUs shared out (or
            ``config.torch_threads``) and PyTorch threads to match.
        address: a running Ray cluster, from a node of it (``"auto"``, ``"host:6379"``; not a
            Ray Client ``ray://`` address); None: ``$RAY_ADDRESS`` if set, else the cluster this
            process is connected to, else a local cluster sized for this machine, started here
            and shut down by the last ``stop()``.
        dashboard: start Ray's dashboard with a local cluster.
        task, device, dtype, policy, config, host, port, allow_unauthenticated, public_url, name,
            start_timeout_s: as for ``serve()``; ``host`` and ``port`` are those of Ray's
            HTTP proxy when this call starts Serve (a running Serve keeps its own);
            ``server.browser_url`` is the proxy's address for a person's browser.

    Raises:
        ServerStartError: a replica failed to load its model, or the deployment did not come up.
        InvalidSetting: an option breaks its rule, the model cannot be sent to a replica, or
            the cluster has too few CPUs for the replicas.
        ImportError: Ray Serve is not installed.

    Example:
        >>> server = serve_on_ray(replicas=2)   # doctest: +SKIP
        >>> len(server.query("hello"))          # doctest: +SKIP
        384
        >>> server.stop()                       # doctest: +SKIP
    """
    check_shippable(model)
    spec = ModelSpec(model=model, task=task, device=device, dtype=dtype)
    where = address_of(host, port, allow_unauthenticated, public_url)
    placement = RayPlacement(replicas=replicas, ray_address=address, ray_dashboard=dashboard)
    policy = BatchPolicy() if policy is None else policy
    config = ServerConfig() if config is None else config
    check_exposure(where.host, config.auth_token, where.allow_unauthenticated)
    try:
        from ray import serve
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    from . import cluster as clusters
    from .handle import RayServerHandle
    from .replica import ReplicaSettings, application, run

    # Ray is called from this thread: a local cluster's processes end when the thread that
    # started them does (PR_SET_PDEATHSIG), so it must be the caller's, not a passing one.
    held = clusters.acquire(placement.ray_address, placement.ray_dashboard)
    try:
        stop_named(name)  # a deployment of this name, replaced; the cluster stays held by this call
        cluster_cpus, node_cpus = clusters.cpus()
        cpus = cpus_per_replica(config, placement.replicas, cluster_cpus, node_cpus)
        proxy = clusters.proxy_address() or (where.host, _free_port(where.host, where.port))
        clusters.start_serve(held, *proxy)
        settings = ReplicaSettings(name, spec, policy, replica_config(config, cpus))
        app = application(settings, deployment_options(policy, config, placement.replicas, cpus))
        try:
            run(app, name, start_timeout_s)
        except Exception as exc:
            serve.delete(name)
            raise ServerStartError(f"the deployment of {spec.describe()!r} did not come up: {exc}") from exc
    except BaseException:
        clusters.release(held)
        raise
    handle = RayServerHandle(settings, proxy[0], proxy[1], held, placement.replicas, cpus, where.public_url)
    _wait_healthy(handle, start_timeout_s)
    register(handle)
    return handle


def check_shippable(model: Any) -> None:
    """Refuse a model that cannot be sent to a replica without pickling weights."""
    if model is None or isinstance(model, (str, os.PathLike)) or inspect.isfunction(model):
        return
    raise InvalidSetting(
        f"serve_on_ray cannot send {type(model).__name__} to its replicas: each replica loads its own copy, so "
        "pass the model's Hub id or path (or a plain function); a loaded model would be pickled to every replica"
    )


def _free_port(host: str, port: int) -> int:
    """``port``, checked free, or a free one when it is 0 (Ray's proxy binds it in its own process)."""
    sock = bind_socket(host, port)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _wait_healthy(handle: RayServerHandle, timeout_s: float) -> None:
    """Until ``/health`` answers 200 through the proxy (it routes a moment after the deployment is up)."""
    deadline = time.monotonic() + min(timeout_s, 60.0)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = handle._client.get(f"{handle.url}/health", timeout=10.0)
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        time.sleep(0.2)  # polling a remote proxy: there is no event to wait on
    handle.stop()
    raise ServerStartError(f"the deployment came up but /health through Ray's proxy did not answer 200: {last}")

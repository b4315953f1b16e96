"""The Ray cluster a deployment runs on: one this process connected to, or a local one it started.

``acquire()`` connects to ``address`` (else ``$RAY_ADDRESS``; else to the cluster this
process is already connected to) or starts a local cluster sized for this machine, without
Ray's dashboard unless asked. Each deployment holds the cluster while it runs; when the last
one lets go (``release``), a cluster started here is shut down (its processes end, its ports
are freed) and a cluster only connected to is left running (this process disconnects, unless
it was connected before pipeserve was asked). Serve is started on the cluster with
pipeserve's address when it is not running yet; one already running keeps its own.

Ray's own messages stay out of notebook cells: the cluster's logs are not forwarded to this
process, Serve's logger here (``ray.serve``) is set to WARNING (set it back with
``logging.getLogger("ray.serve").setLevel(logging.INFO)`` to see Serve's progress lines), and
the retry notices Ray prints when the last ``stop()`` ends Serve's controller are off, on a
cluster started here and on one this process connected to (not on one the user connected to).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psutil
import ray
from ray import serve

from .._server.run.settings import check_ray_address

__all__ = ["Cluster", "acquire", "release", "start_local", "quiet_serve_logs", "cpus", "start_serve", "proxy_address"]


@dataclass
class Cluster:
    """The cluster this process uses, and what pipeserve started on it."""

    address: str
    started: bool
    """pipeserve started this cluster (and shuts it down when the last deployment stops)."""
    connected: bool
    """pipeserve connected this process to it (and disconnects when the last deployment stops)."""
    serve_started: bool = False
    """pipeserve started Serve on it (and shuts Serve down with the last deployment)."""
    users: int = 0


_lock = threading.Lock()
_cluster: Cluster | None = None


def acquire(address: str | None, dashboard: bool) -> Cluster:
    """The cluster to deploy on (see the module docstring), held until ``release``."""
    global _cluster
    with _lock:
        if _cluster is None:
            _cluster = _connect(address, dashboard)
        quiet_serve_logs()
        _cluster.users += 1
        return _cluster


def release(cluster: Cluster) -> None:
    """Let go of ``cluster``; the last user shuts down what pipeserve started there."""
    global _cluster
    with _lock:
        cluster.users -= 1
        if cluster.users > 0:
            return
        _cluster = None
        if cluster.serve_started and (cluster.started or not serve.status().applications):
            serve.shutdown()  # type: ignore[no-untyped-call]  # its proxy and controller end first
        if cluster.connected:  # a cluster started here: its processes end; else this process disconnects
            ray.shutdown()


def _connect(address: str | None, dashboard: bool) -> Cluster:
    target = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        check_ray_address(target, "$RAY_ADDRESS")
    if ray.is_initialized():
        if target is not None and target not in ("auto", _address()):
            raise RuntimeError(f"this process is already connected to the Ray cluster at {_address()}, not {target}")
        return Cluster(_address(), started=False, connected=False)
    if target is not None:
        with _quiet_retries_of_this_process():
            ray.init(address=target, logging_level=logging.WARNING, log_to_driver=False)
        return Cluster(_address(), started=False, connected=True)
    start_local(dashboard)
    return Cluster(_address(), started=True, connected=True)


START_ATTEMPTS = 3
"""Ray gives a new local node a fixed 30 s to register with its GCS (``ray/_private/node.py``), and its
GCS calls their own deadlines; a busy machine with few cores can miss them (seen on a 2-core machine
while another process loaded PyTorch). A local start that fails is cleaned up and tried again."""


def start_local(dashboard: bool) -> None:
    """Start a local cluster sized for this machine and connect this process to it.

    Ray gives a local cluster its default, token authentication (it sets ``RAY_AUTH_MODE=token`` in
    this process and writes a token to ``~/.ray/auth_token``; ``RAY_AUTH_MODE=disabled``, set before,
    opts out); its notice of that default is kept out of the cell, and so are Ray's retry
    notices (``_quiet_retries_of_this_process``). A start that fails (see ``START_ATTEMPTS``)
    ends the processes it started and is tried again; the last failure is raised."""
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            before = _children()
            try:
                with _quiet_retries_of_this_process():
                    ray.init(
                        address="local",
                        num_cpus=os.cpu_count() or 1,
                        include_dashboard=dashboard,
                        logging_level=logging.WARNING,
                        log_to_driver=False,
                    )
                return
            except Exception as error:  # Ray raises a bare Exception (or a RuntimeError) for a late node
                ray.shutdown()
                _end(_children() - before)
                if attempt == START_ATTEMPTS:
                    tries = f"{START_ATTEMPTS} tries"
                    raise RuntimeError(f"a local Ray cluster did not start in {tries}: {error}") from error
    finally:
        notice.setLevel(level)


def _children() -> set[psutil.Process]:
    """This process's descendants that belong to Ray (its GCS, raylet, workers: "ray" in the command line)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            if "ray" in " ".join(child.cmdline()):
                found.add(child)
    return found


def _end(processes: set[psutil.Process]) -> None:
    """End what a failed start left (its GCS, raylet and workers), so the next try starts clean."""
    for process in processes:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(list(processes), timeout=10)


@contextmanager
def _quiet_retries_of_this_process() -> Iterator[None]:
    """For ``ray.init``: keep out of the cell the lines "(raylet) Task ServeController... failed.
    There are infinite retries remaining" that Ray prints for each call of this process still
    pending when Serve's controller ends (at the last ``stop()``); a task that fails for good still
    raises. This process's Ray worker (and a cluster started here) reads the setting from the
    environment when it starts, so ``RAY_enable_output_error_log_if_still_retry=0`` is set for
    ``ray.init`` only (a value set by the user wins); ``_system_config`` would work only for a
    cluster started here, not for one this process connects to."""
    name = "RAY_enable_output_error_log_if_still_retry"
    if name in os.environ:
        yield
        return
    os.environ[name] = "0"
    try:
        yield
    finally:
        del os.environ[name]


def quiet_serve_logs() -> None:
    """Serve's logger in this process at WARNING: its progress lines stay out of the cell."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _address() -> str:
    return str(ray.get_runtime_context().gcs_address)


def cpus() -> tuple[float, float]:
    """``(cluster CPUs, CPUs of its largest node)``."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    per_node = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes]
    return sum(per_node), max(per_node, default=0.0)


def start_serve(cluster: Cluster, host: str, port: int, tries: int = 3) -> None:
    """Start Serve's HTTP proxy at ``host:port`` unless Serve already runs on the cluster.

    No proxy timeout is set: each replica answers 504 at pipeserve's own ``timeout_s``. On a busy machine the
    proxy's actor can miss the time Ray gives it to start, and Ray kills it (``ActorDiedError``, seen in a CI run
    with a core kept busy): Serve is then shut down and started again, ``tries`` times in all."""
    if proxy_address() is not None:
        return
    options: dict[str, Any] = {"host": host, "port": port}
    for attempt in range(tries):
        try:
            serve.start(http_options=options, logging_config={"log_level": "WARNING"})
            break
        except ray.exceptions.RayError:
            serve.shutdown()  # type: ignore[no-untyped-call]
            if attempt == tries - 1:
                raise
            logging.getLogger("pipeserve_nb").warning(
                "Ray Serve's proxy did not start (try %d of %d): starting it again", attempt + 1, tries
            )
    cluster.serve_started = True


def proxy_address() -> tuple[str, int] | None:
    """``(host, port)`` of the running Serve's HTTP proxy, or None when Serve does not run."""
    from ray.serve.context import _get_global_client  # the one way to read a running Serve's address

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    config = client.http_config
    return str(config.host), int(config.port)

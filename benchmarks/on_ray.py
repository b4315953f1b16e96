"""``make bench``'s rows for Ray Serve (issue 15): pipeserve on Ray (1 and 2 replicas) against
pipeserve alone and against a plain Ray Serve deployment batched by ``@serve.batch``, on the
same model, and where the time goes.

Five targets, each measured the same way (closed loops at c=1, the load generator in a process of
its own, and c=32, the generator in this process), one after the other, each on its own:

- **pipeserve alone**: ``python -m pipeserve_nb serve`` in a process of its own (a replica is a
  process of its own too), before any Ray process runs;
- **pipeserve on Ray, 1 and 2 replicas**: ``serve_on_ray()``, behind Ray's HTTP proxy;
- **Ray Serve @serve.batch**: the plain way to batch on Ray: one replica, the same model, calls
  batched by ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)``;
- **Ray's proxy, no model**: a deployment that answers at once: what the proxy and Ray's
  routing cost a request by themselves, and how many of them the proxy alone can answer.

Where the time goes: during each c=32 loop (its generator runs in this process, so that its CPU
is this process's) the CPU seconds of each process are read (``psutil``) and put in roles (the
server's processes (pipeserve's own, or Ray's replicas), Ray's proxy, Ray's other processes, the
load generator, anything else the machine ran), per answer. On 2 cores every CPU second the proxy
spends is one the model does not get.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

import pipeserve_nb as ps

from .lineup import Sizes

ALONE = "pipeserve alone (a process of its own)"
ONE = "pipeserve on Ray, 1 replica"
TWO = "pipeserve on Ray, 2 replicas"
PLAIN = "Ray Serve @serve.batch (cap 32, 5 ms), 1 replica"
ECHO = "Ray's proxy, no model (answers at once)"
TARGETS = (ALONE, ONE, TWO, PLAIN, ECHO)

SERVER = "the server's processes (replicas)"
PROXY = "Ray's HTTP proxy"
RAY_REST = "Ray's other processes"
LOADGEN = "the load generator"
REST = "anything else"
ROLES = (SERVER, PROXY, RAY_REST, LOADGEN, REST)
_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")
"""The fields of ``psutil.cpu_times()`` that are busy time (guest time is already in user time)."""

PLAIN_BATCH, PLAIN_WAIT_S = 32, 0.005
BATCH_SIZE_HEADER = "x-batch-size"
"""The header that says how many inputs shared a request's model call (``docs/http-api.md``): the plain
deployment sends it too, so the load generator's summary reads both the same way."""


def _start_serve(port: int, tries: int = 3) -> None:
    """Start Serve's proxy; on a busy machine its actor can miss Ray's 60 s to start (Ray then kills it,
    ``ActorDiedError``): shut Serve down and try again."""
    import ray
    from ray import serve

    for attempt in range(tries):
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
            return
        except ray.exceptions.RayError:
            serve.shutdown()  # type: ignore[no-untyped-call]
            if attempt == tries - 1:
                raise


def measure_on_ray(texts: list[str], sizes: Sizes) -> dict[str, Any]:
    """Each target at c=1 and c=32, with the c=32 loop's CPU by role (see the module docstring)."""
    out: dict[str, Any] = {"cpus": os.cpu_count(), "targets": {}}
    with _alone() as (url, pid):
        out["targets"][ALONE] = _measure(url, texts, sizes, lambda: {pid: SERVER})
    import ray
    from ray import serve

    _start_ray()  # on this machine, whatever $RAY_ADDRESS says: its processes' CPU is read
    try:
        port = _free_port()
        _start_serve(port)
        url = f"http://127.0.0.1:{port}"
        for label, replicas in ((ONE, 1), (TWO, 2)):
            with ps.serve_on_ray(replicas=replicas, name="bench-ray") as server:
                out["targets"][label] = _measure(server.url, texts, sizes, _ray_roles)
                out["targets"][label]["replica_mb"] = [ps.rss_mb(p["pid"]) for p in server.replica_processes()]
        for label, app in ((PLAIN, _plain_batched()), (ECHO, _echo())):
            with _deployed(app) as handle:
                out["targets"][label] = _measure(url, texts, sizes, _ray_roles)
                if label == PLAIN:
                    sizes_seen = handle.batch_sizes.remote().result()
                    out["targets"][label]["plain_mean_batch"] = statistics.fmean(sizes_seen) if sizes_seen else None
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()
    return out


START_ATTEMPTS = 3
"""Ray gives a new node a fixed 30 s to register (``ray/_private/node.py``); a busy 2-core machine can miss it."""


def _start_ray() -> None:
    """A local Ray cluster for this machine, started here as a user of ``serve_on_ray`` would start their
    own (``docs/ray.md``): ``serve_on_ray`` then deploys on the cluster this process is connected to."""
    import logging

    import ray

    os.environ.setdefault("RAY_enable_output_error_log_if_still_retry", "0")  # no retry notices at shutdown
    for attempt in range(START_ATTEMPTS):
        try:
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
            break
        except Exception:  # Ray raises a bare Exception (or a RuntimeError) when its node is late
            if attempt == START_ATTEMPTS - 1:
                raise
            ray.shutdown()
            for child in psutil.Process().children(recursive=True):  # the failed cluster's processes
                with contextlib.suppress(psutil.Error):
                    if "ray" in " ".join(child.cmdline()):
                        child.kill()
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _measure(url: str, texts: list[str], sizes: Sizes, roles: Callable[[], dict[int, str]]) -> dict[str, Any]:
    ps.run_load(url, ps.ClosedLoop(concurrency=4, requests=max(8, sizes.c1_requests // 5)), texts=texts, progress=False)
    c1 = ps.run_load(url, ps.ClosedLoop(concurrency=1, requests=sizes.c1_requests), texts=texts, progress=False)
    who = {**roles(), os.getpid(): LOADGEN}
    load = ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s)
    before, started = _cpu(who), time.monotonic()
    c32 = ps.run_load(url, load, texts=texts, progress=False, in_process=True)
    after, wall_s = _cpu(who), time.monotonic() - started
    answered = max(c32.summary.answered, 1)
    by_role = dict.fromkeys(ROLES, 0.0)
    for pid, (role, seconds) in after["processes"].items():
        if pid in before["processes"]:
            by_role[role] += seconds - before["processes"][pid][1]
    busy = after["busy_s"] - before["busy_s"]
    by_role[REST] = max(busy - sum(by_role.values()), 0.0)
    return {
        "c1": c1.summary.as_dict(),
        "c32": c32.summary.as_dict(),
        "cpu_ms_per_answer": {role: 1000 * s / answered for role, s in by_role.items()},
        "idle_share": max(1 - busy / (wall_s * (os.cpu_count() or 1)), 0.0),
    }


def _cpu(roles: dict[int, str]) -> dict[str, Any]:
    """CPU seconds (user + system) of each process of ``roles``, and of the whole machine (busy).

    This process is read with ``time.process_time`` (nanoseconds): ``psutil`` reads clock ticks
    (10 ms), and a quick run's generator can spend less than one tick.
    """
    found = {}
    for pid, role in roles.items():
        if pid == os.getpid():
            found[pid] = (role, time.process_time())
            continue
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[pid] = (role, t.user + t.system)
    total = psutil.cpu_times()
    return {"processes": found, "busy_s": sum(getattr(total, field, 0.0) for field in _BUSY)}


def _ray_roles() -> dict[int, str]:
    """Every Ray process of this machine by role: replicas (``ray::ServeReplica...``), the proxy, the rest."""
    roles = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if "ServeReplica" in command:
            roles[proc.pid] = SERVER
        elif "ProxyActor" in command:
            roles[proc.pid] = PROXY
        elif command.startswith("ray::") or "/ray/" in command or proc.info["name"] in ("raylet", "gcs_server"):
            roles[proc.pid] = RAY_REST
    return roles


@contextmanager
def _alone() -> Iterator[tuple[str, int]]:
    with ps.worker_processes(1) as (worker,):
        yield worker.url, worker.pid


@contextmanager
def _deployed(app: Any) -> Iterator[Any]:
    from ray import serve

    handle = serve.run(app, name="bench-plain", route_prefix="/")
    try:
        yield handle
    finally:
        serve.delete("bench-plain")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plain_batched() -> Any:
    """The plain Ray Serve way: the model called in the replica's handler, batched by ``@serve.batch``
    (its replica gets every CPU, as pipeserve's single replica does)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(ray_actor_options={"num_cpus": os.cpu_count() or 1}, max_ongoing_requests=64)
    class PlainBatched:
        def __init__(self) -> None:
            self.model = ps.load_model()
            self.sizes: list[int] = []

        @serve.batch(max_batch_size=PLAIN_BATCH, batch_wait_timeout_s=PLAIN_WAIT_S)
        async def embed(self, texts: list[str]) -> list[tuple[list[float], int]]:
            self.sizes.append(len(texts))
            return [(vector, len(texts)) for vector in self.model(texts)]

        async def __call__(self, request: Request) -> JSONResponse:
            vector, batch = await self.embed((await request.body()).decode())
            return JSONResponse(vector, headers={BATCH_SIZE_HEADER: str(batch)})

        def batch_sizes(self) -> list[int]:
            return self.sizes

    return PlainBatched.bind()  # type: ignore[attr-defined]


def _echo() -> Any:
    """A deployment that answers at once: Ray's proxy and routing, and nothing else."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    class Echo:
        async def __call__(self, request: Request) -> JSONResponse:
            return JSONResponse(len(await request.body()))

    return Echo.bind()  # type: ignore[attr-defined]

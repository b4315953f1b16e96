"""Running a server in a background thread of a notebook kernel (or any program).

``serve()`` binds the socket in the caller's thread (so "port in use" raises right
there), loads the model on the inference thread while the caller waits (so a load error
raises in the cell with its real cause), then runs uvicorn on a fresh event loop in a
daemon thread and returns once ``/health`` answers 200.

Servers are kept in a registry by name: starting one under a name in use stops the old
one first, so re-running a cell never leaves a second model copy behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import html
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from ._app import create_app
from ._client import DEFAULT_TIMEOUT_S, Inputs, aquery, query
from ._config import ServerConfig
from ._engine import Engine
from ._exceptions import ServerStartError
from ._models import ModelSpec
from ._policy import BatchPolicy, Policy

__all__ = ["serve", "stop_all", "running_servers", "ServerHandle"]

_registry: dict[str, ServerHandle] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


class ServerHandle:
    """A server running in a background thread: its address, helpers and ``stop()``.

    Use it as a context manager to stop the server on leaving the block.
    """

    def __init__(
        self, name: str, engine: Engine, server: uvicorn.Server, thread: threading.Thread, host: str, port: int
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._engine = engine
        self._server = server
        self._thread = thread
        self._stopped = False
        self._client = httpx.Client(trust_env=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; ``POST`` it to run the model."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def model(self) -> str:
        """The served model's name."""
        return self._engine.model_name

    @property
    def policy(self) -> Policy:
        """The batching policy."""
        return self._engine.policy

    @property
    def config(self) -> ServerConfig:
        """The server limits."""
        return self._engine.config

    @property
    def running(self) -> bool:
        """True until ``stop()`` or until the server thread ends."""
        return not self._stopped and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        """The daemon thread running the server's event loop."""
        return self._thread

    def query(
        self, inputs: Inputs, *, parameters: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Run ``inputs`` through the server and return the outputs (sync, safe in a cell)."""
        return query(self.url, inputs, parameters=parameters, timeout_s=timeout_s, client=self._client)

    async def aquery(
        self, inputs: Inputs, *, parameters: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Async ``query``: ``await server.aquery("text")``."""
        return await aquery(self.url, inputs, parameters=parameters, timeout_s=timeout_s)

    def health(self) -> dict[str, Any]:
        """The ``/health`` answer as a dict (``status`` is ``"ok"`` when serving)."""
        result: dict[str, Any] = self._client.get(f"{self.url}/health", timeout=10.0).json()
        return result

    def stats(self) -> dict[str, Any]:
        """The ``/stats`` answer as a dict."""
        result: dict[str, Any] = self._client.get(f"{self.url}/stats", timeout=10.0).json()
        return result

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking requests, let in-flight ones finish (up to ``timeout_s``, default
        ``config.drain_timeout_s``), answer the rest with 503, free the port, end the thread.

        Safe to call more than once.
        """
        if self._stopped:
            return
        self._stopped = True
        drain_s = self.config.drain_timeout_s if timeout_s is None else timeout_s
        loop = self._engine.loop
        if loop is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._engine.drain(drain_s), loop).result(drain_s + 5)
        self._server.should_exit = True
        self._thread.join(drain_s + 5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._engine.release(timeout_s=1.0)
        self._client.close()
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerHandle {self.name!r} {state} at {self.url} model={self.model!r} policy={self.policy!r}>"

    def _repr_html_(self) -> str:
        state = "running" if self.running else "stopped"
        rows = [
            ("name", self.name),
            ("state", state),
            ("url", self.url),
            ("model", self.model),
            ("policy", repr(self.policy)),
            ("limits", f"max_queue={self.config.max_queue}, timeout_s={self.config.timeout_s:g}"),
        ]
        cells = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>pipeserve_nb server</caption>{cells}</table>"


def serve(
    model: Any = None,
    *,
    task: str | None = None,
    device: str | int | None = None,
    policy: Policy | None = None,
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "default",
    start_timeout_s: float = 300.0,
) -> ServerHandle:
    """Start a model server in a background thread and return once it answers ``/health``.

    Parameters:
        model: None for the bundled all-MiniLM-L6-v2 sentence embedder, a Hub id or local
            path, a ``transformers`` pipeline, or a callable ``fn(inputs: list, **params) -> list``.
        task: pipeline task when ``model`` is a Hub id or path (e.g. ``"fill-mask"``).
        device: e.g. ``"cuda:0"``; None keeps transformers' default.
        policy: batching policy, default ``BatchPolicy()``.
        config: limits (queue size, timeout, drain time), default ``ServerConfig()``.
        host: address to bind; loopback by default.
        port: port to bind; 0 picks a free one.
        name: registry key; a running server with this name is stopped first.
        start_timeout_s: how long to wait for the server to come up.

    Raises:
        ServerStartError: the model failed to load, the port is taken, or the server did
            not come up; the real cause is chained.

    Example:
        >>> server = serve()                      # doctest: +SKIP
        >>> server.query("hello world")[:3]       # doctest: +SKIP
    """
    spec = ModelSpec(model=model, task=task, device=device)
    policy = BatchPolicy() if policy is None else policy
    config = ServerConfig() if config is None else config
    with _registry_lock:
        previous = _registry.pop(name, None)
    if previous is not None:
        previous.stop()

    sock = bind_socket(host, port)
    engine = Engine(spec, policy, config)
    try:
        engine.load()
    except Exception as exc:
        sock.close()
        engine.release(timeout_s=5.0)
        raise ServerStartError(f"could not load model {spec.describe()!r}: {type(exc).__name__}: {exc}") from exc

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(engine),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(config.drain_timeout_s)),
        )
    )
    crashes: list[BaseException] = []
    thread = threading.Thread(target=_run, args=(server, sock, crashes), name=f"pipeserve-server-{name}", daemon=True)
    thread.start()
    handle = ServerHandle(name, engine, server, thread, host, sock.getsockname()[1])
    try:
        _wait_until_started(server, thread, engine, crashes, start_timeout_s)
        health = handle._client.get(f"{handle.url}/health", timeout=10.0)
        if health.status_code != 200:
            raise ServerStartError(f"the server started but /health answered {health.status_code}: {health.text}")
    except BaseException:
        handle.stop(timeout_s=1.0)
        sock.close()
        raise
    with _registry_lock:
        _registry[name] = handle
    _register_atexit()
    return handle


def stop_all(timeout_s: float | None = None) -> None:
    """Stop every server started by ``serve()`` in this process (drain time as in ``stop``)."""
    with _registry_lock:
        handles = list(_registry.values())
    for handle in handles:
        handle.stop(timeout_s)


def _stop_all_at_exit() -> None:
    stop_all(timeout_s=2.0)  # interpreter exit should not wait out a long drain


def running_servers() -> dict[str, ServerHandle]:
    """The running servers by name."""
    with _registry_lock:
        return {name: h for name, h in _registry.items() if h.running}


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (0 = a free port) in the caller's thread; raise ``ServerStartError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: no silent sharing
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        holder = next((h for h in running_servers().values() if h.port == port), None)
        hint = f" by pipeserve server {holder.name!r}; stop it or pick another port" if holder else ""
        raise ServerStartError(f"cannot bind {host}:{port}: {exc.strerror or exc}{hint}") from exc
    sock.set_inheritable(True)
    return sock


def _run(server: uvicorn.Server, sock: socket.socket, crashes: list[BaseException]) -> None:
    try:
        server.run(sockets=[sock])
    except BaseException as exc:
        crashes.append(exc)


def _wait_until_started(
    server: uvicorn.Server,
    thread: threading.Thread,
    engine: Engine,
    crashes: list[BaseException],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            cause = engine.failure or (crashes[0] if crashes else None)
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            raise ServerStartError(f"the server thread ended during start-up{detail}") from cause
        if time.monotonic() > deadline:
            raise ServerStartError(f"the server did not start within start_timeout_s={timeout_s:g}")
        time.sleep(0.01)


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_stop_all_at_exit)
        _atexit_registered = True

"""Any ASGI app under uvicorn in a daemon thread of this process (a notebook kernel, a script).

``serve_app()`` binds the socket in the caller's thread (so "port in use" raises right
there and the real port is known at once), runs uvicorn on a fresh event loop in a daemon
thread, and returns once the server accepts connections. A start-up failure inside that
thread (uvicorn exits with ``SystemExit``) raises ``ServerStartError`` in the caller with
the real cause.

Handles are kept in a registry by name: starting one under a name in use stops the old
one first, so re-running a notebook cell never leaves a second server behind.
"""

from __future__ import annotations

import atexit
import html
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

import uvicorn

from ._exceptions import ServerStartError

__all__ = ["AppHandle", "serve_app", "stop_all", "running_servers", "bind_socket", "start_in_thread"]

H = TypeVar("H", bound="AppHandle")

_registry: dict[str, AppHandle] = {}
_registry_lock = threading.Lock()
_atexit_registered = False
DEFAULT_DRAIN_S = 10.0


class AppHandle:
    """An ASGI app served from a background thread: its address and ``stop()``.

    Use it as a context manager to stop the server on leaving the block.
    """

    def __init__(self, name: str, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._server = server
        self._thread = thread
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True until ``stop()`` or until the server thread ends."""
        return not self._stopped and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        """The daemon thread running the server's event loop."""
        return self._thread

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the server within about ``timeout_s`` (default 10 s), free the port, end the
        thread. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        drain_s = self._default_drain_s() if timeout_s is None else timeout_s
        self._before_shutdown(drain_s)
        self._server.should_exit = True
        self._thread.join(drain_s + 5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._after_shutdown()
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        details = "".join(f" {k}={v!r}" for k, v in self._details())
        return f"<{type(self).__name__} {self.name!r} {state} at {self.url}{details}>"

    def _repr_html_(self) -> str:
        rows = [("name", self.name), ("state", "running" if self.running else "stopped"), ("url", self.url)]
        rows += [(k, str(v)) for k, v in self._details()]
        cells = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>{html.escape(type(self).__name__)}</caption>{cells}</table>"

    # -- hooks for subclasses ------------------------------------------------------------

    def _details(self) -> list[tuple[str, Any]]:
        return []

    def _default_drain_s(self) -> float:
        return DEFAULT_DRAIN_S

    def _before_shutdown(self, drain_s: float) -> None:
        """Runs before uvicorn is told to exit (e.g. to drain a queue)."""

    def _after_shutdown(self) -> None:
        """Runs after the server thread ended (e.g. to release a model)."""


def serve_app(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "app",
    start_timeout_s: float = 300.0,
    drain_timeout_s: float = DEFAULT_DRAIN_S,
) -> AppHandle:
    """Serve any ASGI ``app`` from a daemon thread; return once it accepts connections.

    A running server registered under ``name`` is stopped first.

    Raises:
        ServerStartError: the port is taken or the app failed to start; the cause is chained.
    """
    stop_named(name)
    sock = bind_socket(host, port)
    handle = start_in_thread(
        lambda server, thread, port: AppHandle(name, server, thread, host, port),
        app,
        sock,
        name=name,
        start_timeout_s=start_timeout_s,
        drain_timeout_s=drain_timeout_s,
        startup_cause=lambda: None,
    )
    register(handle)
    return handle


def start_in_thread(
    make_handle: Callable[[uvicorn.Server, threading.Thread, int], H],
    app: Any,
    sock: socket.socket,
    *,
    name: str,
    start_timeout_s: float,
    drain_timeout_s: float,
    startup_cause: Callable[[], BaseException | None],
) -> H:
    """Run ``app`` on the bound ``sock`` in a daemon thread and wait until it has started.

    ``startup_cause`` names the real reason when the thread dies during start-up (uvicorn
    itself only exits); the handle is stopped before ``ServerStartError`` is raised.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(drain_timeout_s)),
        )
    )
    crashes: list[BaseException] = []
    thread = threading.Thread(target=_run, args=(server, sock, crashes), name=f"pipeserve-server-{name}", daemon=True)
    thread.start()
    handle = make_handle(server, thread, sock.getsockname()[1])
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive():
                cause = startup_cause() or (crashes[0] if crashes else None)
                detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
                raise ServerStartError(f"the server thread ended during start-up{detail}") from cause
            if time.monotonic() > deadline:
                raise ServerStartError(f"the server did not start within start_timeout_s={start_timeout_s:g}")
            time.sleep(0.01)
    except BaseException:
        handle.stop(timeout_s=1.0)
        sock.close()
        raise
    return handle


def register(handle: AppHandle) -> None:
    """Keep ``handle`` in the registry under its name, and stop it at interpreter exit."""
    global _atexit_registered
    with _registry_lock:
        _registry[handle.name] = handle
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True


def stop_named(name: str) -> None:
    """Stop the registered server called ``name``, if any."""
    with _registry_lock:
        previous = _registry.pop(name, None)
    if previous is not None:
        previous.stop()


def stop_all(timeout_s: float | None = None) -> None:
    """Stop every server started from this process (drain time as in ``stop``)."""
    with _registry_lock:
        handles = list(_registry.values())
    for handle in handles:
        handle.stop(timeout_s)


def running_servers() -> dict[str, AppHandle]:
    """The running servers by name."""
    with _registry_lock:
        return {name: h for name, h in _registry.items() if h.running}


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (0 = a free port) in the caller's thread; raise ``ServerStartError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; with proto 0, Nagle's algorithm meets the client's delayed ACK and
    # every response waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
    except BaseException as exc:  # uvicorn exits with SystemExit on a start-up failure
        crashes.append(exc)


def _stop_all_at_exit() -> None:
    stop_all(timeout_s=2.0)  # interpreter exit should not wait out a long drain

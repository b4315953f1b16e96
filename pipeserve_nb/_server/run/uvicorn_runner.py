"""uvicorn serving one app on a socket the caller bound, with one shutdown order.

``ServerThread`` runs it in a daemon thread of this process (a notebook kernel, a script):
``start()`` returns once the server accepts connections, or raises ``ServerStartError``
with the real cause (uvicorn in a thread only exits); ``stop()`` is the one signal (the
server's exit flag) and waits for the thread. The command line runs the same ``Server`` on
the main thread, where SIGTERM and Ctrl-C set the same flag.

Shutdown, on the server's own loop, in this order (``Server.shutdown``):

1. ``drain(timeout_s)``, when the app has one (the model server's engine: no new requests,
   waiting ones get ``timeout_s`` to finish, the rest are answered 503), before uvicorn
   closes any connection, so every request in flight gets an answer;
2. uvicorn's own shutdown: close the listening socket and the connections;
3. the app's lifespan shutdown (the engine ends its inference thread and drops the model).

uvicorn runs with pipeserve's HTTP protocol (``http_protocol``): httptools, a request head that
passes its bound without ending cut off with 431, and each response sent in one write; a model
server passes the protocol built for its limits and its numbers (``http=``).

``bind_socket`` binds in the caller's thread, so "port in use" raises right there and the
real port is known at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from ..._exceptions import ServerStartError
from ..core.config import ServerConfig
from ..edge.http_protocol import http_protocol
from .registry import holder_of

__all__ = ["Server", "ServerThread", "bind_socket"]

DEFAULT_HEAD_BYTES = 65536
"""Most bytes of an unfinished request head before the connection is cut off (``http_protocol``)."""
Drain = Callable[[float], Awaitable[None]]


class Server(uvicorn.Server):
    """A uvicorn server that drains the app before it closes connections (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        *,
        drain: Drain | None = None,
        drain_timeout_s: float = ServerConfig.drain_timeout_s,
        on_started: Callable[[], None] | None = None,
        log: bool = False,
        http: type[asyncio.Protocol] | None = None,
    ) -> None:
        quiet: dict[str, Any] = {} if log else {"log_config": None}
        protocol = http_protocol(DEFAULT_HEAD_BYTES) if http is None else http
        super().__init__(uvicorn.Config(app, access_log=False, lifespan="on", http=protocol, **quiet))
        self.drain = drain
        self.on_started = on_started
        self.set_drain_timeout(drain_timeout_s)

    def set_drain_timeout(self, seconds: float) -> None:
        """How long the drain (or, without one, uvicorn's wait for open requests) may take."""
        self.drain_timeout_s = seconds
        self.config.timeout_graceful_shutdown = max(1, math.ceil(seconds))

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.drain is not None:
            with contextlib.suppress(Exception):  # a failed drain must not keep the server up
                await self.drain(self.drain_timeout_s)
        await super().shutdown(sockets)


class ServerThread:
    """``Server`` on its own event loop in a daemon thread named ``pipeserve-server-<name>``."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        name: str,
        drain: Drain | None = None,
        drain_timeout_s: float,
        http: type[asyncio.Protocol] | None = None,
    ) -> None:
        self.host, self.port = sock.getsockname()[:2]
        self._sock = sock
        self._settled = threading.Event()  # the server started, or its thread ended
        self.server = Server(
            app,
            drain=drain,
            drain_timeout_s=drain_timeout_s,
            on_started=self._settled.set,
            http=http,
        )
        self.crash: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"pipeserve-server-{name}", daemon=True)

    @property
    def alive(self) -> bool:
        """Whether the server thread is still running."""
        return self.thread.is_alive()

    def start(self, timeout_s: float) -> None:
        """Start the thread; return once the server accepts connections.

        Raises:
            ServerStartError: the server did not start within ``timeout_s``, or its thread
                ended during start-up (the cause uvicorn exited with is chained).
        """
        self.thread.start()
        if self._settled.wait(timeout_s) and self.server.started:
            return
        timed_out = not self._settled.is_set()
        self.stop(1.0)
        self._sock.close()
        if timed_out:
            raise ServerStartError(f"the server did not start within start_timeout_s={timeout_s:g}")
        cause = self.crash
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        raise ServerStartError(f"the server thread ended during start-up{detail}") from cause

    def stop(self, drain_timeout_s: float) -> None:
        """Ask the server to exit (draining for up to ``drain_timeout_s``) and wait for its thread."""
        self.server.set_drain_timeout(drain_timeout_s)
        self.server.should_exit = True
        if not self.thread.is_alive():
            return
        self.thread.join(drain_timeout_s + 10)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(5)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # uvicorn exits with SystemExit on a start-up failure
            self.crash = exc
        finally:
            self._settled.set()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (0 = a free port) in the caller's thread; raise ``ServerStartError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; with proto 0, Nagle's algorithm meets the client's delayed ACK and
    # every response waits for the delayed-ACK timer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: no silent sharing
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        holder = holder_of(port)
        hint = f" by pipeserve server {holder!r}; stop it or pick another port" if holder else ""
        raise ServerStartError(f"cannot bind {host}:{port}: {exc.strerror or exc}{hint}") from exc
    sock.set_inheritable(True)
    return sock

"""``serve()``: a pipeserve_nb model server in a background thread, and its handle.

The model is loaded on the inference thread while the caller waits, before uvicorn
starts, so a load error raises in the cell with its real cause; then the app runs in a
daemon thread (``_thread_server``) and ``serve()`` returns once ``/health`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import httpx
import uvicorn

from ._app import create_app
from ._auth import is_loopback
from ._client import DEFAULT_TIMEOUT_S, Inputs, aquery, auth_headers, query
from ._config import ServerConfig
from ._engine import Engine
from ._exceptions import ServerStartError
from ._models import ModelSpec
from ._policy import BatchPolicy, Policy
from ._thread_server import AppHandle, bind_socket, register, start_in_thread, stop_named

__all__ = ["ServerHandle", "serve", "check_exposure"]

logger = logging.getLogger("pipeserve_nb")


class ServerHandle(AppHandle):
    """A model server running in a background thread: address, helpers and ``stop()``."""

    def __init__(
        self, name: str, engine: Engine, server: uvicorn.Server, thread: threading.Thread, host: str, port: int
    ) -> None:
        super().__init__(name, server, thread, host, port)
        self._engine = engine
        self._client = httpx.Client(trust_env=False, headers=auth_headers(engine.config.auth_token))

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
    def failure(self) -> BaseException | None:
        """What killed the inference worker, if it died (then ``/health`` answers 503)."""
        return self._engine.failure

    def query(
        self, inputs: Inputs, *, parameters: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Run ``inputs`` through the server and return the outputs (sync, safe in a cell)."""
        return query(self.url, inputs, parameters=parameters, timeout_s=timeout_s, client=self._client)

    async def aquery(
        self, inputs: Inputs, *, parameters: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Async ``query``: ``await server.aquery("text")``."""
        token = self.config.auth_token
        return await aquery(self.url, inputs, parameters=parameters, timeout_s=timeout_s, token=token)

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
        super().stop(timeout_s)

    def _details(self) -> list[tuple[str, Any]]:
        details: list[tuple[str, Any]] = [("model", self.model), ("policy", self.policy)]
        if self.failure is not None:
            details.append(("failure", f"{type(self.failure).__name__}: {self.failure}"))
        return details

    def _default_drain_s(self) -> float:
        return self.config.drain_timeout_s

    def _before_shutdown(self, drain_s: float) -> None:
        loop = self._engine.loop
        if loop is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):  # the loop is gone or stuck: shut down regardless
                asyncio.run_coroutine_threadsafe(self._engine.drain(drain_s), loop).result(drain_s + 5)

    def _after_shutdown(self) -> None:
        self._engine.release(timeout_s=1.0)
        self._client.close()


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
    allow_unauthenticated: bool = False,
    start_timeout_s: float = 300.0,
) -> ServerHandle:
    """Start a model server in a background thread and return once it answers ``/health``.

    Parameters:
        model: None for the bundled all-MiniLM-L6-v2 sentence embedder, a Hub id or local
            path, a ``transformers`` pipeline, a model from ``load_model()`` (served as it
            is: no second copy), or a callable ``fn(inputs: list, **params) -> list``.
        task: pipeline task when ``model`` is a Hub id or path (e.g. ``"fill-mask"``).
        device: e.g. ``"cuda:0"``; None keeps transformers' default. Only for a model
            pipeserve loads (None or a Hub id or path).
        policy: batching policy, default ``BatchPolicy()``.
        config: limits (queue size, timeout, drain time), default ``ServerConfig()``.
        host: address to bind; loopback by default. Any other address (reachable from other
            machines) needs ``config.auth_token``, or ``allow_unauthenticated=True``.
        port: port to bind; 0 picks a free one.
        name: registry key; a running server with this name is stopped first.
        allow_unauthenticated: serve a non-loopback address without a token (logs a warning).
        start_timeout_s: how long to wait for the server to come up.

    Raises:
        ServerStartError: the model failed to load, the port is taken, or the server did
            not come up; the real cause is chained.
        ValueError: a non-loopback ``host`` without a token or the opt-out; ``task`` or
            ``device`` given for a model that pipeserve does not load.
        TypeError: ``model`` is none of the kinds above.

    Example:
        >>> server = serve()                      # doctest: +SKIP
        >>> server.query("hello world")[:3]       # doctest: +SKIP
    """
    spec = ModelSpec(model=model, task=task, device=device)
    policy = BatchPolicy() if policy is None else policy
    config = ServerConfig() if config is None else config
    check_exposure(host, config, allow_unauthenticated)
    stop_named(name)

    sock = bind_socket(host, port)
    engine = Engine(spec, policy, config)
    try:
        engine.load()
    except Exception as exc:
        sock.close()
        engine.release(timeout_s=5.0)
        raise ServerStartError(f"could not load model {spec.describe()!r}: {type(exc).__name__}: {exc}") from exc

    handle = start_in_thread(
        lambda server, thread, port: ServerHandle(name, engine, server, thread, host, port),
        create_app(engine),
        sock,
        name=name,
        start_timeout_s=start_timeout_s,
        drain_timeout_s=config.drain_timeout_s,
        startup_cause=lambda: engine.failure,
    )
    health = handle._client.get(f"{handle.url}/health", timeout=10.0)
    if health.status_code != 200:
        handle.stop(timeout_s=1.0)
        raise ServerStartError(f"the server started but /health answered {health.status_code}: {health.text}")
    register(handle)
    return handle


def check_exposure(host: str, config: ServerConfig, allow_unauthenticated: bool) -> None:
    """Refuse to serve a non-loopback address without a token, unless explicitly allowed."""
    if is_loopback(host) or config.auth_token is not None:
        return
    if not allow_unauthenticated:
        raise ValueError(
            f"host={host!r} makes the server reachable from other machines; set "
            "config=ServerConfig(auth_token=secrets.token_urlsafe()) so clients must send it, "
            "or pass allow_unauthenticated=True if this network is trusted"
        )
    logger.warning("pipeserve_nb: serving %s without a token; anyone who can reach it can use the model", host)

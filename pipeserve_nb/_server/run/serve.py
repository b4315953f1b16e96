"""``serve()``: a model server in a background thread; ``serve_app()``: any ASGI app the same way.

``serve()`` reads top to bottom: settings -> stop a server of the same name -> bind the
socket -> load the model on the inference thread while the caller waits (so a load error
raises in the cell with its real cause) -> run the app in a daemon thread (``runner``) ->
wait until ``/health`` answers 200 -> register the handle under its name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..._exceptions import InvalidSetting, ServerStartError
from ..._models.naming import named
from ..._models.spec import ModelSpec
from ..core.config import ServerConfig
from ..core.models import Models
from ..core.policy import BatchPolicy, Policy
from ..core.thread_team import release_team
from ..edge.app import create_app
from ..edge.http_protocol import http_protocol
from .exposure import check_exposure
from .handle import AppHandle, ServerHandle
from .registry import register, stop_named
from .settings import Address, address_of
from .uvicorn_runner import ServerThread, bind_socket

__all__ = ["serve", "serve_app"]

logger = logging.getLogger("pipeserve_nb")


def serve(
    model: Any = ModelSpec.model,
    *more_models: Any,
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
    start_timeout_s: float = 300.0,
) -> ServerHandle:
    """Start a model server in a background thread and return once it answers ``/health``.

    Parameters:
        model: None for the bundled all-MiniLM-L6-v2 sentence embedder, ``"smollm2"`` for the
            bundled chat model, a Hub id or local path, a ``transformers`` pipeline, a model from
            ``load_model()`` (served as it is: no second copy), or a callable
            ``fn(inputs: list, **params) -> list``. Several models: more positional arguments
            (``serve("minilm", "smollm2")``), a list, or a dict of name to model; a string
            ``"NAME=SPEC"`` names one (``"emb=minilm"``). The first is the default (``POST /``);
            each has its own queue and policy, and requests route by name (``docs/serving.md``).
        more_models: the other models of a server with several.
        task: pipeline task when ``model`` is a Hub id or path (e.g. ``"fill-mask"``).
        device: e.g. ``"cuda:0"``; None keeps transformers' default. Only for a model
            pipeserve loads (None or a Hub id or path).
        dtype: ``"auto"`` (bfloat16 where the device executes it natively and, on a CPU, timed
            at load, faster; else float32),
            or ``"float32"``, ``"bfloat16"``, ``"float16"`` to force one (refused where the
            device does not run it natively). Only for a model pipeserve loads.
        policy: batching policy, default ``BatchPolicy()``.
        config: limits (queue size, timeout, drain time), default ``ServerConfig()``.
        host: address to bind; loopback by default. Any other address (reachable from other
            machines) needs ``config.auth_token``, or ``allow_unauthenticated=True``.
        port: port to bind; 0 picks a free one.
        allow_unauthenticated: serve a non-loopback address without a token (logs a warning).
        public_url: the URL a person's browser opens, a template with ``{port}``
            (``"https://example.org/tunnel/{port}/"``), else ``$PIPESERVE_PUBLIC_URL``, else found where the
            kernel runs (Colab, JupyterHub or Binder with jupyter-server-proxy, SSH): ``server.browser_url``.
        name: registry key; a running server with this name is stopped first.
        start_timeout_s: how long to wait for the server to come up.

    Every option and its rule is in the README's option table; the defaults are the declared ones
    (``run/settings.py``), never written again here.

    Raises:
        ServerStartError: the model failed to load, the port is taken, or the server did
            not come up; the real cause is chained.
        InvalidSetting: an option breaks its rule, a non-loopback ``host`` has no token nor
            the opt-out, or ``task``/``device``/``dtype`` is given for a model pipeserve does not load.

    Example:
        >>> server = serve()                      # doctest: +SKIP
        >>> len(server.query("hello world"))      # doctest: +SKIP
        384
        >>> server.stop()                         # doctest: +SKIP
    """
    if isinstance(model, Mapping):
        if more_models:
            raise InvalidSetting("give several models either as a dict of name to model or as arguments, not both")
        given: Mapping[str, Any] | list[Any] = model
    else:
        given = [*(model if isinstance(model, list | tuple) else [model]), *more_models]
    specs = {
        served: ModelSpec(model=m, task=task, device=device, dtype=dtype) for served, m in named(given, task).items()
    }
    address = address_of(host, port, allow_unauthenticated, public_url)
    policy = BatchPolicy() if policy is None else policy
    config = ServerConfig() if config is None else config
    check_exposure(address.host, config.auth_token, address.allow_unauthenticated)
    stop_named(name)

    sock = bind_socket(address.host, address.port)
    models = Models.build(specs, policy, config, name)
    try:
        models.load()
    except Exception as exc:
        sock.close()
        which = specs[models.not_loaded or models.default_name].describe()
        raise ServerStartError(f"could not load model {which!r}: {type(exc).__name__}: {exc}") from exc
    if config.cores == "own" and release_team() == "not libgomp":
        logger.warning("pipeserve_nb: cores='own' changed nothing: PyTorch's OpenMP runtime here is not libgomp")

    runner = ServerThread(
        create_app(models),
        sock,
        name=name,
        drain=models.drain,
        drain_timeout_s=config.drain_timeout_s,
        http=http_protocol(config.max_head_bytes, models.record_response),
    )
    try:
        runner.start(start_timeout_s)
    except ServerStartError:
        models.release(timeout_s=1.0)
        cause = models.failure
        if cause is None:
            raise
        raise ServerStartError(f"the server thread ended during start-up: {type(cause).__name__}: {cause}") from cause
    handle = ServerHandle(name, runner, models, address.public_url)
    health = handle._client.get(f"{handle.url}/health", timeout=10.0)
    if health.status_code != 200:
        handle.stop(timeout_s=1.0)
        raise ServerStartError(f"the server started but /health answered {health.status_code}: {health.text}")
    register(handle)
    return handle


def serve_app(
    app: Any,
    *,
    host: str = Address.host,
    port: int = Address.port,
    public_url: str | None = Address.public_url,
    name: str = "app",
    start_timeout_s: float = 300.0,
    drain_timeout_s: float = ServerConfig.drain_timeout_s,
) -> AppHandle:
    """Serve any ASGI ``app`` from a daemon thread; return once it accepts connections.

    A running server registered under ``name`` is stopped first. ``public_url`` is as in ``serve()``.

    Raises:
        ServerStartError: the port is taken or the app failed to start; the cause is chained.
    """
    address = address_of(host, port, True, public_url)
    stop_named(name)
    runner = ServerThread(app, bind_socket(address.host, address.port), name=name, drain_timeout_s=drain_timeout_s)
    runner.start(start_timeout_s)
    handle = AppHandle(name, runner, drain_timeout_s, address.public_url)
    register(handle)
    return handle

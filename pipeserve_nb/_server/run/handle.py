"""What ``serve()`` and ``serve_app()`` return: a server's address, helpers, and ``stop()``.

``Handle`` is what every handle shares (a Ray deployment's too); ``AppHandle`` holds any
ASGI app's ``ServerThread``; ``ServerHandle`` adds what a model server has (its engine's
model, policy and limits, and client helpers). ``stop()`` is the
one call that ends a server: it signals the server thread and waits for it; the drain and
the release happen there, in the server's own shutdown order (``runner``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self

from ..._client import Queries, auth_headers
from ..._exceptions import InvalidSetting
from ..core.config import ServerConfig
from ..core.models import Models
from ..core.policy import Policy
from ..core.traffic import Recording, TrafficLog
from ..observe.stats import clock
from . import registry
from .reach import BrowserUrl, around, find_browser_url
from .uvicorn_runner import ServerThread

if TYPE_CHECKING:
    from ..._live.dashboard import Dashboard
    from ..._live.frame import PageFrame
    from ..._live.stats_view import StatsView

__all__ = ["Handle", "AppHandle", "ServerHandle", "running_servers", "stop_all"]


class Handle:
    """What every server handle has: its name and address, its state, ``stop()``, a context
    manager, and its displays (``details()`` is what each kind adds to them)."""

    def __init__(self, name: str, host: str, port: int, public_url: str | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._public_url = public_url
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL for code in this process, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @functools.cached_property
    def browser_url(self) -> BrowserUrl:
        """The URL a person's browser opens (ends with ``/``): on a plain local Jupyter the same address as
        ``url``; through jupyter-server-proxy on JupyterHub or Binder, Colab's proxy on Colab, ``public_url``
        when given. A ``str``; ``.how`` says how it was found, ``.hint`` what to do first where the browser
        cannot reach it yet (``docs/reach.md``)."""
        return find_browser_url(self.host, self.port, self._public_url, around())

    @property
    def running(self) -> bool:
        """True until ``stop()``."""
        return not self._stopped

    def stop(self, timeout_s: float | None = None) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def details(self) -> list[tuple[str, Any]]:
        """What the repr shows after the name, state and URL."""
        return []

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        details = "".join(f" {k}={v!r}" for k, v in self.details())
        return f"<{type(self).__name__} {self.name!r} {state} at {self.url}{details}>"

    def _rows(self) -> list[tuple[str, str]]:
        """What the HTML display shows: name, state, URL, then ``details()``."""
        rows = [("name", self.name), ("state", "running" if self.running else "stopped"), ("url", self.url)]
        return rows + [(k, str(v)) for k, v in self.details()]

    def _link_html(self, label: str) -> str:
        """The browser link under the display, while the server runs."""
        from ..._live.frame import browser_link_html

        if not self.running:
            return ""
        found = self.browser_url
        return browser_link_html(found, found.how, found.hint, label)


class AppHandle(Handle):
    """An ASGI app served from a background thread: its address and ``stop()``.

    Use it as a context manager to stop the server on leaving the block.
    """

    def __init__(
        self,
        name: str,
        runner: ServerThread,
        drain_timeout_s: float = ServerConfig.drain_timeout_s,
        public_url: str | None = None,
    ) -> None:
        super().__init__(name, runner.host, runner.port, public_url)
        self._runner = runner
        self._drain_timeout_s = drain_timeout_s

    @property
    def running(self) -> bool:
        """True until ``stop()`` or until the server thread ends."""
        return not self._stopped and self._runner.alive

    @property
    def thread(self) -> threading.Thread:
        """The daemon thread running the server's event loop."""
        return self._runner.thread

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the server: requests in flight get up to ``timeout_s`` (default: the drain
        time it was started with) to finish; then free the port and end the thread. Safe to
        call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._runner.stop(self._drain_timeout_s if timeout_s is None else timeout_s)
        registry.unregister(self)

    def _repr_html_(self) -> str:
        from ..._live.stats_view import handle_html

        return handle_html(type(self).__name__, self._rows(), None, [], self._link_html("open in a browser"))


class ServerHandle(AppHandle, Queries):
    """A model server running in a background thread: address, helpers and ``stop()``."""

    def __init__(self, name: str, runner: ServerThread, models: Models, public_url: str | None = None) -> None:
        import httpx  # not at import: see _client

        super().__init__(name, runner, models.config.drain_timeout_s, public_url)
        self._models = models
        self._engine = models.default
        self._token = models.config.auth_token
        self._client = httpx.Client(trust_env=False, headers=auth_headers(self._token))
        self._dashboards: list[Dashboard] = []

    @property
    def model(self) -> str:
        """The served model's name (the default model's, in a server with several)."""
        return self._engine.model_name

    @property
    def models(self) -> list[str]:
        """The names of the models this server holds, the default first: what requests route by (the ``model``
        field on ``/v1``, ``POST /models/{name}``)."""
        return list(self._models.engines)

    def openai(self, **options: Any) -> Any:
        """An ``openai.OpenAI`` client of this server (its ``/v1`` URL, its token as the ``api_key``).
        ``options`` go to the client (``max_retries``, ``timeout``, ...). Needs the ``openai`` package.

        Example:
            >>> client = server.openai()  # doctest: +SKIP
            >>> len(client.embeddings.create(model=server.models[0], input="hello").data[0].embedding)  # doctest: +SKIP
            384
        """
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - the openai extra
            raise ImportError("server.openai() needs the openai package: pip install 'pipeserve_nb[openai]'") from exc
        key = self._token if self._token is not None else "pipeserve-needs-no-key"
        options.setdefault("http_client", openai.DefaultHttpxClient(trust_env=False))  # no proxy to 127.0.0.1
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, **options)

    @property
    def device(self) -> str | None:
        """Where the model runs (``"cpu"``, ``"cuda:0"``); None when pipeserve cannot tell (a callable)."""
        return self._engine.device

    @property
    def dtype(self) -> str | None:
        """The type the model runs in (``"bfloat16"``, ``"float32"``); None when pipeserve cannot tell."""
        return self._engine.dtype

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

    def open(self, *, height: int = 520, include_token: bool = False) -> PageFrame:
        """The try-it page in this cell (a frame on ``browser_url``): a text box and the answer drawn for the
        model's task, a chat model's answer streamed as it is written.

        With a token (``config.auth_token``), the page asks for it; ``include_token=True`` puts it in the
        frame's URL instead (after ``#``, so no server sees it, but the cell's output, saved in the notebook,
        holds it).

        Example:
            >>> server.open()  # doctest: +SKIP
            <PageFrame of http://127.0.0.1:.../>
        """
        from ..._live.frame import PageFrame

        url = str(self.browser_url)
        if include_token and self._token is not None:
            url += "#token=" + self._token
        return PageFrame(url, height, self.port if self.browser_url.via == "colab" else None)

    @contextlib.contextmanager
    def recording(self, *, limit: int = 10_000, model: str | None = None) -> Iterator[Recording]:
        """Record the requests the server admits while the block runs: when each arrived, its inputs
        and parameters (the first ``limit``; later ones are counted as ``dropped``). ``model`` names the
        model in a server of several (default: the default model). Generations (chat) are not recorded.

        Replay the recording with ``pipeserve_nb.Replay`` (in ``tune()`` or ``run_load()``) to try
        another setting on the traffic your server really got.

        Example:
            >>> with server.recording() as rec:                     # doctest: +SKIP
            ...     answer = server.query("your clients, meanwhile")
            >>> len(rec.traffic), rec.traffic.inputs                  # doctest: +SKIP
            (1, (('your clients, meanwhile',),))
        """
        name = self._models.default_name if model is None else model
        engine = self._models.engines.get(name)
        if engine is None:
            raise InvalidSetting(f"recording(model={model!r}): this server holds {self.models}")
        if engine.traffic is not None:
            raise InvalidSetting(f"recording(): {name!r} is already being recorded")
        log = TrafficLog(name, clock(), limit)
        engine.traffic = log
        try:
            yield Recording(log, clock)
        finally:
            log.ended_s = clock()
            engine.traffic = None

    def stats(self) -> StatsView:
        """The ``/stats`` answer: a ``dict``, displayed in a notebook as a few lines of its main figures."""
        from ..._live.stats_view import StatsView

        return StatsView(self._client.get(f"{self.url}/stats", timeout=10.0).json())

    def dashboard(self, *, interval_s: float | None = None) -> Dashboard:
        """A live panel of this server's numbers, for a notebook cell's output.

        Shown when Jupyter displays it (as the cell's last value, or ``display(d)``; ``d.show()``
        too), it updates every ``interval_s`` while the server runs, also while other cells
        run, and ends with its final state when the server stops. Showing a new one stops the
        previous one. See ``docs/live-view.md``.

        Example:
            >>> server.dashboard()  # doctest: +SKIP
            <Dashboard 'default' of http://127.0.0.1:...: not shown>
        """
        from ..._live.dashboard import (  # here, not at module level: see docs/architecture.md
            DEFAULT_INTERVAL_S,
            Dashboard,
        )

        self._dashboards = [d for d in self._dashboards if d.final is None]
        every = DEFAULT_INTERVAL_S if interval_s is None else interval_s
        panel = Dashboard(self.url, name=self.name, token=self.config.auth_token, interval_s=every, alive=self._alive)
        self._dashboards.append(panel)
        return panel

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking requests, let in-flight ones finish (up to ``timeout_s``, default
        ``config.drain_timeout_s``), answer the rest with 503, free the port, end the thread.
        Its live panels (``dashboard()``) draw their last reading first, marked final.

        Safe to call more than once.
        """
        if self._stopped:
            return
        for panel in self._dashboards:  # each draws its last reading while the server still answers
            panel.stop("the server stopped", state="stopped")
        super().stop(timeout_s)
        self._client.close()
        busy_s = self.stuck_call_s
        if busy_s is not None:
            warnings.warn(
                f"server {self.name!r} stopped, but its inference thread is still inside a model call that has run "
                f"for {busy_s:.1f} s; nothing can interrupt it: the (daemon) thread ends, and the model's memory "
                "is freed, when the call returns (server.stuck_call_s tells)",
                RuntimeWarning,
                stacklevel=2,
            )

    @property
    def stuck_call_s(self) -> float | None:
        """After ``stop()``: how long the model call that outlived it has run (None: no call did).
        While the server runs, ``/health`` reports a stuck call instead."""
        worker = self._engine.worker
        if self.running or worker is None or not worker.is_alive():
            return None
        return worker.busy_for_s()

    def _alive(self) -> bool:
        return self.running

    def _repr_html_(self) -> str:
        import httpx

        from ..._live.stats_view import handle_html

        live = None
        if self.running:
            with contextlib.suppress(httpx.HTTPError):  # a display never raises: no live numbers then
                live = self.stats()
        hints = ["try it here: server.open()", "watch it live: server.dashboard()", "stop it: server.stop()"]
        hints = hints if self.running else []
        return handle_html(type(self).__name__, self._rows(), live, hints, self._link_html("try it in a browser"))

    def details(self) -> list[tuple[str, Any]]:
        details: list[tuple[str, Any]] = [("model", self.model)]
        if len(self._models) > 1:
            details.append(("models", ", ".join(self.models)))
        details += [(k, v) for k, v in (("device", self.device), ("dtype", self.dtype)) if v is not None]
        details.append(("policy", self.policy))
        if self.failure is not None:
            details.append(("failure", f"{type(self.failure).__name__}: {self.failure}"))
        return details


def running_servers() -> dict[str, AppHandle]:
    """The running servers started from this process, by name."""
    return {name: handle for name, handle in registry.running().items() if isinstance(handle, AppHandle)}


def stop_all(timeout_s: float | None = None) -> None:
    """Stop every server started from this process (drain time as in each handle's ``stop``)."""
    registry.stop_all(timeout_s)

"""The live view: a panel in a notebook cell's output that follows a server while it runs.

``Dashboard`` reads the server's ``/stats`` about twice a second on a daemon thread of its
own and replaces the panel in place (an IPython display with a ``display_id``: plain HTML
and SVG, which JupyterLab, Notebook 7, VS Code and Colab render without an extension, and
which a static export keeps in its final state; see ``docs/live-view.md``). It is a client of
the server like any other, so it follows a server in a thread, in another process, or
behind a URL alike, and it costs the server one ``/stats`` request per update.

Its life, exactly:

- created (``server.dashboard()``): nothing runs yet;
- shown (displayed as a cell's value, ``display(d)`` or ``d.show()``): the panel appears and
  the updater starts (``d.start()`` starts it without a display). Showing a new panel for the
  same server stops the previous one's updater (re-running the cell never stacks updaters);
- the panel is replaced only when what it shows changed (an idle server sends nothing);
- it ends when the server stops (or stops answering), when ``stop()`` is called, or when a
  newer panel for the same server takes over; a last reading is drawn, marked final, and
  the thread ends.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from .._client import auth_headers
from .panel import render
from .readings import History, Reading

if TYPE_CHECKING:
    import httpx

__all__ = ["Dashboard", "DEFAULT_INTERVAL_S"]

DEFAULT_INTERVAL_S = 0.5
"""How often the panel reads ``/stats`` and redraws."""

_UNANSWERED_READS = 3
"""Failed reads in a row after which a server is taken to be gone."""

_live: dict[str, Dashboard] = {}
"""The updating dashboard of each server, by URL: the one place that prevents stacking."""
_live_lock = threading.Lock()


class Dashboard:
    """A live panel of one server's numbers (see the module docstring).

    Parameters:
        url: the server's base URL.
        name: the title of the panel (the server's name).
        token: the bearer token, when the server requires one.
        interval_s: time between readings.
        alive: says whether the server still runs (a handle's ``running``); without it the
            panel ends after a few failed reads in a row.
        note: a line shown under the title at each update (a load's progress).
        takes_over: showing it stops the previous panel of the same server that also took over
            (what a re-run cell needs); a load's panel, which ends with its load, does not.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "server",
        token: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        alive: Callable[[], bool] | None = None,
        note: Callable[[], str] | None = None,
        takes_over: bool = True,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.url = url.rstrip("/")
        self.name = name
        self.interval_s = interval_s
        self.history = History()
        self.reads = 0
        """``/stats`` readings taken so far."""
        self.final: str | None = None
        """Why the panel stopped updating; None while it updates (or before it is shown)."""
        self._headers = auth_headers(token)
        self._alive = alive
        self._note = note
        self._takes_over = takes_over
        self._display_id = f"pipeserve-dashboard-{uuid.uuid4().hex}"
        self._display: Any = None
        self._drawn = ""
        self._state: str | None = None  # the server's, once the panel knows better than /stats
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the history is written by the updater and read by show()

    @property
    def live(self) -> bool:
        """Whether the updater runs."""
        return self._thread is not None and self._thread.is_alive()

    def show(self) -> Self:
        """Display the panel in the current cell's output and start updating it."""
        display, html_type = _ipython_display()
        self._display = (display, html_type)
        display(html_type(self.html()), display_id=self._display_id)
        return self.start()

    def start(self) -> Self:
        """Start updating without displaying anything (``show()`` does both): the readings and
        ``html()`` follow the server, for a page of your own or to measure what a panel costs."""
        if self._thread is None and self.final is None:
            if self._takes_over:
                with _live_lock:
                    previous = _live.get(self.url)
                    _live[self.url] = self
                if previous is not None and previous is not self:
                    previous.stop("a newer panel for this server took over")
            self._thread = threading.Thread(target=self._run, name=f"pipeserve-dashboard-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, reason: str = "stopped by dashboard.stop()", *, state: str | None = None) -> None:
        """Stop updating: draw a last reading, marked final with ``reason`` (and the server's
        ``state``, when it is about to change), and end the updater. Safe to repeat."""
        if self.final is None:
            self.final, self._state = reason, state
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    def readings(self) -> list[Reading]:
        """The ``/stats`` readings of the last minute, oldest first (a copy, safe while it updates)."""
        with self._lock:
            return list(self.history.readings)

    def html(self) -> str:
        """The panel as it stands (what the cell shows)."""
        note = self._note() if self._note is not None else ""
        with self._lock:
            return render(self.history, name=self.name, url=self.url, note=note, final=self.final, state=self._state)

    def _ipython_display_(self) -> None:
        self.show()

    def __repr__(self) -> str:
        state = "live" if self.live else self.final or "not shown"
        return f"<Dashboard {self.name!r} of {self.url}: {state}>"

    def _run(self) -> None:
        import httpx  # not at import: see _client

        failures = 0
        with httpx.Client(trust_env=False, headers=self._headers, timeout=5.0) as client:
            while not self._stop.is_set():
                if self._alive is not None and not self._alive():
                    self._end("the server stopped", "stopped")
                    break
                error = self._read(client)
                failures = failures + 1 if error else 0
                refused = error is not None and error.startswith("/stats answered")
                if error and (failures >= _UNANSWERED_READS or refused):
                    self._end(error, None if refused else "unreachable")
                    break
                self._draw()
                self._stop.wait(self.interval_s)
            else:
                self._read(client)  # stopped from outside: the last numbers, after what the caller waited for
        with _live_lock:
            if _live.get(self.url) is self:
                del _live[self.url]
        self._draw()

    def _end(self, reason: str, state: str | None) -> None:
        if self.final is None:
            self.final, self._state = reason, state

    def _read(self, client: httpx.Client) -> str | None:
        """One reading into the history; the reason it failed, or None."""
        import httpx

        try:
            response = client.get(f"{self.url}/stats")
        except httpx.TransportError as exc:
            return f"the server does not answer ({type(exc).__name__})"
        if response.status_code != 200:
            return f"/stats answered {response.status_code}: {response.text[:200]}"
        with self._lock:
            self.history.add(Reading(time.monotonic(), response.json()))
            self.reads += 1
        return None

    def _draw(self) -> None:
        panel = self.html()
        if panel != self._drawn and self._display is not None:
            display, html_type = self._display
            display(html_type(panel), display_id=self._display_id, update=True)
            self._drawn = panel


def _ipython_display() -> tuple[Callable[..., Any], type]:
    """IPython's ``display`` and ``HTML``, or a clear error outside a notebook kernel."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        raise RuntimeError(
            "the dashboard draws in a Jupyter notebook and needs IPython: pip install 'pipeserve_nb[notebook]'"
        ) from None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        raise RuntimeError(
            "the dashboard draws in a notebook's output (a Jupyter kernel); outside one, read server.stats() "
            "or scrape /metrics"
        )
    return display, HTML

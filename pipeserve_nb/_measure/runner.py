"""Running a load from a notebook cell: in a separate process by default, sync or ``await``.

By default the generator runs in its own process, so it does not share the
kernel's GIL and cores with the in-notebook server it measures. ``in_process=True`` runs it
on an event loop in this process instead (a thread for the sync call, the caller's loop for
``await``), which is cheaper to start but distorts what it measures on a small machine.

Both calls are safe inside Jupyter's running loop, show a progress line (``progress``) on runs
longer than a second (or, with ``dashboard=True``, the server's live panel with the load's
progress, ending with the run), and leave no process or thread behind after a normal end,
an exception, or an interrupt (the notebook's stop button).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from .._exceptions import InvalidSetting
from .._live.dashboard import Dashboard
from .corpus import sample_texts
from .loads import Load, Replay
from .progress import ProgressLine, statuses_text
from .results import LoadResult
from .sender import Row, generate
from .workers import InChild, InThread

__all__ = ["run_load", "arun_load", "DEFAULT_TEXTS"]

DEFAULT_TEXTS = 256
"""How many texts of the default corpus a run cycles through."""


class _HasUrl(Protocol):
    @property
    def url(self) -> str: ...


class _Progress(Protocol):
    """How a run shows its progress while it runs, and how it went when it ends."""

    def update(self, done: int) -> None: ...

    def finish(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


def run_load(
    target: str | _HasUrl,
    load: Load,
    *,
    texts: Sequence[str] | None = None,
    in_process: bool = False,
    timeout_s: float = 60.0,
    progress: bool = True,
    dashboard: bool = False,
) -> LoadResult:
    """Send ``load`` to ``target`` (a URL or a server handle) and wait for every answer.

    Parameters:
        target: base URL, or anything with a ``url`` (the handle ``serve()`` returns).
        load: ``ClosedLoop(...)`` or ``OpenLoop(...)``.
        texts: request bodies, used in order and cycled; default ``sample_texts(256)`` (a ``Replay`` sends its own).
        in_process: run the generator in this process instead of a separate one.
        timeout_s: client-side limit per request (status 0 when it passes).
        progress: show a progress bar on runs longer than a second.
        dashboard: show the server's live panel (``server.dashboard()``) with the load's
            progress instead of the bar, from the start of the run to its end (in a notebook).

    Example:
        >>> result = run_load(server, ClosedLoop(concurrency=8, requests=200))  # doctest: +SKIP
        >>> result.summary.ok, len(result.frame())                              # doctest: +SKIP
        (200, 200)
    """
    url, bodies = _resolve(target, texts, load)
    bar = _bar(load, progress, target, dashboard)
    try:
        runner: _Run = InThread(url, load, bodies, timeout_s) if in_process else InChild(url, load, bodies, timeout_s)
        try:
            while (rows := runner.wait(0.1)) is None:
                bar.update(runner.done)
        finally:
            runner.close()
        bar.finish(rows)
    finally:
        bar.close()
    return LoadResult(load, url, rows, in_process, runner.cpu_s)


async def arun_load(
    target: str | _HasUrl,
    load: Load,
    *,
    texts: Sequence[str] | None = None,
    in_process: bool = False,
    timeout_s: float = 60.0,
    progress: bool = True,
    dashboard: bool = False,
) -> LoadResult:
    """``await`` form of ``run_load`` (same parameters); cancelling it stops the load."""
    url, bodies = _resolve(target, texts, load)
    bar = _bar(load, progress, target, dashboard)
    cpu_s = None  # on the caller's loop, the generator's CPU cannot be told from the rest of the process
    try:
        if in_process:
            rows = await generate(url, load, bodies, timeout_s=timeout_s, on_progress=bar.update)
        else:
            child = InChild(url, load, bodies, timeout_s)
            try:
                while (found := child.wait(0)) is None:
                    bar.update(child.done)
                    await asyncio.sleep(0.05)
                rows, cpu_s = found, child.cpu_s
            finally:
                child.close()
        bar.finish(rows)
    finally:
        bar.close()
    return LoadResult(load, url, rows, in_process, cpu_s)


def _resolve(target: str | _HasUrl, texts: Sequence[str] | None, load: Load) -> tuple[str, list[str]]:
    url = target if isinstance(target, str) else target.url
    if isinstance(load, Replay):
        if texts is not None:
            raise InvalidSetting("a Replay sends the requests it recorded: texts= does not apply to it")
        return url, []  # its bodies are its own
    bodies = list(texts) if texts is not None else sample_texts(DEFAULT_TEXTS, seed=0)
    if not bodies:
        raise ValueError("texts is empty; give at least one text to send")
    return url, bodies


def _bar(load: Load, enabled: bool, target: str | _HasUrl, dashboard: bool) -> _Progress:
    """How the run shows its progress: a progress line, or the server's live panel."""
    return _PanelProgress(load, target) if dashboard else _Line(load, enabled)


class _Line:
    """The run's progress line (``ProgressLine``), ending with its statuses."""

    def __init__(self, load: Load, enabled: bool) -> None:
        self._line = ProgressLine(load.describe(), load.expected_requests(), enabled=enabled)

    def update(self, done: int) -> None:
        self._line.update(done)

    def finish(self, rows: list[Row]) -> None:
        self._line.finish(row.status for row in rows)

    def close(self) -> None:
        self._line.close()


class _PanelProgress:
    """The progress of a run shown as the note of the server's live panel, which ends with the run."""

    def __init__(self, load: Load, target: str | _HasUrl) -> None:
        self.n = 0
        self._load = load
        self._expected = load.expected_requests()
        self._outcome = ""
        url = target if isinstance(target, str) else target.url
        config = getattr(target, "config", None)
        running = getattr(target, "running", None)
        self._panel = Dashboard(
            url,
            name=getattr(target, "name", url),
            token=getattr(config, "auth_token", None),
            alive=None if running is None else lambda: bool(getattr(target, "running", False)),
            note=self._note,
            takes_over=False,
        ).show()

    def update(self, done: int) -> None:
        self.n = done

    def finish(self, rows: list[Row]) -> None:
        self.n = len(rows)
        self._outcome = f" ({statuses_text(Counter(row.status for row in rows))})"

    def close(self) -> None:
        self._panel.stop(f"the load ended: {self._note()}")

    def _note(self) -> str:
        of = f" of {self._expected}" if self._expected is not None else ""
        return f"load {self._load.describe()}: {self.n}{of} answered{self._outcome}"


class _Run(Protocol):
    done: int
    cpu_s: float | None

    def wait(self, timeout_s: float) -> list[Row] | None: ...

    def close(self) -> None: ...

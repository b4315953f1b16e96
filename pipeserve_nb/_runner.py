"""Running a load from a notebook cell: in a separate process by default, sync or ``await``.

By default the generator runs in its own process, so it does not share the
kernel's GIL and cores with the in-notebook server it measures. ``in_process=True`` runs it
on an event loop in this process instead (a thread for the sync call, the caller's loop for
``await``), which is cheaper to start but distorts what it measures on a small machine.

Both calls are safe inside Jupyter's running loop, show a ``tqdm.auto`` progress bar on runs
longer than a second, and leave no process or thread behind after a normal end, an
exception, or an interrupt (the notebook's stop button).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ._batcher import clock
from ._corpus import sample_texts
from ._exceptions import LoadGeneratorError
from ._loadgen import Load, Row, generate
from ._results import LoadResult

__all__ = ["run_load", "arun_load", "DEFAULT_TEXTS"]

DEFAULT_TEXTS = 256
"""How many texts of the default corpus a run cycles through."""

_PROGRESS_EVERY_S = 0.2


class _HasUrl(Protocol):
    @property
    def url(self) -> str: ...


def run_load(
    target: str | _HasUrl,
    load: Load,
    *,
    texts: Sequence[str] | None = None,
    in_process: bool = False,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> LoadResult:
    """Send ``load`` to ``target`` (a URL or a server handle) and wait for every answer.

    Parameters:
        target: base URL, or anything with a ``url`` (the handle ``serve()`` returns).
        load: ``ClosedLoop(...)`` or ``OpenLoop(...)``.
        texts: request bodies, used in order and cycled; default ``sample_texts(256)``.
        in_process: run the generator in this process instead of a separate one.
        timeout_s: client-side limit per request (status 0 when it passes).
        progress: show a progress bar on runs longer than a second.

    Example:
        >>> result = run_load(server, ClosedLoop(concurrency=8, requests=200))  # doctest: +SKIP
        >>> result.summary.goodput_rps, result.frame().head()                   # doctest: +SKIP
    """
    url, bodies = _resolve(target, texts)
    runner: _Run = _InThread(url, load, bodies, timeout_s) if in_process else _InChild(url, load, bodies, timeout_s)
    bar = _bar(load, progress)
    try:
        while (rows := runner.wait(0.1)) is None:
            bar.update(runner.done - bar.n)
    finally:
        runner.close()
        bar.close()
    return LoadResult(load, url, rows, in_process)


async def arun_load(
    target: str | _HasUrl,
    load: Load,
    *,
    texts: Sequence[str] | None = None,
    in_process: bool = False,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> LoadResult:
    """``await`` form of ``run_load`` (same parameters); cancelling it stops the load."""
    url, bodies = _resolve(target, texts)
    bar = _bar(load, progress)
    try:
        if in_process:
            rows = await generate(url, load, bodies, timeout_s=timeout_s, on_progress=lambda n: bar.update(n - bar.n))
        else:
            child = _InChild(url, load, bodies, timeout_s)
            try:
                while (found := child.wait(0)) is None:
                    bar.update(child.done - bar.n)
                    await asyncio.sleep(0.05)
                rows = found
            finally:
                child.close()
    finally:
        bar.close()
    return LoadResult(load, url, rows, in_process)


def _resolve(target: str | _HasUrl, texts: Sequence[str] | None) -> tuple[str, list[str]]:
    url = target if isinstance(target, str) else target.url
    bodies = list(texts) if texts is not None else sample_texts(DEFAULT_TEXTS, seed=0)
    if not bodies:
        raise ValueError("texts is empty; give at least one text to send")
    return url, bodies


def _bar(load: Load, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=load.expected_requests(), desc=load.describe(), unit="req", delay=1.0, disable=not enabled)


class _Run(Protocol):
    done: int

    def wait(self, timeout_s: float) -> list[Row] | None: ...

    def close(self) -> None: ...


class _InChild:
    """The generator in a child Python process; rows and progress come back over a socket pair.

    The child is a fresh interpreter started with ``subprocess`` (not ``multiprocessing``),
    so it never re-imports the caller's ``__main__``: a script without an
    ``if __name__ == "__main__"`` guard works, and so does a notebook. It runs in its own
    session, so a terminal's Ctrl-C reaches only the parent, which then stops it.
    """

    def __init__(self, url: str, load: Load, texts: list[str], timeout_s: float) -> None:
        self._conn, child_end = multiprocessing.Pipe(duplex=True)
        fd = child_end.fileno()
        code = f"from pipeserve_nb._runner import _child_main; _child_main({fd})"
        self._proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[fd], start_new_session=True)
        child_end.close()
        self._conn.send((url, load, texts, timeout_s))
        self.done = 0
        self._finished = False

    def wait(self, timeout_s: float) -> list[Row] | None:
        """The rows once the run is over, else None after up to ``timeout_s``."""
        if not self._conn.poll(timeout_s):
            if self._proc.poll() is not None and not self._conn.poll(0):
                raise LoadGeneratorError(f"the load generator process died (exit code {self._proc.returncode})")
            return None
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            raise LoadGeneratorError(f"the load generator process died (exit code {self._proc.poll()})") from None
        if kind == "progress":
            self.done = payload
            return None
        if kind == "done":
            self._finished = True
            rows: list[Row] = payload
            return rows
        raise LoadGeneratorError(f"the load generator failed: {payload}")

    def close(self) -> None:
        """End the process (at once unless it finished its run) and release the socket."""
        if self._finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._conn.close()


def _child_main(fd: int) -> None:
    """Entry point of the generator process: read the job, run it, send rows back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop us
    conn = Connection(fd)
    last = 0.0

    def report(done: int) -> None:
        nonlocal last
        if clock() - last >= _PROGRESS_EVERY_S:
            last = clock()
            conn.send(("progress", done))

    try:
        url, load, texts, timeout_s = conn.recv()
        rows = asyncio.run(generate(url, load, texts, timeout_s=timeout_s, on_progress=report))
        conn.send(("done", rows))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _InThread:
    """The generator on a fresh event loop in a helper thread of this process."""

    def __init__(self, url: str, load: Load, texts: list[str], timeout_s: float) -> None:
        self.done = 0
        self._rows: list[Row] | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[list[Row]] | None = None
        self._started = threading.Event()
        # Waiting on an Event, not Thread.join: on Python 3.11 a KeyboardInterrupt inside
        # join() can leave the thread marked as ended while it still runs.
        self._ended = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(url, load, texts, timeout_s), name="pipeserve-loadgen", daemon=True
        )
        self._thread.start()
        self._started.wait()

    def _main(self, url: str, load: Load, texts: list[str], timeout_s: float) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(
                generate(url, load, texts, timeout_s=timeout_s, on_progress=self._progress)
            )
            self._started.set()
            try:
                self._rows = await self._task
            except BaseException as exc:
                self._error = exc

        try:
            asyncio.run(run())
        finally:
            self._started.set()
            self._ended.set()

    def _progress(self, done: int) -> None:
        self.done = done

    def wait(self, timeout_s: float) -> list[Row] | None:
        if not self._ended.wait(timeout_s):
            return None
        if self._rows is None:
            raise LoadGeneratorError(f"the load generator failed: {self._error!r}") from self._error
        return self._rows

    def close(self) -> None:
        if not self._ended.is_set() and self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._ended.wait(10)
        self._thread.join(1)

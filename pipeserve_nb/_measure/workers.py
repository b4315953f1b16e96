"""Where a load generator runs: a child Python process (the default) or a thread of this one.

Both take the same job (URL, load, texts, timeout), report progress as a count of answered
requests, hand back every ``Row`` at the end with the CPU time the generator spent (``cpu_s``:
the child's process time, or the helper thread's), and can be stopped at any moment, leaving
no process or thread behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from .._exceptions import LoadGeneratorError
from .loads import Load
from .sender import Row, clock, generate

__all__ = ["InChild", "InThread", "child_main"]

_PROGRESS_EVERY_S = 0.2
T = TypeVar("T")


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a fresh event loop: uvloop's where it is installed (it comes with
    ``uvicorn[standard]`` and ``ray[serve]``), else asyncio's. The generator shares the CPU with
    the server it measures, and on uvloop it spends less CPU per request (``docs/performance.md``)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class InChild:
    """The generator in a child Python process; rows and progress come back over a socket pair.

    The child is a fresh interpreter started with ``subprocess`` (not ``multiprocessing``),
    so it never re-imports the caller's ``__main__``: a script without an
    ``if __name__ == "__main__"`` guard works, and so does a notebook. It runs in its own
    session, so a terminal's Ctrl-C reaches only the parent, which then stops it.
    """

    def __init__(self, url: str, load: Load, texts: list[str], timeout_s: float) -> None:
        self._conn, child_end = multiprocessing.Pipe(duplex=True)
        fd = child_end.fileno()
        code = f"from pipeserve_nb._measure.workers import child_main; child_main({fd})"
        self._proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[fd], start_new_session=True)
        child_end.close()
        self.done = 0
        self.cpu_s: float | None = None
        self._finished = False
        try:
            self._conn.send((url, load, texts, timeout_s))
        except BaseException:  # an interrupt before the caller holds this object: leave no process behind
            self.close()
            raise

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
            rows: list[Row]
            rows, self.cpu_s = payload
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


def child_main(fd: int) -> None:
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
        began = time.process_time()
        rows = _run_loop(generate(url, load, texts, timeout_s=timeout_s, on_progress=report))
        conn.send(("done", (rows, time.process_time() - began)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class InThread:
    """The generator on a fresh event loop in a helper thread of this process."""

    def __init__(self, url: str, load: Load, texts: list[str], timeout_s: float) -> None:
        self.done = 0
        self.cpu_s: float | None = None
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
        try:
            self._thread.start()  # inside the try: an interrupt can land in start()'s own wait, the thread running
            self._started.wait()
        except BaseException:  # an interrupt before the caller holds this object: leave no thread behind
            self._started.wait(10)
            self.close()
            raise

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

        began = time.thread_time()
        try:
            _run_loop(run())
            self.cpu_s = time.thread_time() - began
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
        """Stop the run and wait for its thread: the cancellation is repeated until the run ends,
        so that one swallowed by a library on its way down cannot keep the load running."""
        deadline = time.monotonic() + 10
        while not self._ended.is_set() and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run is over anyway
                self._loop.call_soon_threadsafe(self._task.cancel)
            if self._ended.wait(0.5) or time.monotonic() > deadline:
                break
        self._ended.wait(max(0.0, deadline - time.monotonic()))
        if self._thread.ident is not None:  # it started (an interrupt can land before it does)
            self._thread.join(5)

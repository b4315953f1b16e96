"""N worker processes, each a standalone server with its own model copy: the shape lesson 01
measures (what ``uvicorn --workers N`` or gunicorn gives a model server), started and stopped
for the measurement."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Worker", "worker_processes"]


@dataclass(frozen=True)
class Worker:
    """A standalone server process: its process id and base URL."""

    pid: int
    url: str


@contextmanager
def worker_processes(n: int, *flags: str, start_timeout_s: float = 300.0) -> Iterator[list[Worker]]:
    """Start ``n`` ``python -m pipeserve_nb serve`` processes on free ports (with ``flags``, e.g.
    ``"--dtype", "float32"``), one after another; yield them once each serves; stop them all on leaving.

    Example:
        >>> with worker_processes(2) as workers:  # doctest: +SKIP
        ...     [rss_mb(w.pid) > 100 for w in workers]
        [True, True]
    """
    procs: list[subprocess.Popen[str]] = []
    try:
        workers = []
        for _ in range(n):
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeserve_nb", "serve", "--port", "0", *flags],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            procs.append(proc)
            workers.append(Worker(proc.pid, _announced_url(proc, start_timeout_s)))
        yield workers
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _announced_url(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The URL the server prints once it serves ("pipeserve_nb: serving ... at http://host:port/")."""
    assert proc.stdout is not None
    timer = _kill_after(proc, timeout_s)
    try:
        for line in proc.stdout:
            found = re.search(r"serving .* at (http://\S+:\d+)", line)
            if found:  # from here on nobody reads its output: drain it, so a full pipe never blocks it
                threading.Thread(target=proc.stdout.read, name="worker-output", daemon=True).start()
                return found.group(1)
    finally:
        timer.cancel()
    raise RuntimeError(f"the worker process exited with status {proc.wait()} before it served")


def _kill_after(proc: subprocess.Popen[str], timeout_s: float) -> threading.Timer:
    """A bound on a start that never announces itself: the process is killed after ``timeout_s``."""
    timer = threading.Timer(timeout_s, proc.kill)
    timer.daemon = True
    timer.start()
    return timer

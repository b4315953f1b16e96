"""Torch work on a passing thread: run a call on a thread that ends with it.

PyTorch's OpenMP runtime (libgomp) gives every thread that runs a parallel op a team of worker
threads of its own, kept until that thread ends. Once a process holds more of these threads than
it has cores, libgomp makes its idle workers sleep almost at once instead of spinning, and every op
of the model pays for waking them: on this 2-core machine a server's model ran about 0.75x as fast
when the notebook's thread had loaded it (a team of its own, idle but alive) as when the model was
loaded on the thread that runs it (``docs/performance.md``). A call made here leaves no team behind:
the thread's team ends with the thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["on_a_passing_thread"]

T = TypeVar("T")


def on_a_passing_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()``, run on a new thread named ``name`` that ends when it returns; its result or its exception.

    An interrupt (a notebook's stop button) ends the wait, not ``fn``: the thread finishes in the
    background and its result is dropped.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []
    ended = threading.Event()  # waited on, not join(): on Python 3.11 an interrupt inside join() can confuse it

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller, whatever it is
            failure.append(exc)
        finally:
            ended.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    ended.wait()
    if failure:
        raise failure[0]
    return outcome[0]

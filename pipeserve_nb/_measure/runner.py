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
from collections.abc import Sequence
from typing import Any, Protocol

from .corpus import sample_texts
from .loads import Load
from .results import LoadResult
from .sender import Row, generate
from .workers import InChild, InThread

__all__ = ["run_load", "arun_load", "DEFAULT_TEXTS"]

DEFAULT_TEXTS = 256
"""How many texts of the default corpus a run cycles through."""


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
    bar = _bar(load, progress)
    try:
        runner: _Run = InThread(url, load, bodies, timeout_s) if in_process else InChild(url, load, bodies, timeout_s)
        try:
            while (rows := runner.wait(0.1)) is None:
                bar.update(runner.done - bar.n)
        finally:
            runner.close()
    finally:
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
            child = InChild(url, load, bodies, timeout_s)
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

"""Loading without transformers' "Loading weights" bars: one line of our own, and only if it is slow.

transformers draws a progress bar for every checkpoint it loads, so a notebook that starts a
server a few times stacks a bar per start (eleven in notebook 01). ``quiet_loading`` turns
transformers' own bars off while a model loads and puts the setting back afterwards; the Hub's
download bars stay on (a download can take minutes, and its bar says how far it is). A load that
takes longer than ``notice_after_s`` says so in one line on standard output, and how long it took
when it ends.

transformers' switch is process-wide: loads in several threads at once share one count, and the
bars come back when the last of them ends.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["quiet_loading", "NOTICE_AFTER_S"]

NOTICE_AFTER_S = 2.0
"""How long a load runs before it says so (a quick load, such as the bundled model's, says nothing)."""

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _hub_bars() -> Any:
    """The Hub's progress-bar switches (their module; ``huggingface_hub.utils.tqdm`` is also a class)."""
    return importlib.import_module("huggingface_hub.utils.tqdm")


def _silence() -> None:
    global _depth, _was_enabled
    from transformers.utils import logging

    hub = _hub_bars()

    with _lock:
        if _depth == 0:
            _was_enabled = logging.is_progress_bar_enabled()
            hub_on = not hub.are_progress_bars_disabled()
            logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # also turns the Hub's bars off: put those back
            if hub_on:
                hub.enable_progress_bars()
        _depth += 1


def _restore() -> None:
    global _depth
    from transformers.utils import logging

    hub = _hub_bars()

    with _lock:
        _depth -= 1
        if _depth == 0 and _was_enabled:
            hub_on = not hub.are_progress_bars_disabled()
            logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # also turns the Hub's bars on: keep them as they are now
            if not hub_on:
                hub.disable_progress_bars()


@contextmanager
def quiet_loading(name: str, notice_after_s: float = NOTICE_AFTER_S, out: TextIO | None = None) -> Iterator[None]:
    """Load ``name`` inside this block without transformers' bars (see the module docstring)."""
    stream = sys.stdout if out is None else out  # not stderr: a notebook shows that as an error box
    started = time.monotonic()
    noticed = threading.Event()

    def notice() -> None:
        print(f"pipeserve: loading {name} ...", file=stream, flush=True)
        noticed.set()

    timer = threading.Timer(notice_after_s, notice)
    timer.daemon = True
    _silence()
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a notice being printed is finished before the closing line
        _restore()
        if noticed.is_set():
            print(f"pipeserve: loaded {name} in {time.monotonic() - started:.1f} s", file=stream, flush=True)

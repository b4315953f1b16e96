"""A load's progress line: plain HTML in a notebook (kept by a saved or exported notebook), a bar in a terminal.

A widget bar (``tqdm.auto``) needs a widget manager and a script from a CDN: in a saved, exported or
offline notebook it is a blank gap, and its saved text fallback is whatever it showed first. This line
is an ordinary display (HTML with a text fallback) updated in place, so every copy of the notebook
shows its last state: how many answers came back and with which statuses, green when every answer
was a 200, orange when some were not, red when none was. Outside a notebook kernel it is ``tqdm``'s
terminal bar.
"""

from __future__ import annotations

import html
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ProgressLine", "statuses_text", "SHOW_AFTER_S", "OK", "SOME_FAILED", "NONE_OK", "RUNNING"]

SHOW_AFTER_S = 1.0
"""A run shorter than this shows no line at all."""

_REDRAW_S = 0.25
OK = "#2e7d32"
"""The line's colour when every answer was a 200."""
SOME_FAILED = "#ef6c00"
"""... when some were not."""
NONE_OK = "#c62828"
"""... when none was."""
RUNNING = "#1565c0"
"""... while the run goes on."""


def statuses_text(statuses: Counter[int]) -> str:
    """How a run's requests ended, by status (``200: 98, 503: 2``; status 0 is ``no answer``)."""
    return ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items()))


class ProgressLine:
    """The progress of one run of ``total`` requests (None: unknown) described as ``label``."""

    def __init__(self, label: str, total: int | None, *, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self._started = time.monotonic()
        self._drawn_at: float | None = None
        self._display = _kernel_display() if enabled else None
        self._id = f"pipeserve-progress-{uuid.uuid4().hex}"
        self._bar: Any = None
        if enabled and self._display is None:
            from tqdm.std import tqdm

            self._bar = tqdm(total=total, desc=label, unit="req", delay=SHOW_AFTER_S)

    def update(self, done: int) -> None:
        """``done`` requests finished so far (answered, or given up on)."""
        self.done = done
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        now = time.monotonic()
        due = self._drawn_at is None or now - self._drawn_at >= _REDRAW_S
        if self._display is not None and now - self._started >= SHOW_AFTER_S and due:
            self._draw(RUNNING, "")

    def finish(self, statuses: Iterable[int]) -> None:
        """The run ended with these statuses, one per request: draw the last state."""
        counted = Counter(statuses)
        self.done = sum(counted.values())
        text = statuses_text(counted)
        ok = counted.get(200, 0)
        colour = OK if ok == self.done else NONE_OK if ok == 0 else SOME_FAILED
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
        if self._display is not None and (
            self._drawn_at is not None or time.monotonic() - self._started >= SHOW_AFTER_S
        ):
            self._draw(colour, text)

    def close(self) -> None:
        """End the terminal bar (a run that raised leaves its notebook line as it was)."""
        if self._bar is not None:
            self._bar.close()

    def plain(self, statuses: str = "") -> str:
        """The line as text: ``label: done/total done in 1.2 s (200: 98, 503: 2)``."""
        of = f"/{self.total}" if self.total is not None else ""
        tail = f" ({statuses})" if statuses else ""
        return f"{self.label}: {self.done}{of} done in {time.monotonic() - self._started:.1f} s{tail}"

    def _draw(self, colour: str, statuses: str) -> None:
        assert self._display is not None
        share = 1.0 if statuses else min(1.0, self.done / self.total) if self.total else 0.0
        text = self.plain(statuses)
        bar = (
            f"<div style='display:inline-block;width:160px;height:10px;background:#e0e0e0;border-radius:3px;"
            f"vertical-align:middle;margin-right:8px'><div data-colour='{colour}' style='width:{share:.0%};"
            f"height:100%;background:{colour};border-radius:3px'></div></div>"
        )
        line = f"<div class='pipeserve-progress' style='font:12px sans-serif'>{bar}{html.escape(text)}</div>"
        self._display(
            {"text/html": line, "text/plain": text}, raw=True, display_id=self._id, update=self._drawn_at is not None
        )
        self._drawn_at = time.monotonic()


def _kernel_display() -> Callable[..., Any] | None:
    """IPython's ``display`` when this runs in a notebook kernel, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    return display if shell is not None and hasattr(shell, "kernel") else None

"""Tokens to text as they are written, and stop strings that never reach the client.

A token is often part of a character (UTF-8 bytes split across byte-level tokens) or changes how
the previous one reads (a leading space, a merge), so ``TextStream`` decodes a short window of the
latest tokens and hands out only text that can no longer change (the way TGI and vLLM do it). Text
that could still be the start of a stop string is held back until the next tokens show it is not;
when a stop string appears, everything before it is handed out and nothing after it ever is, even
when the stop string spans several tokens.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TextStream"]

_PARTIAL = "\ufffd"
"""What decoding writes for the bytes of a character not yet complete."""


class TextStream:
    """One generation's text, piece by piece: ``push`` each token, ``finish`` at the end."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._tokens: list[int] = []
        self._prefix = 0  # the window decoded for context starts here ...
        self._read = 0  # ... and text is handed out from the tokens after this one
        self._held = ""  # text decoded but held back: it may be the start of a stop string
        self.text = ""
        """Everything handed out so far."""
        self.stopped = False
        """A stop string was written: the generation should end; no later text is handed out."""

    def push(self, token: int) -> str:
        """Add one generated token; return the text it completes ("" while it cannot be known yet)."""
        if self.stopped:
            return ""
        self._tokens.append(token)
        before = self._decode(self._prefix, self._read)
        now = self._decode(self._prefix, len(self._tokens))
        if len(now) <= len(before) or now.endswith(_PARTIAL):
            return ""
        self._prefix, self._read = self._read, len(self._tokens)
        return self._release(self._held + now[len(before) :])

    def finish(self) -> str:
        """The text still held back, at the end of the generation (nothing after a stop string)."""
        if self.stopped:
            return ""
        rest = self._decode(self._read, len(self._tokens)).rstrip(_PARTIAL)
        return self._release(self._held + rest, final=True)

    def _decode(self, start: int, end: int) -> str:
        return str(self._tokenizer.decode(self._tokens[start:end], skip_special_tokens=True))

    def _release(self, text: str, final: bool = False) -> str:
        found = [at for at in (text.find(stop) for stop in self._stop) if at >= 0]
        if found:
            self.stopped = True
            self._held = ""
            self.text += text[: min(found)]
            return text[: min(found)]
        keep = 0 if final else max((_overlap(text, stop) for stop in self._stop), default=0)
        out, self._held = text[: len(text) - keep], text[len(text) - keep :]
        self.text += out
        return out


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that is the start of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0

"""The HTTP protocol pipeserve runs uvicorn with: uvicorn's httptools protocol, with a bound on an
unfinished request head and one send per response.

- **A bounded head.** uvicorn's httptools parser has no head-size limit of its own (only its h11
  parser does, ``h11_max_incomplete_event_size``), so a client could send headers forever.
  Once more than ``max_head_bytes`` arrived without the head ending, the connection gets 431
  (in the JSON error shape, from the error table) and is closed: the app never sees a request it
  could not answer. The refusal is counted in the server's numbers (``on_refused``).
- **One send per response.** uvicorn writes a response's head and its body separately, each
  straight to the socket: two system calls, two TCP segments, two wake-ups of the client. The
  connection's transport here gathers what is written in one turn of the event loop and sends
  it at the end of that turn, in one write. A small answer (every refusal under overload) then
  costs the server and the client one system call and one wake-up less (``docs/performance.md``
  has the CPU per refusal); an answer leaves at most one loop turn later.

Under an external uvicorn, ``--http pipeserve_nb.asgi:HttpProtocol`` runs the same protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import raw_refusal

__all__ = ["http_protocol"]


class _OneSend:
    """A transport that sends what is written to it in one turn of the event loop as one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:  # everything else is the socket's transport
        return getattr(self._transport, name)


class _PipeserveHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on an unfinished head, sending each response at once."""

    max_head_bytes = 65536
    on_refused: Callable[[int, float], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._in_head, self._head_bytes = True, 0
        one_send = _OneSend(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        super().connection_made(one_send)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        if counting and self._in_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def _refuse_head(self) -> None:
        message = f"the request head passed {self.max_head_bytes} bytes without ending"
        self.transport.write(raw_refusal("HeadersTooLarge", message))
        self.transport.close()
        if self.on_refused is not None:
            self.on_refused(431, 0.0)


def http_protocol(
    max_head_bytes: int, on_refused: Callable[[int, float], None] | None = None
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``: a head bounded at ``max_head_bytes``, one send per
    response; ``on_refused(status, seconds)`` counts a refusal it writes itself (the server's numbers)."""
    members = {"max_head_bytes": max_head_bytes, "on_refused": staticmethod(on_refused) if on_refused else None}
    return type("PipeserveHttpTools", (_PipeserveHttpTools,), members)

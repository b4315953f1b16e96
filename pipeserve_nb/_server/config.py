"""Server limits: queue size, request timeout, drain time, body size, access token, error detail."""

from __future__ import annotations

from dataclasses import dataclass

from .._options import Flag, Int, Number, Text, check_fields, option

__all__ = ["ServerConfig"]

_SECONDS = Number(strict=True, of="seconds")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How much a server accepts and how long it waits.

    Parameters:
        max_queue: requests that may wait for the model (every request accepted and not yet
            started); one more gets a fast 503 with ``Retry-After`` (the circuit breaker).
            The default is about a second of work for the bundled model on 2 cores:
            overload is shed, not queued for minutes.
        timeout_s: a request still unanswered this long after it arrived gets 504; if it
            is still queued then, it is dropped and never reaches the model.
        drain_timeout_s: how long ``stop()`` lets queued and running requests finish
            before answering the rest with 503.
        max_inputs_per_request: most texts in one ``{"inputs": [...]}`` request; more get 413.
        max_body_bytes: largest request body; a bigger one gets 413 before it is read
            (at once when ``Content-Length`` says so, else as soon as the limit is passed).
        auth_token: when set, every request must carry ``Authorization: Bearer <token>``
            (compared in constant time) or it gets 401. Required to bind a non-loopback
            address unless ``serve(..., allow_unauthenticated=True)``. Never shown in ``repr``.
        torch_threads: threads PyTorch uses inside one model call, set with
            ``torch.set_num_threads`` (process-wide) before the model loads and restored
            when the server stops; None keeps PyTorch's choice (one per core). The event
            loop needs little CPU; ``make bench`` measures the default against 1 thread.
        debug: put exception messages and Python tracebacks in error bodies (never on a
            shared server: they can reveal file paths and internals).

    Example:
        >>> ServerConfig(max_queue=64, timeout_s=5.0).max_queue
        64
    """

    max_queue: int = option(256, Int(), "requests waiting for the model before a fast 503", unit="requests")
    timeout_s: float = option(60.0, _SECONDS, "a request unanswered this long gets 504", unit="s")
    drain_timeout_s: float = option(10.0, _SECONDS, "how long stop() lets waiting requests finish", unit="s")
    max_inputs_per_request: int = option(256, Int(), "most texts in one JSON request (413 above)", unit="inputs")
    max_body_bytes: int = option(1_048_576, Int(), "largest request body (413 above)", unit="bytes")
    auth_token: str | None = option(
        None,
        Text(min_length=16, ascii=True, optional=True),
        "bearer token every request must carry; needed for a non-loopback host",
        hint="e.g. secrets.token_urlsafe()",
        secret=True,
    )
    torch_threads: int | None = option(
        None, Int(optional=True), "PyTorch threads per model call (None: one per core)", unit="threads"
    )
    debug: bool = option(False, Flag(), "put exception messages and tracebacks in error bodies")

    def __post_init__(self) -> None:
        check_fields(self)

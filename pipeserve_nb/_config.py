"""Server limits: queue size, request timeout, drain time, body size, access token, error detail."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ServerConfig"]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How much a server accepts and how long it waits.

    Parameters:
        max_queue: requests that may wait for the worker; one more gets a fast 503
            with ``Retry-After`` (the circuit breaker). The default is about a second of
            work for the bundled model on 2 cores: overload is shed, not queued for minutes.
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

    max_queue: int = 256
    timeout_s: float = 60.0
    drain_timeout_s: float = 10.0
    max_inputs_per_request: int = 256
    max_body_bytes: int = 1_048_576
    auth_token: str | None = field(default=None, repr=False)
    torch_threads: int | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        for name in ("max_queue", "max_inputs_per_request", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("timeout_s", "drain_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        threads = self.torch_threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"torch_threads must be None or an int >= 1, got {threads!r}")
        token = self.auth_token
        if token is not None and (not isinstance(token, str) or len(token) < 16 or not token.isascii()):
            raise ValueError("auth_token must be an ASCII string of 16+ characters, e.g. secrets.token_urlsafe()")

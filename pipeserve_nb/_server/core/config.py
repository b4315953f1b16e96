"""Server limits: queue size and wait, timeouts, drain time, request size, generation, access token, error detail."""

from __future__ import annotations

from dataclasses import dataclass

from ..._options import Custom, Flag, Int, Number, Text, check_fields, option

__all__ = ["ServerConfig", "JOIN_RULES", "CORES"]

_SECONDS = Number(strict=True, of="seconds")

JOIN_RULES = ("continuous", "static", "one_at_a_time")
"""When a new generation joins the running ones (``generation``): at the next model step, when the running
batch has ended, or one generation at a time."""

CORES = ("shared", "own")
"""``ServerConfig.cores``: leave PyTorch's thread teams as they are, or let the caller's go (``thread_team``)."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How much a server accepts and how long it waits.

    Parameters:
        max_queue: requests that may wait for the model (every request accepted and not yet
            started); one more gets a fast 503 with ``Retry-After`` (the circuit breaker).
            Behind the bound in time below, it caps what waits while there is no forecast yet
            (a cold server's first calls) and the memory a burst of requests can take; the
            default is a few seconds of work for the bundled model on a small CPU.
        max_queue_wait_s: admission by time: a request the server forecasts would wait longer
            than this to *start* (the model calls that will run what waits before it, priced
            by the call cost fitted from the calls it ran, and scaled by how far real waits ran
            past such forecasts) gets a fast 503 whose ``Retry-After`` is that forecast,
            rounded up. None: only ``max_queue`` bounds the queue. The default, 2 s, keeps a
            queue of work deep enough for length-aware batches to pad little, within a wait a
            caller will bear; lower it where a caller would rather be refused than wait.
            ``make reliability`` compares it with 0.25, 0.5 and 1 s under a 3x overload
            (``docs/performance.md``).
            A generation is admitted by the same bound on its wait for its turn: for a slot and the
            prefill of the prompts ahead of it, forecast from the step loop's measured costs (``first_token``).
        stuck_call_s: a model call running longer than this makes ``/health`` answer 503
            (it recovers when the call returns). None: ten times the call's predicted time,
            and at least 10 s (first calls and odd inputs are slow; a hung call is hung).
        timeout_s: a request still unanswered this long after it arrived gets 504; if it
            is still queued then, it is dropped and never reaches the model.
        drain_timeout_s: how long ``stop()`` lets queued and running requests finish
            before answering the rest with 503.
        max_inputs_per_request: most texts in one ``{"inputs": [...]}`` request; more get 413.
        max_body_bytes: largest request body; a bigger one gets 413 before it is read
            (at once when ``Content-Length`` says so, else as soon as the limit is passed).
        max_url_bytes: longest request target (path and query); a longer one gets 414.
        max_headers: most header fields in one request; more get 431.
        max_header_bytes: most bytes of header names and values in one request; more get 431.
            A head that keeps arriving past about this size without ending is cut off with
            431 before it is buffered (``http_protocol``).
        max_json_depth: deepest nesting of objects and lists in a JSON body (the body is
            level 1); deeper gets 400. No document can exhaust a stack (orjson stops at 1024).
        auth_token: when set, every request must carry ``Authorization: Bearer <token>``
            (compared in constant time) or it gets 401. Required to bind a non-loopback
            address unless ``serve(..., allow_unauthenticated=True)``. Never shown in ``repr``.
        max_new_tokens: the most tokens one generation may write; a request asking for more gets 400,
            one asking for nothing gets this (or what is left of the model's context).
        max_streams: the most generations that share one model step; more wait for a slot
            (``max_queue`` bounds how many may wait).
        generation: when a new generation joins the running ones: ``"continuous"`` at the
            next step (continuous batching), ``"static"`` only when the running batch has
            ended, ``"one_at_a_time"`` one generation at a time (``JOIN_RULES``).
        torch_threads: threads PyTorch uses inside one model call, set with
            ``torch.set_num_threads`` (process-wide) before the model loads and restored
            when the server stops; None keeps PyTorch's choice (one per core). The event
            loop needs little CPU; ``make bench`` measures the default against 1 thread.
        cores: ``"shared"`` (the default) leaves PyTorch's thread teams as they are: in a notebook the
            kernel's thread that loaded the model (where "auto" times bfloat16) or called it keeps an
            idle team, and with more threads than cores
            PyTorch's OpenMP runtime (libgomp) lets idle workers sleep, polite to other busy processes.
            ``"own"``: the thread that calls ``serve()`` lets its team go, so the server's is the only
            one and its idle workers spin between ops: faster when the cores are the server's, several
            times slower when another process computes on them (``docs/performance.md``). It lasts until
            that thread runs a PyTorch op again. A server that loads its own model (``serve("name")``,
            the command line) has the only team either way. Linux with PyTorch's own libgomp only.
        debug: put exception messages and Python tracebacks in error bodies (never on a
            shared server: they can reveal file paths and internals).

    Example:
        >>> ServerConfig(max_queue=64, timeout_s=5.0).max_queue
        64
    """

    max_queue: int = option(256, Int(), "requests waiting for the model before a fast 503", unit="requests")
    max_queue_wait_s: float | None = option(
        2.0,
        Number(strict=True, of="seconds", optional=True),
        "503 a request forecast to wait longer to start",
        unit="s",
    )
    stuck_call_s: float | None = option(
        None, Number(strict=True, of="seconds", optional=True), "a model call longer than this fails /health", unit="s"
    )
    timeout_s: float = option(60.0, _SECONDS, "a request unanswered this long gets 504", unit="s")
    drain_timeout_s: float = option(10.0, _SECONDS, "how long stop() lets waiting requests finish", unit="s")
    max_inputs_per_request: int = option(256, Int(), "most texts in one JSON request (413 above)", unit="inputs")
    max_body_bytes: int = option(1_048_576, Int(), "largest request body (413 above)", unit="bytes")
    max_url_bytes: int = option(8192, Int(), "longest request target, path and query (414 above)", unit="bytes")
    max_headers: int = option(100, Int(), "most header fields in one request (431 above)", unit="headers")
    max_header_bytes: int = option(16384, Int(), "most bytes of header fields (431 above)", unit="bytes")
    max_json_depth: int = option(32, Int(min=2, max=1000), "deepest nesting of a JSON body (400 above)", unit="levels")
    auth_token: str | None = option(
        None,
        Text(min_length=16, ascii=True, optional=True),
        "bearer token every request must carry; needed for a non-loopback host",
        hint="e.g. secrets.token_urlsafe()",
        secret=True,
    )
    max_new_tokens: int = option(
        512, Int(), "most tokens one generation may write (400 above; also the default budget)", unit="tokens"
    )
    max_streams: int = option(16, Int(), "generations that share one model step", unit="streams")
    generation: str = option(
        "continuous",
        Custom("one of " + ", ".join(repr(r) for r in JOIN_RULES), lambda v: v in JOIN_RULES, str.strip),
        "when a new generation joins the running ones (continuous, static, one_at_a_time)",
    )
    torch_threads: int | None = option(
        None, Int(optional=True), "PyTorch threads per model call (None: one per core)", unit="threads"
    )
    cores: str = option(
        "shared",
        Custom("one of " + ", ".join(repr(c) for c in CORES), lambda v: v in CORES, str.strip),
        "own: the caller lets its PyTorch thread team go, the server's spins (faster alone)",
    )
    debug: bool = option(False, Flag(), "put exception messages and tracebacks in error bodies")

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def max_head_bytes(self) -> int:
        """Most bytes of a request head (request line and headers, with their separators)."""
        return self.max_url_bytes + self.max_header_bytes + 4 * self.max_headers + 64

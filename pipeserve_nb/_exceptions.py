"""Exceptions.

The tree::

    PipeserveError
    ├── InvalidSetting            an option's value breaks its rule (also a ``ValueError``)
    ├── ServerStartError          serve() could not start a server; ``__cause__`` says why
    ├── ServerError               a client helper got an error answer (status, type, message)
    ├── LoadGeneratorError        a load run failed in its generator (not in the server)
    └── RequestFailed             one request could not be answered with a result
        ├── InvalidInput          the body or its inputs are malformed        -> 400
        ├── UnsupportedMediaType  the Content-Type is not text or JSON        -> 415
        ├── ModelNotFound         the request names a model the server does not hold -> 404
        ├── TooLarge              body, input count or an input's tokens over a limit -> 413
        ├── Overloaded            the queue is full (circuit breaker)         -> 503
        ├── ServerStopping        the server is draining or stopped           -> 503
        ├── WorkerDied            the inference worker is gone                -> 503
        ├── RequestTimeout        no answer before the request's deadline     -> 504
        └── InferenceFailed       the model raised for this request's inputs  -> 500

Only the web layer turns ``RequestFailed`` subclasses into HTTP statuses, from the one
table in ``_server/edge/errors.py``; the engine and worker raise them without knowing about HTTP.
"""

from __future__ import annotations

__all__ = [
    "PipeserveError",
    "InvalidSetting",
    "ServerStartError",
    "ServerError",
    "LoadGeneratorError",
    "RequestFailed",
    "InvalidInput",
    "ModelNotFound",
    "UnsupportedMediaType",
    "TooLarge",
    "Overloaded",
    "ServerStopping",
    "WorkerDied",
    "RequestTimeout",
    "InferenceFailed",
]


class PipeserveError(Exception):
    """Base class of every error pipeserve_nb raises on purpose."""


class InvalidSetting(PipeserveError, ValueError):
    """A setting's value breaks its rule; the message states the rule and the value given."""


class ServerStartError(PipeserveError):
    """``serve()`` could not start the server; the real cause is chained as ``__cause__``."""


class ServerError(PipeserveError):
    """The server answered a client helper's request with an error status."""

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(f"HTTP {status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message


class LoadGeneratorError(PipeserveError):
    """A load run failed in its generator (its process died, or it raised)."""


class RequestFailed(PipeserveError):
    """One request could not be answered with a result; ``param`` names the request field at fault, where
    one is (OpenAI's error body reports it)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidInput(RequestFailed):
    """The request body or its inputs are malformed, or the model rejected its parameters."""


class ModelNotFound(RequestFailed):
    """The request names a model this server does not hold (the ``model`` field, or the path)."""


class UnsupportedMediaType(RequestFailed):
    """The request's Content-Type is neither text nor JSON."""


class TooLarge(RequestFailed):
    """The body, the number of inputs, or one input's length is over the server's limit."""


class Overloaded(RequestFailed):
    """The queue is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerStopping(RequestFailed):
    """The server is draining or stopped and takes no new work."""


class WorkerDied(RequestFailed):
    """The inference worker has stopped unexpectedly; the server cannot answer.

    It is not restarted: stop the server and start a new one. The fatal exception is
    ``__cause__`` and ``ServerHandle.failure``.
    """


class RequestTimeout(RequestFailed):
    """The request was not answered before its deadline."""


class InferenceFailed(RequestFailed):
    """The model raised while running this request's inputs (alone, after a batch failed).

    The message names only the exception type; the exception itself is ``__cause__``
    (shown to clients only when ``ServerConfig.debug`` is set).
    """

"""pipeserve_nb: serve a Hugging Face transformers pipeline from a notebook, and measure it.

Two lines in a cell::

    import pipeserve_nb
    server = pipeserve_nb.serve()          # bundled all-MiniLM-L6-v2, free port, own thread
    server.query("hello world")            # 384 floats
    server.stop()

Importing this package starts nothing: no thread, no logging set-up, no asyncio patch.
"""

from ._client import aquery, query
from ._config import ServerConfig
from ._corpus import sample_texts
from ._exceptions import (
    InferenceFailed,
    InvalidInput,
    LoadGeneratorError,
    Overloaded,
    PipeserveError,
    RequestFailed,
    RequestTimeout,
    ServerError,
    ServerStartError,
    ServerStopping,
    TooLarge,
    UnsupportedMediaType,
    WorkerDied,
)
from ._loadgen import ClosedLoop, OpenLoop
from ._memory import rss_mb
from ._models import LoadedModel, load_model
from ._nested import allow_nested_event_loops
from ._plots import plot_batch_sizes, plot_latency_cdf, plot_latency_over_time, plot_throughput_latency
from ._policy import BatchPolicy, SeedPagePolicy
from ._results import LoadResult, Summary
from ._runner import arun_load, run_load
from ._seed_page import seed_page_app
from ._server import ServerHandle, serve
from ._sweep import sweep
from ._thread_server import AppHandle, running_servers, serve_app, stop_all

__version__ = "0.1.0"

__all__ = [
    "serve",
    "stop_all",
    "running_servers",
    "ServerHandle",
    "serve_app",
    "AppHandle",
    "BatchPolicy",
    "SeedPagePolicy",
    "ServerConfig",
    "query",
    "aquery",
    "sample_texts",
    "load_model",
    "LoadedModel",
    "rss_mb",
    "ClosedLoop",
    "OpenLoop",
    "run_load",
    "arun_load",
    "LoadResult",
    "Summary",
    "sweep",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_throughput_latency",
    "plot_batch_sizes",
    "seed_page_app",
    "allow_nested_event_loops",
    "PipeserveError",
    "ServerStartError",
    "ServerError",
    "LoadGeneratorError",
    "RequestFailed",
    "InvalidInput",
    "UnsupportedMediaType",
    "TooLarge",
    "Overloaded",
    "ServerStopping",
    "WorkerDied",
    "RequestTimeout",
    "InferenceFailed",
]

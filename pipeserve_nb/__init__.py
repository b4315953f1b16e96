"""pipeserve_nb: serve a Hugging Face transformers pipeline from a notebook, and measure it.

Two lines in a cell::

    import pipeserve_nb
    server = pipeserve_nb.serve()          # bundled all-MiniLM-L6-v2, free port, own thread
    server.query("hello world")            # 384 floats
    server.stop()

The package's parts: ``_server`` (the request path, from HTTP to the model and back),
``_models`` (what is served), ``_measure`` (loads, results, plots: a client of the server),
``_live`` (the live panel in a notebook, another client), ``_ray`` (the same server as a Ray
Serve deployment, past one process), ``_teaching`` (the seed page's designs, kept to be
measured). This namespace is the public API. Importing it starts nothing: no thread, no
logging set-up, no asyncio patch, no Ray.
"""

from __future__ import annotations

from ._client import aquery, astream, query, stream
from ._exceptions import (
    InferenceFailed,
    InvalidInput,
    InvalidSetting,
    LoadGeneratorError,
    ModelNotFound,
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
from ._live.dashboard import Dashboard
from ._measure.corpus import sample_texts
from ._measure.findings import Findings
from ._measure.loads import ClosedLoop, OpenLoop, Replay
from ._measure.memory import model_copies, rss_mb
from ._measure.plots import (
    plot_batch_sizes,
    plot_generation,
    plot_latency_cdf,
    plot_latency_over_time,
    plot_throughput_latency,
)
from ._measure.procedures import PairedRounds, capacity, paired_rounds, soak, wait_drained, warm_up
from ._measure.results import LoadResult, Summary
from ._measure.runner import arun_load, run_load
from ._measure.streams import StreamAnswer, StreamLoad, StreamResult, run_streams
from ._measure.sweep import sweep
from ._measure.tune import Tuning, tune
from ._models.loading import load_model
from ._models.runner import Prepared, Runner
from ._models.spec import LoadedModel
from ._nested import allow_nested_event_loops
from ._ray.serve import serve_on_ray
from ._server.core.config import ServerConfig
from ._server.core.policy import BatchPolicy
from ._server.core.traffic import RecordedTraffic, Recording
from ._server.run.handle import AppHandle, ServerHandle, running_servers, stop_all
from ._server.run.serve import serve, serve_app
from ._teaching.seed_page import seed_page_app
from ._teaching.seed_policy import SeedPagePolicy
from ._teaching.workers import worker_processes

__version__ = "0.1.0"

__all__ = [
    "serve",
    "stop_all",
    "running_servers",
    "ServerHandle",
    "serve_app",
    "AppHandle",
    "serve_on_ray",
    "BatchPolicy",
    "SeedPagePolicy",
    "ServerConfig",
    "query",
    "aquery",
    "stream",
    "astream",
    "sample_texts",
    "load_model",
    "LoadedModel",
    "Runner",
    "Prepared",
    "rss_mb",
    "model_copies",
    "ClosedLoop",
    "OpenLoop",
    "Replay",
    "RecordedTraffic",
    "Recording",
    "run_load",
    "arun_load",
    "LoadResult",
    "Summary",
    "sweep",
    "tune",
    "Tuning",
    "StreamLoad",
    "StreamResult",
    "StreamAnswer",
    "run_streams",
    "warm_up",
    "wait_drained",
    "capacity",
    "soak",
    "paired_rounds",
    "PairedRounds",
    "Findings",
    "Dashboard",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_throughput_latency",
    "plot_batch_sizes",
    "plot_generation",
    "seed_page_app",
    "worker_processes",
    "allow_nested_event_loops",
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

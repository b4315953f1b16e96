"""The models of one server, by name: an engine each, one inference thread per device, one default.

A server holds one or several models (``serve("minilm", "smollm2")``, ``--model minilm --model smollm2``).
Each is an ``Engine`` of its own: its queue, its batching policy (the same settings, a policy object of its
own), its runner, its numbers. What they share is the device: the engines of one device hand their calls to
one ``InferenceThread``, so two models never run at the same time on the same cores (their thread teams would
fight for them). The thread runs jobs in the order they come: a batch of one model, then decode steps of a
generation until another job waits (``StepLoop``: after its current step), then the next batch: neither waits
for the other's whole queue.

Requests route by name (``get``): the ``model`` field on ``/v1``, the path on the native routes, the first
model when none is named. A model is also found by the name it describes itself with
(``Engine.model_name``, e.g. ``HuggingFaceTB/SmolLM2-135M-Instruct``). Lifecycle is the engines', in order:
loaded and started first to last, closed last to first (each gives back what it changed, in reverse).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator, Mapping

from ..._exceptions import ModelNotFound
from ..._models.naming import plain_name
from ..._models.spec import ModelSpec
from .config import ServerConfig
from .engine import Engine
from .inference import InferenceThread
from .policy import Policy

__all__ = ["Models"]


class Models:
    """The engines of one server by name; the first is the default (see the module docstring)."""

    def __init__(self, engines: Mapping[str, Engine], workers: Mapping[str, InferenceThread] | None = None) -> None:
        if not engines:
            raise ValueError("a server holds at least one model")
        self.engines = dict(engines)
        self.default_name = next(iter(self.engines))
        self._workers = workers if workers is not None else {}  # the shared device threads, made at first load
        self.not_loaded: str | None = None
        """The name of the model whose load failed (``load``)."""

    @classmethod
    def single(cls, engine: Engine) -> Models:
        """A server of one engine (which owns its own inference thread)."""
        return cls({engine.name: engine})

    @classmethod
    def build(
        cls,
        specs: Mapping[str, ModelSpec],
        policy: Policy,
        config: ServerConfig,
        server: str,
        replica: str | None = None,
    ) -> Models:
        """An engine per named spec, each with a copy of ``policy``; one inference thread per device."""
        threads: dict[str, InferenceThread] = {}

        def thread_of(device: str) -> Callable[[], InferenceThread]:
            def thread() -> InferenceThread:  # made when the first model of the device loads, not before
                if device not in threads:
                    threads[device] = InferenceThread(name=f"pipeserve-inference{device}")
                return threads[device]

            return thread

        engines = {}
        for name, spec in specs.items():
            device = "" if spec.device is None else f"-{spec.device}"
            engines[name] = Engine(
                spec, copy.copy(policy), config, server, replica, model=name, worker=thread_of(device)
            )
        return cls(engines, threads)

    @property
    def default(self) -> Engine:
        return self.engines[self.default_name]

    @property
    def config(self) -> ServerConfig:
        return self.default.config

    def __iter__(self) -> Iterator[tuple[str, Engine]]:
        return iter(self.engines.items())

    def __len__(self) -> int:
        return len(self.engines)

    def get(self, name: str | None) -> Engine:
        """The engine named ``name`` (None: the default), or ``ModelNotFound``, which lists the names held."""
        if name is None:
            return self.default
        engine = self.engines.get(name)
        if engine is not None:
            return engine
        for engine in self.engines.values():  # the name it describes itself with, its remark left out
            if name in (engine.model_name, plain_name(engine.model_name)):
                return engine
        held = ", ".join(repr(n) for n in self.engines)
        raise ModelNotFound(f"this server holds no model {name!r}; it holds {held}", param="model")

    def load(self) -> None:
        """Load every model, first to last (blocking); on a failure, release what was loaded and raise."""
        for name, engine in self.engines.items():
            try:
                engine.load()
            except Exception:
                self.not_loaded = name
                self.release(timeout_s=5.0)
                raise

    async def start(self) -> None:
        for engine in self.engines.values():
            await engine.start()

    async def drain(self, timeout_s: float) -> None:
        await asyncio.gather(*(engine.drain(timeout_s) for engine in self.engines.values()))

    async def close(self) -> None:
        for engine in reversed(self.engines.values()):
            await engine.close()
        if self._workers:  # awaited, not joined in the loop's executor (see ``Engine.close``)
            self._close_workers(timeout_s=0.0)
            await asyncio.wait([asyncio.wrap_future(w.ended) for w in self._workers.values()], timeout=1.0)

    def release(self, timeout_s: float = 0.0) -> bool:
        """Release every engine, last to first, then the shared threads; True if every thread has ended."""
        ended = [engine.release(timeout_s) for engine in reversed(self.engines.values())]
        return all(ended) and self._close_workers(timeout_s)

    def record_response(self, status: int, latency_s: float, model: str | None = None) -> None:
        """Count an answer in the numbers of the model it was for (the default's when none was routed)."""
        engine = self.engines.get(model) if model is not None else None
        (engine or self.default).stats.record_response(status, latency_s)

    @property
    def failure(self) -> BaseException | None:
        return next((e.failure for e in self.engines.values() if e.failure is not None), None)

    def _close_workers(self, timeout_s: float) -> bool:
        return all([worker.close(timeout_s) for worker in list(self._workers.values())])

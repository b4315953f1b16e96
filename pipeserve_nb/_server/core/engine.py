"""The engine: one model copy, its queue, its batch loop, its inference and preparation threads, and
their lifecycle.

Data flows one way: ``reserve()`` (the edge, before it reads a body) takes room for a request
(``admission``); ``submit()`` checks its parameter names, hands it to the ``Preparation`` thread
(its texts become the model's inputs, off the event loop) and returns its future; once prepared
it is put on the ``BatchQueue``; the ``BatchLoop`` runs batches on the ``InferenceThread`` and
answers each future. A request that would run alone at once (the fast lane: one input, nothing
waiting or being prepared, no model call running, a policy that does not wait for company) skips
the preparation thread: it is queued unprepared and prepared on the inference thread at the start
of its own call, which spares a lone request a thread hand-off; it is never prepared on the loop.
The engine only wires these together and owns their lifecycle; it knows nothing of HTTP.
Lifecycle: CREATED -> (load) -> RUNNING -> DRAINING -> STOPPED, or RUNNING -> FAILED when the batch
loop or the inference thread dies (then every queued and new request gets ``WorkerDied``, ``failure``
holds the cause, and nothing restarts by itself: the owner stops and serves again).

Stopping has one order, whoever asks for it: ``drain()`` (no new requests; those waiting
get up to the drain time to finish; the rest are answered with ``ServerStopping``), then
``close()`` in the app's lifespan (stop the batch loop and the thread, drop the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any

from ..._exceptions import InvalidInput, RequestFailed, ServerStopping
from ..._models.generation.chat import PromptRequest
from ..._models.generation.parameters import PIPELINE_PARAMETERS
from ..._models.loading import load
from ..._models.spec import LoadedModel, ModelSpec
from ..observe.stats import Stats, clock
from .admission import Admission, batching_key
from .batch_loop import BatchLoop
from .batch_queue import BatchQueue
from .config import ServerConfig
from .cost import Forecast
from .generating import Generating
from .inference import InferenceThread, set_torch_threads
from .policy import Policy
from .preparation import Preparation, Prepared
from .request import Request, Result, stopping, worker_died
from .stream import Generation
from .traffic import TrafficLog

__all__ = ["Engine", "EngineState", "Reservation"]


class EngineState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Reservation:
    """Room for one request, taken before its body is read (``Engine.reserve``): it counts as accepted
    until ``submit`` takes it over or ``release`` gives it back (idempotent)."""

    __slots__ = ("_engine", "_held", "forecast")

    def __init__(self, engine: Engine, forecast: Forecast | None) -> None:
        self._engine = engine
        self._held = True
        self.forecast = forecast
        """Its start wait as forecast when the room was taken (admission by time)."""

    def release(self) -> None:
        """Give the room back (the request was refused, or never submitted); nothing once used."""
        if self._held:
            self._held = False
            self._engine._reserved -= 1

    @property
    def held(self) -> bool:
        """Whether it still holds room that nobody used."""
        return self._held


class Engine:
    """One model copy, one queue, one inference thread, one preparation thread.

    ``load()`` may be called from any thread but the server's loop, to load the model
    before the server starts (so a load error raises in the caller); ``start()``,
    ``reserve()``, ``submit()``, ``drain()`` and ``close()`` run on the server's event loop.
    """

    def __init__(
        self,
        spec: ModelSpec,
        policy: Policy,
        config: ServerConfig,
        name: str = "default",
        replica: str | None = None,
        *,
        model: str | None = None,
        worker: Callable[[], InferenceThread] | None = None,
    ) -> None:
        self.spec, self.policy, self.config = spec, policy, config
        self.replica = replica  # which replica of a Ray Serve deployment this is (None: a server of its own)
        self.name = model or "default"
        """The model's name in its server (what requests route by, the ``model`` label of its metrics)."""
        self.stats = Stats(name, replica=replica, model=self.name)
        self.state = EngineState.CREATED
        self.failure: BaseException | None = None
        self.model_name = spec.describe()
        self.device: str | None = None
        self.dtype: str | None = None
        self._model: LoadedModel | None = None
        self._worker: InferenceThread | None = None
        self._new_worker = worker or InferenceThread  # given: the device's thread, shared with its other engines
        self._owns_worker = worker is None
        self._queue: BatchQueue | None = None
        self._admission: Admission | None = None
        self._batches: BatchLoop | None = None
        self._preparation: Preparation | None = None
        self._reserved = 0
        self._task: asyncio.Task[None] | None = None
        self._unanswered = 0
        self._all_answered: asyncio.Event | None = None
        self._torch_threads_before: int | None = None
        self._generating: Generating | None = None
        self.traffic: TrafficLog | None = None
        """Where admitted requests are recorded while ``server.recording()`` runs (None: not recording)."""

    def load(self) -> None:
        """Load the model on the inference thread and wait for it (blocking)."""
        if self._model is None:
            self._set_model(self._load_on_worker().result())

    async def start(self) -> None:
        """Load the model if needed, then start the batch loop on the running loop."""
        if self.state is not EngineState.CREATED:
            raise RuntimeError(f"an engine starts once; this one is {self.state.value}")
        if self._model is None:
            try:
                self._set_model(await asyncio.wrap_future(self._load_on_worker()))
            except BaseException as exc:
                self.failure = exc
                self.state = EngineState.FAILED
                self.release()
                raise
        model, worker = self._model, self._worker
        if model is None or worker is None:  # pragma: no cover - set just above
            raise RuntimeError("the model is not loaded")
        self._queue = BatchQueue(self.policy)
        self._batches = BatchLoop(self._queue, model.runner, worker, self.stats, self.config.max_queue_wait_s)
        self._admission = Admission(model.runner, self.config, self.queue_depth, self._batches.start_wait_s)
        self._batches.prepare = self._admission.prepare
        self._preparation = Preparation(self._admission.prepare, self._prepared, asyncio.get_running_loop())
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        if model.chat is not None:
            self._generating = Generating(model.chat, worker, self.config)
            observe = self.stats.metrics.watch_generation(self._generating.numbers)
            # called on the inference thread: the histograms are thread-safe
            self._generating.steps.on_finished = lambda f: observe(f.first_token_s, f.inter_token_s)
        self._task = asyncio.create_task(self._batches.run(), name="pipeserve-batch-loop")
        self._task.add_done_callback(self._on_batch_loop_exit)
        self.state = EngineState.RUNNING

    async def drain(self, timeout_s: float) -> None:
        """Take no new requests; let waiting and running ones finish for up to ``timeout_s``;
        answer whatever is left with ``ServerStopping``."""
        if self.state is EngineState.RUNNING:
            self.state = EngineState.DRAINING
        if self._generating is not None:  # a generation ends within one model step
            await self._generating.stop(timeout_s)
        if self._all_answered is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_answered.wait(), timeout_s)
        self._fail_unanswered(stopping)

    async def close(self) -> None:
        """Answer what is left with ``ServerStopping``, stop the batch loop and the inference
        thread, and drop the model (the app's lifespan calls this once, at the end)."""
        if self.state is EngineState.RUNNING:
            self.state = EngineState.DRAINING
        self._fail_unanswered(stopping)
        if self._generating is not None:
            await self._generating.stop(1.0)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._preparation is not None:  # it skips what is answered: it ends at once
            self._preparation.close(timeout_s=0.0)
            # awaited, not joined on a thread of the loop's executor: that refuses work once the interpreter
            # exits, when ``atexit`` stops a server a script left running
            await asyncio.wait([asyncio.wrap_future(self._preparation.ended)], timeout=1.0)
        self.release()
        if self._worker is not None and self._owns_worker:  # a call that never returns keeps its daemon thread
            await asyncio.wait([asyncio.wrap_future(self._worker.ended)], timeout=1.0)
        if self.state is not EngineState.FAILED:
            self.state = EngineState.STOPPED

    def release(self, timeout_s: float = 0.0) -> bool:
        """Tell the inference thread to end after its current batch, wait up to ``timeout_s``
        for it (blocking), drop the model, and give PyTorch back the thread count it had.
        True if the thread has ended. Safe to call again."""
        self._model = None
        if self._torch_threads_before is not None:
            set_torch_threads(self._torch_threads_before)
            self._torch_threads_before = None
        if self._worker is None or not self._owns_worker:  # a shared thread is closed by its owner (``Models``)
            return True
        return self._worker.close(timeout_s)

    @property
    def model(self) -> LoadedModel | None:
        """The loaded model (None before ``load()`` and after ``close()``)."""
        return self._model

    @property
    def parameter_names(self) -> frozenset[str] | None:
        """The parameter names its native ``POST`` takes (None: any): a generation's when the model is served one
        token at a time, else its runner's."""
        if self._generating is not None:
            return PIPELINE_PARAMETERS
        return self._model.parameter_names if self._model is not None else None

    @property
    def generating(self) -> Generating | None:
        """The generations (None before ``start()``, and for a model that is not served one token at a time)."""
        return self._generating

    def generate(self, request: PromptRequest) -> Generation:
        """Start a generation (on the server's loop): ``ServerStopping``/``WorkerDied`` when the engine does not
        run, ``InvalidInput`` when its model is not served one token at a time, ``Overloaded`` when too many
        wait. Read its pieces with ``Generation.pieces()``; ``cancel("client_gone")`` when the caller leaves."""
        if self.state is not EngineState.RUNNING:
            raise self._unavailable()
        if self._generating is None:
            raise InvalidInput(f"{self.model_name} is not served one token at a time: it has no chat route")
        return self._generating.start(request)

    @property
    def batches(self) -> BatchLoop | None:
        """The batch loop (None before ``start()``): the running call and the call cost."""
        return self._batches

    def serving(self) -> bool:
        """Whether the engine runs, its batch loop runs and its inference thread lives."""
        loop_alive = self._task is not None and not self._task.done()
        return self.state is EngineState.RUNNING and loop_alive and self._worker is not None and self._worker.is_alive()

    @property
    def worker(self) -> InferenceThread | None:
        """The inference thread (it outlives ``close()`` inside a model call that never returns)."""
        return self._worker

    def queue_depth(self) -> int:
        """Requests accepted and not yet started: room reserved for a body being read, requests being
        prepared, and requests queued or pooled for the next batch."""
        return self._reserved + (self._queue.depth() if self._queue is not None else 0)

    def reserve(self) -> Reservation:
        """Room for one more request (the one room check it gets), or what ``submit()`` would raise for
        it: ``Overloaded``, ``ServerStopping``, ``WorkerDied``. Cheap: the edge asks before it reads
        a body, so a refusal under overload costs little; the room is held while the body is read."""
        if self.state is not EngineState.RUNNING or self._admission is None:
            raise self._unavailable()
        reservation = Reservation(self, self._admission.room())
        self._reserved += 1
        return reservation

    def submit(
        self, inputs: list[str], parameters: Mapping[str, Any], reservation: Reservation | None = None
    ) -> asyncio.Future[Result]:
        """Admit one request in the room ``reservation`` holds (taken now if None) and prepare it off
        the event loop; return the future of its ``Result`` (on the server's loop).

        Raises what ``reserve()`` raises, and ``InvalidInput`` for a parameter the model does not
        take. The future fails with ``TooLarge`` or ``InvalidInput`` if preparing the inputs finds
        them over the model's limits or refused by it, with ``RequestTimeout`` at the request's
        deadline, with the model's error if it failed on these inputs, with ``ServerStopping`` or
        ``WorkerDied`` if the engine stops first. Cancel it when the caller goes away: a request
        still waiting then never runs, and is counted as dropped.
        """
        queue, admission, preparation = self._queue, self._admission, self._preparation
        if self.state is not EngineState.RUNNING or queue is None or admission is None or preparation is None:
            raise self._unavailable()
        if reservation is None or not reservation.held:
            reservation = self.reserve()
        try:
            admission.check_names(parameters)
        except BaseException:
            reservation.release()
            raise
        loop = asyncio.get_running_loop()
        now, timeout_s = clock(), self.config.timeout_s
        request = Request(inputs, parameters, loop.create_future(), now, now + timeout_s)
        if (traffic := self.traffic) is not None:
            traffic.add(now, inputs, parameters)
        request.forecast = reservation.forecast
        request.timer = loop.call_later(timeout_s, request.expire)
        reservation.release()  # its room passes to the request
        queue.expect(request)
        if self._runs_alone_at_once(request, now):
            request.key = batching_key(parameters)
            queue.put(request)  # unprepared: the inference thread prepares it at the start of its call
        else:
            preparation.submit(request)
        self._unanswered += 1
        if self._all_answered is not None:
            self._all_answered.clear()
        request.future.add_done_callback(partial(self._answered, request))
        return request.future

    def _runs_alone_at_once(self, request: Request, now: float) -> bool:
        """Whether ``request`` takes the fast lane: one input, nothing else accepted and not started, no
        model call running, and a policy that closes a lone request's batch at once (a wait for returning
        clients may still hold it; those that join are prepared as usual, it on the inference thread)."""
        queue, batches = self._queue, self._batches
        return (
            len(request.inputs) == 1
            and queue is not None
            and queue.depth() == 1  # this request, just expected
            and batches is not None
            and batches.running is None
            and self.policy.collect_deadline(now, now) <= now
        )

    def _prepared(self, done: list[tuple[Request, Prepared]]) -> None:
        """The preparation thread's delivery (on the event loop): queue each request, or answer its error."""
        queue = self._queue
        for request, outcome in done:
            if request.future.done():  # answered meanwhile: the queue forgot it then
                continue
            if isinstance(outcome, BaseException):
                request.fail(outcome)
            elif queue is not None:
                request.prepared(*outcome)
                queue.put(request)

    def _answered(self, request: Request, future: asyncio.Future[Result]) -> None:
        if request.timer is not None:
            request.timer.cancel()
        if not future.cancelled():
            future.exception()  # observed here: a handler that went away must not leave it "never retrieved"
        reason = request.drop_reason()
        if reason is not None:
            self.stats.record_drop(reason)
        if self._queue is not None and request.started_s is None:
            self._queue.discard(request)
        self._unanswered -= 1
        if not self._unanswered and self._all_answered is not None:
            self._all_answered.set()

    def _on_batch_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self.failure = error.__cause__ if error is not None and error.__cause__ is not None else error
        self.state = EngineState.FAILED
        self._fail_unanswered(self._unavailable)

    def _load_on_worker(self) -> Future[LoadedModel]:
        """Load the model on the inference thread, the only thread that will run it."""
        if self._worker is None:
            self._worker = self._new_worker()
        return self._worker.submit(self._load)

    def _load(self) -> LoadedModel:
        if self.config.torch_threads is not None:
            self._torch_threads_before = set_torch_threads(self.config.torch_threads)
        return load(self.spec)

    def _set_model(self, model: LoadedModel) -> None:
        self._model = model
        self.model_name, self.device, self.dtype = model.name, model.device, model.dtype

    def _fail_unanswered(self, error: Callable[[], RequestFailed]) -> None:
        """Answer every waiting or running request with a fresh ``error()``."""
        waiting = self._queue.drain_nowait() if self._queue is not None else []
        running = self._batches.running if self._batches is not None else None
        for request in waiting + ([s.request for s in running.slices] if running is not None else []):
            request.fail(error())

    def _unavailable(self) -> RequestFailed:
        if self.state is EngineState.FAILED:
            return worker_died(self.failure)
        if self.state is EngineState.CREATED:
            return ServerStopping("the server has not started yet")
        return stopping("the server is stopping and takes no new requests")

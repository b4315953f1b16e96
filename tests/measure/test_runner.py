"""``run_load``: the load generator against a stub server with a known service time, over a real socket."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from pipeserve_nb import ClosedLoop, LoadGeneratorError, OpenLoop, arun_load, run_load, serve_app

from .stub_app import StubServer


def loadgen_children() -> list[psutil.Process]:
    """Live child processes that run a load generator."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "child_main" in cmd and child.status() != psutil.STATUS_ZOMBIE:
            out.append(child)
    return out


@pytest.fixture
def stub() -> Iterator[tuple[StubServer, str]]:
    server = StubServer(service_s=0.02)
    with serve_app(server.app, name="stub") as handle:
        yield server, handle.url
    assert multiprocessing.active_children() == []
    assert loadgen_children() == []


@pytest.mark.parametrize("in_process", [False, True])
def test_open_loop_latency_includes_the_queueing_a_slow_server_causes(
    stub: tuple[StubServer, str], in_process: bool
) -> None:
    server, url = stub
    # 100 requests/s against a server that does 50/s: each request waits for all before it.
    load = OpenLoop(rate_rps=100, requests=40, arrivals="constant")
    result = run_load(url, load, texts=["x"], in_process=in_process, progress=False)
    df = result.frame()
    assert list(df.status) == [200] * 40
    assert df.intended_s.tolist() == pytest.approx([i / 100 for i in range(40)])
    # The stub serves one request at a time for at least 20 ms each, so the k-th answer (in the
    # order answers came: requests on fresh connections may reach the stub after later ones on
    # open ones) cannot come before (k + 1) * 20 ms. Latency counted from the intended send time
    # puts each answer at intended + latency: that must hold all of the queueing.
    answered_ms = sorted(df.intended_s * 1000 + df.latency_ms)
    for k, at_ms in enumerate(answered_ms):
        assert at_ms >= (k + 1) * 20 - 1
    assert result.summary.p99_ms == df.latency_ms.sort_values().iloc[39]  # nearest rank over 40
    assert server.served == 40


@pytest.mark.parametrize("in_process", [False, True])
def test_closed_loop_runs_exactly_the_asked_concurrency(stub: tuple[StubServer, str], in_process: bool) -> None:
    server, url = stub
    result = run_load(url, ClosedLoop(concurrency=5, requests=60), texts=["a", "b", "c"], in_process=in_process)
    assert server.max_inside == 5
    assert result.summary.requests == result.summary.ok == 60
    assert sorted(server.bodies) == sorted(["a", "b", "c"] * 20)
    df = result.frame()
    assert result.summary.behind_schedule == 0 and df.lag_ms.max() == 0  # closed loop: sent when intended
    assert result.generator_cpu_s is not None and result.generator_cpu_s > 0  # its process, or its thread, was read


def test_duration_bounded_loads_stop_sending_after_the_duration(stub: tuple[StubServer, str]) -> None:
    _, url = stub
    result = run_load(url, ClosedLoop(concurrency=2, duration_s=0.5), progress=False)
    df = result.frame()
    # 20 ms each, one at a time: at most 25 requests fit in 0.5 s, plus the two that left last
    assert df.intended_s.max() < 0.5 and 1 <= len(df) <= 0.5 / 0.02 + 2
    assert df.index.tolist() == list(range(len(df)))


def test_await_form_works_in_process_and_in_a_child() -> None:
    server = StubServer(service_s=0.005)

    async def both(url: str) -> tuple[int, int]:
        a = await arun_load(url, ClosedLoop(concurrency=3, requests=12), in_process=True, progress=False)
        b = await arun_load(url, OpenLoop(rate_rps=50, requests=12), progress=False)
        # on the caller's own loop the generator's CPU is not its own; the child's is read
        assert a.generator_cpu_s is None and b.generator_cpu_s is not None and b.generator_cpu_s > 0
        return a.summary.ok, b.summary.ok

    with serve_app(server.app, name="stub") as handle:
        assert asyncio.run(both(handle.url)) == (12, 12)
    assert loadgen_children() == []


def test_errors_and_missing_answers_are_rows_too(stub: tuple[StubServer, str]) -> None:
    _, url = stub
    result = run_load(url, ClosedLoop(concurrency=2, requests=6), texts=["ok", "fail"], progress=False)
    assert result.summary.by_status == {200: 3, 400: 3}
    assert result.frame().error.fillna("").tolist() == ["", "InvalidInput"] * 3

    nobody = serve_app(StubServer(0.0).app, name="gone")
    gone_url = nobody.url
    nobody.stop()
    result = run_load(gone_url, ClosedLoop(concurrency=1, requests=3), progress=False)
    assert result.summary.by_status == {0: 3} and result.summary.answered == 0
    assert result.frame().error.tolist() == ["ConnectError"] * 3
    assert "3 requests got no HTTP answer" in result.warnings[0]


def test_a_generator_that_raises_leaves_no_process(stub: tuple[StubServer, str]) -> None:
    _, url = stub
    with pytest.raises(LoadGeneratorError, match="UnicodeEncodeError"):
        run_load(url, ClosedLoop(concurrency=1, requests=3), texts=["\ud800"], progress=False)
    assert loadgen_children() == []


@pytest.fixture
def stop_button() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a kernel, whatever this process inherited (a process started
    in the background of a shell, as CI may start the suite, inherits SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("stop_button")
def test_an_interrupt_stops_the_generator_process() -> None:
    server = StubServer(service_s=0.05)
    seen: list[int] = []

    def interrupt() -> None:
        assert server.first_request.wait(60), "the generator never sent a request"
        seen.extend(child.pid for child in loadgen_children())
        os.kill(os.getpid(), signal.SIGINT)  # what the notebook's stop button sends

    with serve_app(server.app, name="stub") as handle:
        interrupter = threading.Thread(target=interrupt)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            run_load(handle.url, ClosedLoop(concurrency=2, duration_s=60), progress=False)
        interrupter.join()
    assert seen, "the generator process was not running when interrupted"
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in seen)
    assert loadgen_children() == [] and multiprocessing.active_children() == []


@pytest.mark.usefixtures("stop_button")
def test_an_interrupt_stops_an_in_process_generator_and_its_thread() -> None:
    server = StubServer(service_s=0.05)

    def interrupt() -> None:
        assert server.first_request.wait(60), "the generator never sent a request"
        os.kill(os.getpid(), signal.SIGINT)

    with serve_app(server.app, name="stub") as handle:
        interrupter = threading.Thread(target=interrupt)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            run_load(handle.url, ClosedLoop(concurrency=2, duration_s=60), in_process=True, progress=False)
        interrupter.join()
    assert [t.name for t in threading.enumerate() if t.name == "pipeserve-loadgen"] == []


def test_an_interrupt_while_the_generator_thread_starts_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop button can land before ``run_load`` holds the generator (a busy machine is slow to return from
    the start-up wait): the generator's own constructor must stop what it started."""
    from pipeserve_nb._measure import workers

    class InterruptedOnce(threading.Event):
        fired = False

        def wait(self, timeout: float | None = None) -> bool:
            started = super().wait(timeout)
            caller = sys._getframe(1).f_locals.get("self")
            if isinstance(caller, workers.InThread) and not InterruptedOnce.fired:  # its start-up wait, once it runs
                InterruptedOnce.fired = True
                raise KeyboardInterrupt
            return started

    monkeypatch.setattr(workers.threading, "Event", InterruptedOnce)
    server = StubServer(service_s=0.05)
    with serve_app(server.app, name="stub") as handle, pytest.raises(KeyboardInterrupt):
        run_load(handle.url, ClosedLoop(concurrency=2, duration_s=60), in_process=True, progress=False)
    assert InterruptedOnce.fired
    assert [t.name for t in threading.enumerate() if t.name == "pipeserve-loadgen"] == []


def test_an_interrupt_inside_the_threads_own_start_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine the generator's first request (and so the stop button) can come before
    ``Thread.start()`` returns in the caller: the interrupt then lands inside ``start()``, with the
    thread already running (seen in CI: the load ran on to its end and failed the tests after it)."""
    from pipeserve_nb._measure import workers

    real_start = threading.Thread.start

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)
        if thread.name == "pipeserve-loadgen":
            raise KeyboardInterrupt

    monkeypatch.setattr(workers.threading.Thread, "start", start_then_interrupt)
    server = StubServer(service_s=0.05)
    with serve_app(server.app, name="stub") as handle, pytest.raises(KeyboardInterrupt):
        run_load(handle.url, ClosedLoop(concurrency=2, duration_s=60), in_process=True, progress=False)
    assert [t.name for t in threading.enumerate() if t.name == "pipeserve-loadgen"] == []


def test_an_interrupt_while_the_generator_process_starts_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeserve_nb._measure import workers

    real_pipe = workers.multiprocessing.Pipe
    spawned: list[int] = []

    class Interrupting:
        def __init__(self, conn: object) -> None:
            self.conn = conn

        def send(self, obj: object) -> None:
            spawned.extend(child.pid for child in loadgen_children())
            raise KeyboardInterrupt

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    def pipe(duplex: bool = True) -> tuple[object, object]:
        parent, child = real_pipe(duplex)
        return Interrupting(parent), child

    monkeypatch.setattr(workers.multiprocessing, "Pipe", pipe)
    with pytest.raises(KeyboardInterrupt):
        run_load("http://127.0.0.1:9", ClosedLoop(concurrency=1, requests=1), progress=False)
    assert spawned, "the generator process had started"
    assert loadgen_children() == []

"""The inference thread and batch execution: grouping, chunking, failure isolation."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pipeserve_nb._worker import InferenceThread, WorkerCrashed, run_batch


class Recorder:
    """A batch function that upper-cases texts, fails on 'bad', and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.threads: set[str] = set()

    def __call__(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.calls.append((list(inputs), dict(parameters)))
        self.threads.add(threading.current_thread().name)
        if any(x == "bad" for x in inputs):
            raise ValueError("cannot handle 'bad'")
        suffix = parameters.get("suffix", "")
        return [x.upper() + suffix for x in inputs]


def test_one_model_call_per_parameter_group_with_outputs_split_back_per_request() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [(["a", "b"], {}), (["c"], {"suffix": "!"}), (["d"], {})], chunk_size=None)
    assert [o.outputs for o in outcomes] == [["A", "B"], ["C!"], ["D"]]
    assert fn.calls == [(["a", "b", "d"], {}), (["c"], {"suffix": "!"})]


def test_a_failing_batch_is_retried_per_request_so_only_the_bad_one_fails() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [(["a"], {}), (["bad"], {}), (["c", "d"], {})], chunk_size=None)
    assert outcomes[0].outputs == ["A"] and outcomes[2].outputs == ["C", "D"]
    assert outcomes[1].outputs is None and isinstance(outcomes[1].error, ValueError)
    assert fn.calls[0][0] == ["a", "bad", "c", "d"]  # the batch, then one call per request
    assert [c[0] for c in fn.calls[1:]] == [["a"], ["bad"], ["c", "d"]]


def test_a_model_that_always_fails_fails_every_request() -> None:
    def broken(inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        raise RuntimeError("out of memory")

    outcomes = run_batch(broken, [(["a"], {}), (["b"], {})], chunk_size=None)
    assert all(isinstance(o.error, RuntimeError) for o in outcomes)


def test_large_requests_run_in_chunks_of_the_cap() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [([str(i) for i in range(10)], {})], chunk_size=4)
    assert outcomes[0].outputs == [str(i) for i in range(10)]
    assert [len(c[0]) for c in fn.calls] == [4, 4, 2]


def test_the_inference_thread_runs_jobs_in_order_on_one_thread_and_survives_errors() -> None:
    worker = InferenceThread(name="pipeserve-test-inference")
    try:
        names: list[str] = []
        futures = [worker.submit(lambda i=i: names.append(f"{i}:{threading.current_thread().name}")) for i in range(5)]
        failing = worker.submit(lambda: 1 / 0)
        after = worker.submit(lambda: "still alive")
        for f in futures:
            f.result(5)
        with pytest.raises(ZeroDivisionError):
            failing.result(5)
        assert after.result(5) == "still alive"
        assert names == [f"{i}:pipeserve-test-inference" for i in range(5)]
        assert worker._thread.daemon
    finally:
        assert worker.close(timeout_s=5)
    with pytest.raises(RuntimeError, match="stopped"):
        worker.submit(lambda: None)


def test_parameters_that_fail_but_whose_inputs_run_without_them_are_marked_rejected() -> None:
    def picky(inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        if parameters.get("k", 1) < 1 or "bad" in inputs:
            raise ValueError("no")
        return list(inputs)

    outcomes = run_batch(picky, [(["a"], {"k": 0}), (["bad"], {"k": 2}), (["bad"], {})], chunk_size=None)
    assert [o.rejected_parameters for o in outcomes] == [True, False, False]
    assert all(isinstance(o.error, ValueError) for o in outcomes)


def test_a_non_exception_from_the_model_ends_the_thread_and_fails_what_is_queued() -> None:
    gate = threading.Event()
    worker = InferenceThread(name="pipeserve-test-inference")

    def exits() -> None:
        gate.wait(5)
        raise SystemExit("the model called sys.exit")

    dying = worker.submit(exits)
    queued = worker.submit(lambda: "never runs")
    gate.set()
    for future in (dying, queued):
        with pytest.raises(WorkerCrashed, match="the model raised SystemExit") as info:
            future.result(5)
        assert isinstance(info.value.__cause__, SystemExit)
    worker._thread.join(5)
    assert not worker.is_alive()
    with pytest.raises(WorkerCrashed):
        worker.submit(lambda: None)
    assert worker.close(timeout_s=1)

"""The inference thread and batch execution: one call, failure isolation, encoding, the runner's refusals."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pipeserve_nb import InferenceFailed, InvalidInput
from pipeserve_nb._models.runner import Runner
from pipeserve_nb._server.core.inference import InferenceThread, WorkerCrashed, run_batch


class Recorder(Runner):
    """A runner that upper-cases texts, fails on 'bad', and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.threads: set[str] = set()

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.calls.append((list(inputs), dict(parameters)))
        self.threads.add(threading.current_thread().name)
        if any(x == "bad" for x in inputs):
            raise ValueError("cannot handle 'bad'")
        suffix = parameters.get("suffix", "")
        return [x.upper() + suffix for x in inputs]


def test_one_model_call_for_the_batch_with_outputs_split_back_per_request() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [["a", "b"], ["c"], ["d"]], {"suffix": "!"})
    assert [o.outputs for o in outcomes] == [["A!", "B!"], ["C!"], ["D!"]]
    assert fn.calls == [(["a", "b", "c", "d"], {"suffix": "!"})]


def test_a_failing_batch_is_retried_per_request_so_only_the_bad_one_fails() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [["a"], ["bad"], ["c", "d"]], {})
    assert outcomes[0].outputs == ["A"] and outcomes[2].outputs == ["C", "D"]
    error = outcomes[1].error
    assert outcomes[1].outputs is None and isinstance(error, InferenceFailed)
    assert str(error) == "the model raised ValueError for this request's inputs"
    assert isinstance(error.__cause__, ValueError)  # what the model raised, for debug mode
    assert fn.calls[0][0] == ["a", "bad", "c", "d"]  # the batch, then one call per request
    assert [c[0] for c in fn.calls[1:]] == [["a"], ["bad"], ["c", "d"]]


def test_a_lone_failing_request_is_not_run_twice() -> None:
    fn = Recorder()
    outcomes = run_batch(fn, [["bad"]], {})
    assert isinstance(outcomes[0].error, InferenceFailed) and fn.calls == [(["bad"], {})]


class Broken(Runner):
    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        raise RuntimeError("out of memory")


def test_a_model_that_always_fails_fails_every_request() -> None:
    outcomes = run_batch(Broken(), [["a"], ["b"]], {})
    assert all(isinstance(o.error, InferenceFailed) for o in outcomes)


class Miscounted(Runner):
    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        return list(inputs)[:-1]


def test_a_model_that_returns_the_wrong_number_of_outputs_fails_its_requests() -> None:
    outcomes = run_batch(Miscounted(), [["a", "b"]], {})
    assert isinstance(outcomes[0].error, InferenceFailed) and isinstance(outcomes[0].error.__cause__, RuntimeError)
    assert "returned 1 outputs for 2 inputs" in str(outcomes[0].error.__cause__)


class Unencodable(Runner):
    """Its output for 'set' is a Python set, which has no JSON form."""

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        return [{1, 2} if x == "set" else x for x in inputs]


def test_an_output_that_cannot_be_encoded_fails_its_own_request_only() -> None:
    outcomes = run_batch(Unencodable(), [["a"], ["set"], ["b"]], {})
    assert outcomes[0].outputs == ["a"] and outcomes[2].outputs == ["b"]
    error = outcomes[1].error
    assert isinstance(error, InferenceFailed) and "could not be encoded (TypeError)" in str(error)


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
    assert worker.ended.done()
    with pytest.raises(RuntimeError, match="stopped"):
        worker.submit(lambda: None)


class Picky(Runner):
    """Refuses k < 1 itself (the caller's mistake); fails on 'bad' (its own); records its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.calls += 1
        if parameters.get("k", 1) < 1:
            raise InvalidInput("k must be at least 1")
        if "bad" in inputs:
            raise ValueError("no")
        return list(inputs)


@pytest.mark.parametrize(
    ("inputs", "parameters", "expected"),
    [(["a"], {"k": 0}, InvalidInput), (["bad"], {"k": 2}, InferenceFailed), (["bad"], {}, InferenceFailed)],
)
def test_what_the_runner_refuses_is_the_callers_mistake_and_the_model_is_not_called_again(
    inputs: list[str], parameters: dict[str, Any], expected: type[Exception]
) -> None:
    picky = Picky()
    [outcome] = run_batch(picky, [inputs], parameters)
    assert type(outcome.error) is expected and picky.calls == 1  # no second call to find out why
    if expected is InvalidInput:
        assert str(outcome.error) == "k must be at least 1"
    else:
        assert isinstance(outcome.error.__cause__, ValueError)


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

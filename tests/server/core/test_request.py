"""One request's record: prepared once, answered exactly once (by its last slice, its deadline, or an
error), and what it counts as when it never reached the model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipeserve_nb import InvalidInput, RequestTimeout, ServerStopping, TooLarge
from pipeserve_nb._server.core.request import Batch, Request, Slice, stopping, worker_died


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _request(loop: asyncio.AbstractEventLoop, texts: list[str], tokens: int = 4) -> Request:
    request = Request(list(texts), {}, loop.create_future(), 10.0, 70.0)
    request.prepared([t.upper() for t in texts], tokens, "{}")
    return request


def test_prepared_inputs_replace_the_texts_and_its_slices_answer_it_once_in_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    request = _request(loop, ["a", "b", "c"])
    assert request.inputs == ["A", "B", "C"] and request.size == 3 and request.tokens == 4
    request.started_s = 12.5
    request.ran(["a!", "b!"], batch_size=2, inference_s=0.25)
    assert not request.future.done()  # one input still to run
    request.ran(["c!"], batch_size=1, inference_s=0.5)
    result = request.future.result()
    assert result.outputs == ["a!", "b!", "c!"] and result.batch_size == 2
    assert result.queue_wait_s == 2.5 and result.inference_s == 0.75
    request.expire()  # answered already: nothing changes
    request.fail(ServerStopping("late"))
    assert request.future.result() is result and request.drop_reason() is None


def test_expiry_says_whether_it_ever_reached_the_model(loop: asyncio.AbstractEventLoop) -> None:
    waiting, started = _request(loop, ["a"]), _request(loop, ["b"])
    started.started_s = 11.0
    waiting.expire()
    started.expire()
    assert str(waiting.future.exception()) == "no answer within timeout_s=60; it never reached the model"
    assert str(started.future.exception()) == "no answer within timeout_s=60"
    assert isinstance(waiting.future.exception(), RequestTimeout)
    assert waiting.drop_reason() == "expired" and started.drop_reason() is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda r: r.future.cancel(), "client_gone"),
        (lambda r: r.expire(), "expired"),
        (lambda r: r.fail(stopping()), "stopping"),
        (lambda r: r.fail(worker_died(SystemExit("x"))), "worker_died"),
        (lambda r: r.fail(TooLarge("over the limit")), None),  # a refusal of what it is, not a drop
        (lambda r: r.fail(InvalidInput("refused by the model")), None),
    ],
)
def test_a_request_answered_before_the_model_counts_as_dropped_for_its_reason(
    loop: asyncio.AbstractEventLoop, answer: object, reason: str | None
) -> None:
    request = _request(loop, ["a"])
    assert request.drop_reason() is None  # not answered yet
    answer(request)  # type: ignore[operator]
    if not request.future.cancelled():
        request.future.exception()
    assert request.drop_reason() == reason


def test_a_batch_counts_its_inputs_and_the_tokens_it_computes(loop: asyncio.AbstractEventLoop) -> None:
    short, long = _request(loop, ["a", "b"], tokens=5), _request(loop, ["c"], tokens=20)
    batch = Batch([Slice(short, 0, 2), Slice(long, 0, 1)], {})
    assert batch.size == 3 and batch.padded_tokens == 3 * 20 and batch.real_tokens == 2 * 5 + 20
    assert Slice(short, 1, 2).inputs == ["B"]
    died = worker_died(SystemExit("gone"))
    assert isinstance(died.__cause__, SystemExit) and "not restarted" in str(died)

"""The step loop with the real chat model on a real inference thread: who joins when, how a generation ends.

Every check is a mechanism (which generation was in which step, which token came first, how each one
ended), never a speed: ``Finished`` carries the server's own times of the first token and the end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from pipeserve_nb import InferenceFailed, InvalidSetting, RequestTimeout, ServerStopping
from pipeserve_nb._models.generation.sampling import Sampling
from pipeserve_nb._server.core.generation import StepLoop
from pipeserve_nb._server.core.inference import InferenceThread
from pipeserve_nb._server.core.stream import Finished, Generation
from pipeserve_nb._server.observe.stats import clock

T = TypeVar("T")


@pytest.fixture
def worker() -> Iterator[InferenceThread]:
    thread = InferenceThread(name="pipeserve-test-generation")
    yield thread
    thread.close(timeout_s=30)


def _prompt(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def _run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())  # type: ignore[arg-type]


def _first_token_at(finished: Finished, generation: Generation) -> float:
    assert finished.first_token_s is not None
    return generation.arrived_s + finished.first_token_s


def _ended_at(finished: Finished, generation: Generation) -> float:
    return generation.arrived_s + finished.duration_s


async def _first_piece(generation: Generation) -> Any:
    """Read until the first piece; return the iterator, to read the rest later."""
    pieces = generation.pieces()
    await pieces.__anext__()
    return pieces


async def _drain(pieces: Any) -> None:
    async for _ in pieces:
        pass


def _newcomer_after_first_piece(
    loop: StepLoop, tokenizer: Any, long_tokens: int, short_tokens: int
) -> tuple[Generation, Generation, Finished, Finished]:
    """A long generation, and a short one submitted once the long one wrote its first piece; both run to the end:
    ``(long, short, how long ended, how short ended)``."""

    async def body() -> tuple[Generation, Generation, Finished, Finished]:
        story = _prompt(tokenizer, "Write a long story about a dragon.")
        first = Generation(story, Sampling(max_new_tokens=long_tokens))
        loop.submit(first)
        pieces = await _first_piece(first)
        second = Generation(_prompt(tokenizer, "What is 2+2?"), Sampling(max_new_tokens=short_tokens))
        loop.submit(second)
        done_second = await second.result()
        await _drain(pieces)
        assert first.finished is not None
        return first, second, first.finished, done_second

    return _run(body)


def test_a_newcomer_joins_the_running_batch_at_the_next_step(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker, join="continuous")
    first, second, done_first, done_second = _newcomer_after_first_piece(loop, tokenizer, 40, 6)
    assert done_first.reason == "length" and done_first.completion_tokens == 40
    assert _first_token_at(done_second, second) < _ended_at(done_first, first), "it did not wait for the batch to end"
    assert 2 in loop.rows_per_step, "the two ran in one step"
    assert loop.rows_per_step[-1] == 1, "the short one left at once; the long one went on alone"
    assert loop.stopped_by["length"] + loop.stopped_by["stop"] == 2 and sum(loop.stopped_by.values()) == 2


def test_static_batching_lets_a_newcomer_in_only_when_the_batch_has_ended(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker, join="static")
    first, second, done_first, done_second = _newcomer_after_first_piece(loop, tokenizer, 16, 4)
    assert _first_token_at(done_second, second) >= _ended_at(done_first, first)
    assert set(loop.rows_per_step) == {1}


def test_one_at_a_time_runs_one_row_whatever_waits(chat_model: tuple[Any, Any], worker: InferenceThread) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker, join="one_at_a_time", max_rows=16)

    async def body() -> list[Finished]:
        generations = [Generation(_prompt(tokenizer, q), Sampling(max_new_tokens=5)) for q in ("Hi", "Hello", "Hey")]
        for generation in generations:
            loop.submit(generation)
        return [await g.result() for g in generations]

    done = _run(body)
    assert set(loop.rows_per_step) == {1} and [d.completion_tokens <= 5 for d in done] == [True] * 3


def test_a_cancelled_generation_leaves_within_one_step_and_its_slot_goes_to_the_next(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker, join="continuous", max_rows=1)

    async def body() -> tuple[int, Finished, Finished]:
        walker = Generation(_prompt(tokenizer, "Write a long story about a dragon."), Sampling(max_new_tokens=200))
        waiting = Generation(_prompt(tokenizer, "What is 2+2?"), Sampling(max_new_tokens=4))
        loop.submit(walker)
        loop.submit(waiting)
        pieces = await _first_piece(walker)
        assert loop.waiting == 1, "the slot is taken: the second one waits"
        written = walker.tokens_written
        walker.cancel("client_gone")  # what the edge does when the client disconnects
        await _drain(pieces)
        assert walker.finished is not None
        return written, walker.finished, await waiting.result()

    written, gone, served = _run(body)
    assert gone.reason == "client_gone"
    assert gone.completion_tokens <= written + 1, "at most the step already running when it was cancelled"
    assert served.completion_tokens >= 1 and served.reason in ("stop", "length")
    assert loop.stopped_by["client_gone"] == 1 and loop.running == 0 and loop.waiting == 0


def test_a_deadline_ends_a_generation_before_its_first_token_with_504_and_after_it_with_a_reason(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker)

    async def body() -> tuple[BaseException | None, Finished]:
        late = Generation(_prompt(tokenizer, "Hi"), Sampling(max_new_tokens=8), deadline_s=clock())
        loop.submit(late)
        try:
            await late.result()
            refused = None
        except RequestTimeout as error:
            refused = error
        running = Generation(_prompt(tokenizer, "Write a long story."), Sampling(max_new_tokens=100))
        loop.submit(running)
        pieces = await _first_piece(running)
        running.deadline_s = clock()  # its deadline passes while it runs
        await _drain(pieces)
        assert running.finished is not None
        return refused, running.finished

    refused, expired = _run(body)
    assert isinstance(refused, RequestTimeout)
    assert expired.reason == "expired" and 1 <= expired.completion_tokens < 100
    assert loop.stopped_by["expired"] == 2


def test_a_stop_string_ends_the_answer_before_it_and_the_model_answers_paris(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker)
    question = _prompt(tokenizer, "What is the capital of France?")

    async def body() -> tuple[Finished, Finished, list[str]]:
        whole = Generation(question, Sampling(max_new_tokens=24))
        cut = Generation(question, Sampling(max_new_tokens=24, stop=(" Paris",)))
        loop.submit(whole)
        loop.submit(cut)
        texts = [piece.text async for piece in cut.pieces()]
        assert cut.finished is not None
        return await whole.result(), cut.finished, texts

    whole, cut, texts = _run(body)
    assert "Paris" in whole.text
    assert cut.reason == "stop" and cut.text == whole.text[: whole.text.index(" Paris")]
    assert "".join(texts) == cut.text and "Paris" not in cut.text


def test_the_model_raising_fails_its_rows_and_the_loop_serves_the_next(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model

    class Breaks:
        """The real model, raising on the call the test chooses."""

        def __init__(self) -> None:
            self.generation_config = model.generation_config
            self.calls = 0
            self.fail_at: int | None = None

        def __call__(self, **inputs: Any) -> Any:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("the model broke")
            return model(**inputs)

    flaky = Breaks()
    flaky.fail_at = 3  # the join, one step, then the second step fails
    loop = StepLoop(flaky, tokenizer, worker)

    async def body() -> tuple[Any, Finished]:
        broken = Generation(_prompt(tokenizer, "Hi"), Sampling(max_new_tokens=8))
        loop.submit(broken)
        outcome: Any
        try:
            outcome = await broken.result()
        except InferenceFailed as error:
            outcome = error
        after = Generation(_prompt(tokenizer, "Hi"), Sampling(max_new_tokens=3))
        loop.submit(after)
        return outcome, await after.result()

    outcome, after = _run(body)
    assert isinstance(outcome, Finished) and outcome.reason == "failed" and outcome.completion_tokens == 2
    assert after.reason in ("stop", "length") and after.completion_tokens >= 1
    assert loop.stopped_by["failed"] == 1


def test_a_stopped_worker_answers_a_new_generation_with_server_stopping(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    loop = StepLoop(model, tokenizer, worker)
    worker.close(timeout_s=30)

    async def body() -> None:
        generation = Generation(_prompt(tokenizer, "Hi"), Sampling(max_new_tokens=3))
        loop.submit(generation)
        with pytest.raises(ServerStopping):
            await generation.result()

    _run(body)


def test_an_unknown_join_rule_is_refused_with_the_rules(chat_model: tuple[Any, Any], worker: InferenceThread) -> None:
    with pytest.raises(InvalidSetting, match="join must be one of continuous, static, one_at_a_time"):
        StepLoop(*chat_model, worker, join="sometimes")


def test_a_burst_is_prefilled_in_chunks_whose_first_tokens_go_out_before_the_next_chunk_runs(
    chat_model: tuple[Any, Any], worker: InferenceThread
) -> None:
    model, tokenizer = chat_model
    prompts = [_prompt(tokenizer, q) for q in ("Hi", "Hello", "Hey", "Good day")]
    chunk = 2 * max(map(len, prompts))  # two prompts per prefill call
    loop = StepLoop(model, tokenizer, worker, join="continuous", prefill_chunk_tokens=chunk)
    gate = threading.Event()

    async def body() -> list[Finished]:
        worker.submit(gate.wait)  # the worker is busy: all four wait, and join in one step
        generations = [Generation(p, Sampling(max_new_tokens=3)) for p in prompts]
        for generation in generations:
            loop.submit(generation)
        gate.set()
        return [await g.result() for g in generations]

    done = _run(body)
    assert loop.prefill_cost.seen == 2, "two prefill calls of two prompts each"
    assert loop.rows_per_step[0] == 4, "then all four decode together"
    firsts = [d.first_token_s for d in done]
    assert all(f is not None for f in firsts)
    assert max(firsts[:2]) < min(firsts[2:]), "the first chunk's tokens were out before the second chunk ran"  # type: ignore[operator]

"""The forecast of a newcomer's first token (pure arithmetic over fitted costs): where it waits, and for what."""

from __future__ import annotations

import pytest

from pipeserve_nb._server.core.cost import CallCost
from pipeserve_nb._server.core.first_token import FirstToken, Occupancy, first_token


def _costs(step_s: float = 0.02, per_token_s: float = 0.001) -> tuple[CallCost, CallCost]:
    """A prefill of ``per_token_s`` a padded token and a decode step of ``step_s``, however many rows."""
    prefill, decode = CallCost(skip_first=0), CallCost(skip_first=0)
    for tokens in (100, 200, 400):
        prefill.observe(tokens, per_token_s * tokens)
    for rows in (1, 2, 4):
        decode.observe(rows, step_s)
    return prefill, decode


def test_nothing_is_forecast_before_a_decode_step_was_measured() -> None:
    held = Occupancy("continuous", 4, (), (), 10)
    assert first_token(held, 10, CallCost(), CallCost()) is None


def test_with_a_free_slot_a_newcomer_joins_at_the_next_step_after_the_prompts_ahead() -> None:
    prefill, decode = _costs()
    held = Occupancy("continuous", 4, (30, 5), (20,), 10)  # two running, one waiting (20 tokens), room for two
    # the step running now, the prompt ahead; then its own prefill, with the one ahead (padded to 20)
    assert first_token(held, 10, prefill, decode) == _approx(0.02 + 0.001 * 20, 0.02 + 0.001 * 2 * 20)
    idle = Occupancy("continuous", 4, (), (), 10)  # nothing runs: its turn is now, whatever its prompt costs
    assert first_token(idle, 3000, prefill, decode) == _approx(0.0, 3.0)


def test_with_every_slot_taken_it_waits_for_the_running_answer_that_ends_first_after_those_ahead() -> None:
    prefill, decode = _costs()
    full = Occupancy("continuous", 2, (30, 5), (), 10)
    assert first_token(full, 10, prefill, decode) == _approx(5 * 0.02, 5 * 0.02 + 0.01)
    behind_one = Occupancy("continuous", 2, (30, 5), (8,), 10)
    assert first_token(behind_one, 10, prefill, decode) == _approx(30 * 0.02, 30 * 0.02 + 0.01)
    behind_three = Occupancy("continuous", 2, (30, 5), (8, 8, 8), 10)  # a slot of the next round of answers
    wait = 30 * 0.02 + 10 * 0.02
    assert first_token(behind_three, 10, prefill, decode) == _approx(wait, wait + 0.01)


def test_a_static_batch_keeps_a_newcomer_out_until_its_longest_answer_ends() -> None:
    prefill, decode = _costs()
    running = Occupancy("static", 4, (30, 5), (), 10)
    assert first_token(running, 10, prefill, decode) == _approx(30 * 0.02, 30 * 0.02 + 0.01)
    one_at_a_time = Occupancy("one_at_a_time", 1, (30,), (10, 10), 20)  # two answers ahead of it, then its own
    wait = 30 * 0.02 + 2 * 20 * 0.02 + 0.02  # the running answer, two more, and their two prefills
    assert first_token(one_at_a_time, 10, prefill, decode) == _approx(wait, wait + 0.01)


def _approx(wait_s: float, at_s: float) -> FirstToken:
    return FirstToken(pytest.approx(wait_s), pytest.approx(at_s))  # type: ignore[arg-type]

"""When a new generation would see its first token: the forecast that admission by time uses for generation.

A newcomer's first token comes after (1) a slot for it: at the next step when the batch has room and the join
rule lets it in, else when enough running generations have ended (or, for the static rules, when the whole
running batch has ended); (2) the prefill of the prompts that join before it or with it. The forecast prices
both with the costs the step loop measured (``CallCost``, fitted online): a decode step by the rows it ran, a
prefill by its padded prompt tokens (the prompts padded to the longest); and it takes a running generation to
end after its expected tokens: its own budget, or sooner where recent answers were shorter
(``typical_tokens``).

Admission holds the wait for a newcomer's turn (``FirstToken.wait_s``, before its own prefill) to the server's
bound, as the batch path holds a request's wait to start: a long prompt's own prefill is the work it asked
for, not a queue. It is a forecast, not a bound: an answer can end early (its end token, a stop string) or a
newcomer be delayed by prompts that arrive with it. Pure arithmetic; no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost import CallCost

__all__ = ["FirstToken", "Occupancy", "first_token"]


@dataclass(frozen=True, slots=True)
class Occupancy:
    """What the step loop holds when a request arrives.

    ``running_left``: the tokens each running generation is expected to write still; ``waiting_prompts``:
    the prompt tokens of each generation waiting to join, in order; ``typical_tokens``: how many tokens
    an answer writes (recent answers' median, or the budget before any)."""

    join: str
    max_rows: int
    running_left: tuple[int, ...]
    waiting_prompts: tuple[int, ...]
    typical_tokens: int


@dataclass(frozen=True, slots=True)
class FirstToken:
    """A newcomer's forecast: ``wait_s`` until its own prefill starts (what waiting for its turn costs it: the
    bound admission holds it to), ``at_s`` until its first token (the wait plus its own prefill)."""

    wait_s: float
    at_s: float


def first_token(held: Occupancy, prompt_tokens: int, prefill: CallCost, decode: CallCost) -> FirstToken | None:
    """The forecast for a newcomer with ``prompt_tokens``; None before the decode step's cost is known (a
    prefill not yet measured counts as free: the forecast errs towards admitting)."""
    rows = len(held.running_left)
    step_s = decode.predict(max(1, rows))
    if step_s is None:
        return None

    def prefill_s(prompts: tuple[int, ...]) -> float:
        """A prefill of ``prompts`` in one call: they are padded to the longest."""
        return prefill.predict(len(prompts) * max(prompts, default=0)) or 0.0 if prompts else 0.0

    own = (prompt_tokens,)
    ahead = len(held.waiting_prompts)  # the newcomer's place in the line
    answer_s = held.typical_tokens * step_s  # how long one answer runs, once started
    if held.join == "continuous":
        free = held.max_rows - rows
        if ahead < free:  # joins after the step running now, after the prompts ahead of it
            now_s = step_s if rows else 0.0
            return FirstToken(now_s + prefill_s(held.waiting_prompts), now_s + prefill_s((*held.waiting_prompts, *own)))
        later = ahead - free  # the slot it takes is the (later + 1)-th to free up
        ends = sorted(held.running_left)
        if later < len(ends):
            wait = ends[later] * step_s
        else:
            wait = (ends[-1] if ends else 0) * step_s + ((later - len(ends)) // held.max_rows + 1) * answer_s
        return FirstToken(wait, wait + prefill_s(own))
    # static and one at a time: a batch runs until its longest answer ends; the line joins in groups
    group = ahead // held.max_rows
    batch_end_s = max(held.running_left) * step_s if rows else 0.0
    mates = (*held.waiting_prompts[group * held.max_rows :], *own)
    wait = batch_end_s + group * answer_s + prefill_s(held.waiting_prompts[: group * held.max_rows])
    return FirstToken(wait, wait + prefill_s(mates))

"""How a generation picks its next token: greedy, or sampled with a temperature and top-p.

A ``Sampling`` is one request's settings, validated where it is made (``InvalidInput``: a 400 for
the caller); ``choose`` picks the next token of each row of a step from that row's logits, a
seeded row from its own random generator, so its answer does not depend on its batch-mates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..._exceptions import InvalidInput

if TYPE_CHECKING:
    import torch

__all__ = ["Sampling", "choose"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """One generation's settings.

    Parameters:
        max_new_tokens: the most tokens to generate (>= 1).
        temperature: 0 picks the likeliest token (greedy); above 0 samples, flatter as it grows (at most 2).
        top_p: sample only from the likeliest tokens whose probabilities add up to ``top_p`` (0 < top_p <= 1).
        seed: makes a sampled answer repeatable (None: a fresh one each time).
        stop: strings that end the answer; none of their text is returned (at most 4, none empty).
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidInput(f"max_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not _number(self.temperature) or not 0 <= self.temperature <= 2:
            raise InvalidInput(f"temperature must be a number from 0 to 2, got {self.temperature!r}")
        if not _number(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be a number above 0 and at most 1, got {self.top_p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidInput(f"seed must be an integer, got {self.seed!r}")
        if len(self.stop) > 4 or any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidInput("stop must be at most 4 non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self) -> torch.Generator | None:
        """The random generator a sampled row draws from (seeded when asked); None when greedy."""
        if self.greedy:
            return None
        import torch

        generator = torch.Generator()
        if self.seed is not None:
            generator.manual_seed(self.seed)
        else:
            generator.seed()
        return generator


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choose(
    logits: torch.Tensor, samplings: Sequence[Sampling], generators: Sequence[torch.Generator | None]
) -> list[int]:
    """The next token of each row: ``logits`` is ``[rows, vocabulary]``, one ``Sampling`` and generator per row."""
    picked = logits.argmax(dim=-1).tolist()
    for row, (sampling, generator) in enumerate(zip(samplings, generators, strict=True)):
        if not sampling.greedy:
            picked[row] = _sample(logits[row].float(), sampling, generator)
    return [int(token) for token in picked]


def _sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    import torch

    probabilities = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        ordered, order = probabilities.sort(descending=True)
        before = ordered.cumsum(0) - ordered  # the mass of the likelier tokens: keep a token while it is below top_p
        ordered[before >= sampling.top_p] = 0
        probabilities = torch.zeros_like(probabilities).scatter_(0, order, ordered)
    return int(torch.multinomial(probabilities, 1, generator=generator).item())

"""A deterministic, offline corpus of English-like sentences of varied length."""

from __future__ import annotations

import random

__all__ = ["sample_texts"]

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 77 words
    "the model serves requests from a queue while one worker thread runs each batch "
    "and the event loop stays free to answer health checks latency grows when batches "
    "wait for company but throughput rises as padding shrinks notebooks measure every "
    "claim live so a reader sees numbers from this run not from a page written elsewhere "
    "data scientists prototype services tutorial authors teach batching engineers tune "
    "timeouts circuit breakers shed load fast instead of letting everyone wait"
).split()


def sample_texts(n: int, *, min_words: int = 4, max_words: int = 31, seed: int = 0) -> list[str]:
    """``n`` sentences of ``min_words``..``max_words`` words, the same for the same ``seed``."""
    if n < 0 or not 1 <= min_words <= max_words:
        raise ValueError("need n >= 0 and 1 <= min_words <= max_words")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))]
        out.append(" ".join(words).capitalize() + ".")
    return out

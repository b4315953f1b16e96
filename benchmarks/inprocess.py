"""The model alone, no server: the references ``make bench`` takes its ratios against.

Every measurement runs in a fresh process (``in_child``). In the benchmark's own process it
would leave an OpenMP thread team behind; a second team (a server's inference thread) then
competes with its spinning workers, and on 2 cores both run at about half speed.

    python benchmarks/inprocess.py KIND INPUT.json [--quick]    # prints one line of JSON

Kinds: ``limit`` (the full table), ``single`` (median single-item latency on given texts),
``sorted`` (items/s of length-sorted batches of one size), ``replay`` (items/s of given
batches of token ids, run in order).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pipeserve_nb import LoadedModel, load_model
from pipeserve_nb._models.embedder import TokenIds  # replays the batches the server ran, as token ids

from lineup import DEFAULT_POLICY, FULL, QUICK, Sizes


def in_child(kind: str, payload: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Run the measurement ``kind`` on ``payload`` in a fresh process and return its answer."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f)
    try:
        cmd = [sys.executable, __file__, kind, f.name, *(["--quick"] if quick else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def single_ms(model: LoadedModel, texts: Sequence[str], sizes: Sizes) -> list[float]:
    """Milliseconds of each ``model([text])``, every text ``limit_repeats`` times."""
    model(list(texts[:8]))  # warm up
    return [_timed(partial(model, [t])) * 1000 for _ in range(sizes.limit_repeats) for t in texts]


def sorted_rps(model: LoadedModel, texts: Sequence[str], batch_size: int, sizes: Sizes) -> float:
    """Items/s of ``texts`` sorted by token count, in batches of ``batch_size`` (best of the repeats)."""
    assert model.prepare is not None
    _, counts = model.prepare(list(texts))
    ordered = [t for _, t in sorted(zip(counts, texts, strict=True), key=lambda pair: pair[0])]
    return batched_rps(model, [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)], sizes)


def batched_rps(model: LoadedModel, batches: Sequence[Sequence[Any]], sizes: Sizes) -> float:
    """Items/s of ``model`` running ``batches`` in order (best of the repeats)."""
    model(list(batches[0]))  # warm up
    best = min(_timed(lambda: [model(list(b)) for b in batches]) for _ in range(sizes.limit_repeats))
    return sum(len(b) for b in batches) / best


def limit_table(model: LoadedModel, texts: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    """Items/s of the bare model, texts in and embeddings out (tokenizing included): one at a
    time, batched sorted by length at each batch size, batched in arrival order, and in the
    windows of 32 a server at concurrency 32 can choose from."""
    import torch

    assert model.prepare is not None
    single = single_ms(model, texts, sizes)
    sorted_rates = {bs: sorted_rps(model, texts, bs, sizes) for bs in sizes.batch_sizes}
    best_bs = max(sorted_rates, key=lambda bs: sorted_rates[bs])

    def arrival(bs: int) -> float:
        return batched_rps(model, [texts[i : i + bs] for i in range(0, len(texts), bs)], sizes)

    # What a server can reach when it only ever sees 32 requests at once (closed loop, c=32):
    # windows of 32 in arrival order, each split as the default policy splits it.
    _, counts = model.prepare(list(texts))
    items = [_Text(t, n) for t, n in zip(texts, counts, strict=True)]
    windows = [[x.text for x in b] for start in range(0, len(items), 32) for b in _drain(items[start : start + 32])]
    return {
        "single_item_p50_ms": statistics.median(single),
        "one_at_a_time_rps": 1000 / statistics.mean(single),
        "sorted_rps_by_batch_size": sorted_rates,
        "best_batch_size": best_bs,
        "batched_sorted_rps": sorted_rates[best_bs],
        "batched_arrival_order_rps": arrival(best_bs),
        "arrival_order_32_rps": arrival(32),
        "window32_split_rps": batched_rps(model, windows, sizes),
        "corpus": len(texts),
        "torch_threads": torch.get_num_threads(),
    }


def _drain(pool: list[_Text]) -> list[list[_Text]]:
    """The batches the default policy runs for ``pool`` when nothing else arrives."""
    batches = []
    while pool:
        picked = [i for i, _ in DEFAULT_POLICY.pick(pool)]  # single texts: each runs whole
        batches.append([pool[i] for i in picked])
        chosen = set(picked)
        pool = [x for i, x in enumerate(pool) if i not in chosen]
    return batches


@dataclass(frozen=True)
class _Text:
    """A text with its token count, as batch formation sees a request."""

    text: str
    tokens: int
    size: int = 1


def main(argv: Sequence[str]) -> dict[str, Any]:
    kind, payload = argv[0], json.loads(Path(argv[1]).read_text())
    sizes = QUICK if "--quick" in argv else FULL
    model = load_model()
    if kind == "limit":
        return limit_table(model, payload["texts"], sizes)
    if kind == "single":
        return {"p50_ms": statistics.median(single_ms(model, payload["texts"], sizes))}
    if kind == "sorted":
        return {"rps": sorted_rps(model, payload["texts"], payload["batch_size"], sizes)}
    if kind == "replay":
        return {"rps": batched_rps(model, [[TokenIds(ids) for ids in b] for b in payload["batches"]], sizes)}
    raise SystemExit(f"unknown measurement {kind!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))

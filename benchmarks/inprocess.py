"""The model alone, no server: the references ``make bench`` takes its ratios against.

Every measurement runs in a fresh process (``in_child``). In the benchmark's own process it
would leave an OpenMP thread team behind; a second team (a server's inference thread) then
competes with its spinning workers, and on 2 cores both run at about half speed.

    python -m benchmarks model KIND INPUT.json [--quick]    # prints one line of JSON

Kinds: ``limit`` (the full table), ``single`` (median single-item latency on given texts),
``sorted`` (items/s of length-sorted batches of one size), ``replay`` (items/s of given
batches of texts, run in order as the server ran them: each batch prepared first, then only
the model call timed, as the server's inference thread runs it), ``precision`` (float32,
bfloat16 autocast and bfloat16 weights side by side: speed, accuracy, memory). Each loads the
model with the payload's ``dtype`` (``"auto"``, what a server gets, unless it says otherwise).
The model alone is ``LoadedModel``'s call (prepare, run, encode: texts in, embeddings out) or
its runner's ``run`` on prepared inputs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeserve_nb import InvalidSetting, LoadedModel, Prepared, Runner, load_model

from .lineup import DEFAULT_POLICY, FULL, QUICK, Sizes

ROOT = Path(__file__).resolve().parent.parent

_SMOKE_ANSWERS: dict[str, dict[str, Any]] = {}


def in_child(kind: str, payload: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Run the measurement ``kind`` on ``payload`` in a fresh process and return its answer.

    A quick smoke run checks that the benchmark runs, not what it measures, and a child costs a
    Python start and a model load: there, only the first measurement runs in a child (the path every
    full run takes), the others in this process, and one asked again (the "after" of a bracketed
    reference) gives its first answer.
    """
    key = json.dumps([kind, payload], sort_keys=True)
    if quick and key in _SMOKE_ANSWERS:
        return _SMOKE_ANSWERS[key]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f)
    argv = [kind, f.name, *(["--quick"] if quick else [])]
    try:
        if quick and _SMOKE_ANSWERS:
            answer = measure(argv)
        else:
            cmd = [sys.executable, "-m", "benchmarks", "model", *argv]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            answer = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)
    if quick:
        _SMOKE_ANSWERS[key] = answer
    return answer


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def single_ms(model: LoadedModel, texts: Sequence[str], sizes: Sizes) -> list[float]:
    """Milliseconds of each ``model([text])``, every text ``limit_repeats`` times."""
    model(list(texts[:8]))  # warm up
    return [_timed(partial(model, [t])) * 1000 for _ in range(sizes.limit_repeats) for t in texts]


def tokens_of(model: LoadedModel, texts: Sequence[str]) -> list[int]:
    """Each text's tokens, as the server counts them (the runner's ``prepare``)."""
    return model.runner.prepare(list(texts), {}).tokens


def sorted_rps(model: LoadedModel, texts: Sequence[str], batch_size: int, sizes: Sizes) -> float:
    """Items/s of ``texts`` sorted by token count, in batches of ``batch_size`` (best of the repeats)."""
    counts = tokens_of(model, texts)
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

    single = single_ms(model, texts, sizes)
    sorted_rates = {bs: sorted_rps(model, texts, bs, sizes) for bs in sizes.batch_sizes}
    best_bs = max(sorted_rates, key=lambda bs: sorted_rates[bs])

    def arrival(bs: int) -> float:
        return batched_rps(model, [texts[i : i + bs] for i in range(0, len(texts), bs)], sizes)

    # What a server can reach when it only ever sees 32 requests at once (closed loop, c=32):
    # windows of 32 in arrival order, each split as the default policy splits it.
    counts = tokens_of(model, texts)
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
        "dtype": model.dtype,
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


def replay_rps(model: LoadedModel, batches: Sequence[Sequence[str]], sizes: Sizes) -> float:
    """Items/s of the model calls alone on ``batches`` (each prepared first, untimed), run in order."""
    runner = model.runner
    prepared = [runner.prepare(list(b), {}).inputs for b in batches]
    runner.run(prepared[0], {})  # warm up
    best = min(_timed(lambda: [runner.run(p, {}) for p in prepared]) for _ in range(sizes.limit_repeats))
    return sum(len(b) for b in batches) / best


class BatchRecorder(Runner):
    """A runner that records, while ``on``, each batch it runs (as the texts the server prepared), when
    its call started (``time.time()``, comparable across processes) and the seconds its calls took (on
    the server's inference thread): what ``replay`` runs again with the machine to itself."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.max_tokens, self.parameter_names, self.task = inner.max_tokens, inner.parameter_names, inner.task
        self.on = False
        self.batches: list[list[str]] = []
        self.started: list[float] = []
        self.seconds = 0.0

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        prepared = self.inner.prepare(texts, parameters)
        return Prepared(list(zip(texts, prepared.inputs, strict=True)), prepared.tokens)

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        at, started = time.time(), time.perf_counter()
        outputs = self.inner.run([inner for _, inner in inputs], parameters)
        if self.on:
            self.seconds += time.perf_counter() - started
            self.batches.append([text for text, _ in inputs])
            self.started.append(at)
        return outputs

    def encode(self, output: Any) -> Any:
        return self.inner.encode(output)


class Autocast(Runner):
    """A runner whose model calls run under bfloat16 autocast (float32 weights, converted on each call)."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.max_tokens, self.parameter_names = inner.max_tokens, inner.parameter_names

    def prepare(self, texts: list[str], parameters: Any) -> Any:
        return self.inner.prepare(texts, parameters)

    def run(self, inputs: list[Any], parameters: Any) -> list[Any]:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner.run(inputs, parameters)

    def encode(self, output: Any) -> Any:
        return self.inner.encode(output)


def precision_table(texts: Sequence[str], batch_size: int, sizes: Sizes) -> dict[str, Any]:
    """The bundled model three ways, on ``texts``: float32; bfloat16 autocast (float32 weights,
    converted on each call); bfloat16 weights (``dtype="bfloat16"``, what ``"auto"`` picks on a CPU
    that runs it natively). For each: items/s of sorted batches of ``batch_size``, median
    single-item latency, the weights' megabytes, and the lowest cosine similarity of an
    embedding to its float32 one over ``texts``."""
    import torch

    exact = load_model(dtype="float32")
    reference = torch.tensor(exact(list(texts)))
    ways = {  # each with the module holding its weights (the bundled runner's pipeline)
        "float32": (exact, exact.runner.pipe.model),  # type: ignore[attr-defined]
        "bfloat16 autocast": (replace(exact, runner=Autocast(exact.runner)), exact.runner.pipe.model),  # type: ignore[attr-defined]
    }
    refused: dict[str, Any] = {}
    try:
        cast = load_model(dtype="bfloat16")
        ways["bfloat16 weights"] = (cast, cast.runner.pipe.model)  # type: ignore[attr-defined]
    except InvalidSetting as why:  # a CPU without native bfloat16 refuses the cast: the row says so
        refused["bfloat16 weights"] = {"refused": str(why)}
    out: dict[str, Any] = {}
    for label, (model, weights) in ways.items():
        vectors = torch.tensor(model(list(texts)))
        out[label] = {
            "sorted_rps": sorted_rps(model, texts, batch_size, sizes),
            "single_p50_ms": statistics.median(single_ms(model, texts[:64], sizes)),
            "weights_mb": sum(p.numel() * p.element_size() for p in weights.parameters()) / 2**20,
            "min_cosine": float(torch.nn.functional.cosine_similarity(vectors, reference, dim=1).min()),
        }
    return out | refused


def measure(argv: Sequence[str]) -> dict[str, Any]:
    """One measurement in this process: ``KIND INPUT.json [--quick]`` (see the module docstring)."""
    kind, payload = argv[0], json.loads(Path(argv[1]).read_text())
    sizes = QUICK if "--quick" in argv else FULL
    if kind == "precision":
        return precision_table(payload["texts"], payload["batch_size"], sizes)
    model = load_model(dtype=payload.get("dtype", "auto"))
    if kind == "limit":
        return limit_table(model, payload["texts"], sizes)
    if kind == "single":
        return {"p50_ms": statistics.median(single_ms(model, payload["texts"], sizes))}
    if kind == "sorted":
        return {"rps": sorted_rps(model, payload["texts"], payload["batch_size"], sizes)}
    if kind == "replay":
        return {"rps": replay_rps(model, payload["batches"], sizes)}
    raise SystemExit(f"unknown measurement {kind!r}")

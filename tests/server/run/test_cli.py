"""The standalone command and the uvicorn entry point, as processes of their own, with a
tiny fill-mask model built locally (the seed page's ``curl -d "test [MASK]"``)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pipeserve_nb import BatchPolicy

from ...models.test_fill_mask import assert_candidates

pytestmark = pytest.mark.gate  # the full gate: subprocesses and long runs


def _start(
    cmd: list[str], env: dict[str, str], timeout_s: float = 120
) -> tuple[subprocess.Popen[str], str, queue.Queue[str | None]]:
    """Start a server process; return it, the URL it announces, and its further output lines."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)
        lines.put(None)  # the process closed its output

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match and ("pipeserve_nb: serving" in line or "Uvicorn running" in line):
            return proc, match.group(1), lines
    proc.kill()
    proc.wait()
    raise AssertionError("the server never announced its URL:\n" + "".join(seen))


def _stop_gracefully(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> str:
    """SIGTERM the server; it must drain and exit (uvicorn re-raises the signal after a clean shutdown)."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    rest = []
    while (line := lines.get(timeout=30)) is not None:  # everything it printed, up to its end
        rest.append(line)
    return "".join(rest)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}


def test_the_serve_command_serves_until_sigterm(tiny_fill_mask: Path) -> None:
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--model", str(tiny_fill_mask), "--task", "fill-mask"]
    flags = ["--port", "0", "--max-batch-size", "4", "--max-wait-s", "0.002", "--no-sort-by-length"]
    env = _env(PIPESERVE_CALL_OVERHEAD_TOKENS="50", PIPESERVE_MAX_BATCH_SIZE="9")
    env["PIPESERVE_PUBLIC_URL"] = "https://example.org/tunnel/{port}"
    proc, url, lines = _start([*cmd, *flags], env)
    try:
        page = f"https://example.org/tunnel/{httpx.URL(url).port}/"  # the template, its port filled in
        how = f"public_url {env['PIPESERVE_PUBLIC_URL']!r}, the port filled in"
        assert lines.get(timeout=10) == f"pipeserve_nb: try it in a browser at {page} ({how})\n"
        assert httpx.get(url, trust_env=False).headers["content-type"].startswith("text/html")  # the page
        assert_candidates(httpx.post(url, content=b"test [MASK]", trust_env=False).json())
        health = httpx.get(f"{url}/health", trust_env=False).json()
        assert health["status"] == "ok" and health["device"] == "cpu" and health["worker_alive"] is True
        metrics = httpx.get(f"{url}/metrics", trust_env=False).text
        name = tiny_fill_mask.name  # a local folder is served under its last part
        assert f'pipeserve_requests_total{{model="{name}",server="pipeserve",status="200"}} 1.0' in metrics
        assert _endless_head(url) == 431  # the command's uvicorn runs the bounded parser
        policy = httpx.get(f"{url}/stats", trust_env=False).json()["policy"]
        assert "max_batch_size=4, max_wait_s=0.002" in policy  # a flag wins over its environment variable
        assert "sort_by_length=False" in policy and "call_overhead_tokens=50.0" in policy
    finally:
        output = _stop_gracefully(proc, lines)
    assert "Application shutdown complete" in output


def _endless_head(url: str) -> int:
    """Send a request head that does not end (40 KB of one header); return the status answered."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port or 80), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"v" * 40_000)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split()[1])


def test_the_app_runs_under_the_uvicorn_command(tiny_fill_mask: Path) -> None:
    cmd = [sys.executable, "-m", "uvicorn", "pipeserve_nb.asgi:app", "--lifespan", "on", "--port", "0"]
    cmd += ["--http", "pipeserve_nb.asgi:HttpProtocol"]
    env = _env(PIPESERVE_MODEL=str(tiny_fill_mask), PIPESERVE_TASK="fill-mask", PIPESERVE_CALL_OVERHEAD_TOKENS="7")
    proc, url, lines = _start(cmd, env)
    try:
        assert_candidates(httpx.post(url, content=b"test [MASK]", trust_env=False).json())
        assert _endless_head(url) == 431
        long_target = httpx.get(f"{url}/health?q={'a' * 9000}", trust_env=False)
        assert long_target.status_code == 414 and long_target.json()["error"]["type"] == "UriTooLong"
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


def test_the_serve_command_rejects_bad_flags_with_the_rule() -> None:
    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--max-batch-size", "0"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "max_batch_size must be an int >= 1 (1 means no batching), got 0" in done.stderr


def test_the_uvicorn_entry_point_refuses_address_variables_it_cannot_apply() -> None:
    probe = "import pipeserve_nb.asgi"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=_env(PIPESERVE_PORT="9000"), capture_output=True, text=True
    )
    assert done.returncode != 0 and "PIPESERVE_PORT cannot apply under uvicorn" in done.stderr


def test_serve_two_models_from_the_command_line_and_use_them_with_the_openai_client() -> None:
    import openai

    cmd = [sys.executable, "-m", "pipeserve_nb", "serve", "--model", "minilm", "--model", "smollm2", "--port", "0"]
    proc, url, lines = _start(cmd, _env(PIPESERVE_MAX_NEW_TOKENS="16"))
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["minilm", "smollm2"]
        (embedding,) = client.embeddings.create(model="minilm", input="hello world").data
        assert len(embedding.embedding) == 384
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        stream = client.chat.completions.create(
            model="smollm2",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            temperature=0,
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
        assert len([p for p in pieces if p]) >= 2 and "Paris" in "".join(pieces)  # streamed, in pieces
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="smollm2", input="x")
        assert refused.value.param == "model"
    finally:
        output = _stop_gracefully(proc, lines)
    assert "Traceback" not in output

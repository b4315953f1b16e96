"""Helpers the tests share: who is running, waiting on a condition, a model held at a gate."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeserve_nb import LoadedModel

ROOT = Path(__file__).resolve().parent.parent


def pipeserve_threads() -> list[threading.Thread]:
    """Threads this package starts (server loops and inference workers)."""
    return [t for t in threading.enumerate() if t.name.startswith("pipeserve-") and t.is_alive()]


def port_is_free(port: int) -> bool:
    """Whether a new server could bind 127.0.0.1:``port`` (nothing listens there)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition: Any, timeout_s: float = 10) -> None:
    """Poll ``condition()`` until it is true; fail the test if that takes over ``timeout_s``.

    For conditions no event announces (a server's ``/stats``); the timeout is only a bound.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


RAY_GROUP = "ray"
"""The xdist group of the tests marked ``ray`` (``conftest``); xdist appends ``@ray`` to their node ids."""

SCRIPT_TIMEOUT_S = 900
"""A bound against a hung script, not a speed target: a quick run takes about two minutes on an idle
2-core machine and more than twice that beside another benchmark."""


def run_quick(command: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m benchmarks <command> --quick --out <out> [args]`` in a fresh process; fail on a non-zero exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "benchmarks", command, "--quick", "--out", str(out), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S - 30, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


class GatedModel:
    """A batch callable that runs the real embedder, but only once the gate is open.

    It records every input it is given, so a test can tell which requests reached the
    model, sets ``entered`` when a batch is waiting at the gate, and records in ``on_event_loop``
    whether each call ran on a thread that runs an event loop (where nothing else can run until
    the call returns).
    """

    def __init__(self, embedder: LoadedModel, *, poison: str | None = None) -> None:
        self.embedder = embedder
        self.poison = poison
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []
        self.calls: list[list[str]] = []
        self.on_event_loop: list[bool] = []
        self.__name__ = "gated-minilm"

    def __call__(self, inputs: list[str], **parameters: Any) -> list[Any]:
        try:
            asyncio.get_running_loop()
            self.on_event_loop.append(True)
        except RuntimeError:
            self.on_event_loop.append(False)
        self.calls.append(list(inputs))
        self.seen.extend(inputs)
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        if self.poison is not None and any(self.poison in text for text in inputs):
            raise ValueError(f"poisoned input: {self.poison}")
        return self.embedder(inputs, **parameters)

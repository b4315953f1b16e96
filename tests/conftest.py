"""Shared fixtures: the real bundled model, a tiny fill-mask model built locally, a gate."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeserve_nb
from pipeserve_nb._models import LoadedModel, ModelSpec, load


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


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_quick(script: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script> --quick --out <out>`` in a fresh process; fail on a non-zero exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def wait_for(condition: Any, timeout_s: float = 10) -> None:
    """Poll ``condition()`` until it is true; fail the test if that takes over ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def no_leaked_servers() -> Iterator[None]:
    """Every test must leave no server and no pipeserve thread behind."""
    yield
    pipeserve_nb.stop_all()
    deadline = time.monotonic() + 5
    while pipeserve_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pipeserve_threads() == [], "a test left pipeserve threads running"


@pytest.fixture(scope="session")
def embedder() -> LoadedModel:
    """The real bundled all-MiniLM-L6-v2 embedder, loaded once for the session."""
    return load(ModelSpec())


class GatedModel:
    """A batch callable that runs the real embedder, but only once the gate is open.

    It records every input it is given, so a test can tell which requests reached the
    model, and sets ``entered`` when a batch is waiting at the gate.
    """

    def __init__(self, embedder: LoadedModel, *, poison: str | None = None) -> None:
        self.embedder = embedder
        self.poison = poison
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []
        self.calls: list[list[str]] = []
        self.__name__ = "gated-minilm"

    def __call__(self, inputs: list[str], **parameters: Any) -> list[Any]:
        self.calls.append(list(inputs))
        self.seen.extend(inputs)
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        if self.poison is not None and any(self.poison in text for text in inputs):
            raise ValueError(f"poisoned input: {self.poison}")
        return self.embedder(inputs, **parameters)


@pytest.fixture
def gated(embedder: LoadedModel) -> GatedModel:
    return GatedModel(embedder)


@pytest.fixture(scope="session")
def tiny_fill_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT masked-LM and WordPiece tokenizer, saved locally and loaded by path."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert-mlm")
    words = ["test", "hello", "world", "the", "a", "model", "serve", "queue", "batch", ".", ",", "!", "?"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

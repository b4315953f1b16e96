"""Shared fixtures: the real bundled model (as loaded by default, and in float32), a tiny fill-mask
model built locally, a gate."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeserve_nb
from pipeserve_nb import LoadedModel

from .helpers import RAY_GROUP, GatedModel, pipeserve_threads


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a Ray cluster (marked ``ray``) share one xdist group: ``make test`` runs
    them one after another on one worker, so that the machine never holds two clusters at once
    (``ray stop`` and Ray's session files are machine-wide, and each cluster wants every CPU)."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group(RAY_GROUP))
            item.add_marker(pytest.mark.gate)  # a cluster is never part of the fast tier


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail loudly where xdist ignored the group (it does so silently: pytest-dev/pytest-xdist#1386)."""
    grouping = item.config.getoption("loadgroup", False)  # set in a worker of --dist=loadgroup
    if grouping and item.get_closest_marker("ray") is not None and not item.nodeid.endswith(f"@{RAY_GROUP}"):
        pytest.fail(f"pytest-xdist left this Ray test out of group {RAY_GROUP!r}: two clusters would share the machine")


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
    return pipeserve_nb.load_model()


@pytest.fixture(scope="session")
def embedder_float32() -> LoadedModel:
    """The same model in float32, where the same inputs give the same bits whatever their
    batch-mates: for checks of exactness (``test_precision`` checks what bfloat16 changes)."""
    return pipeserve_nb.load_model(dtype="float32")


@pytest.fixture(scope="session")
def chat_model() -> tuple[Any, Any]:
    """The bundled chat model (SmolLM2-135M-Instruct from its GGUF file) and its tokenizer, float32, loaded once."""
    from pipeserve_nb._models.generation.bundled import load_smollm2

    return load_smollm2()


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The bundled chat model as ``serve()`` takes it, float32, loaded once per test process."""
    return pipeserve_nb.load_model("smollm2", dtype="float32")


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


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sequence classifier (three labels) and WordPiece tokenizer, saved locally and loaded by path."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert-classifier")
    words = ["good", "bad", "fine", "awful", "great", "movie", "the", "was", "very", "not", "a", "."]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3, initializer_range=0.5,  # spread logits: labels that mean something
        id2label={0: "negative", 1: "neutral", 2: "positive"}, label2id={"negative": 0, "neutral": 1, "positive": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

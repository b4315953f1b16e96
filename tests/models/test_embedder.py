"""The bundled embedder: token ids from the preparation thread run as they are, and give exactly
what the transformers tokenizer and the model card's pooling give.

Exactness is checked in float32 (the ``embedder_float32`` fixture), where the same inputs give the same bits;
what bfloat16, the default on this CPU, changes is ``test_precision``'s to check."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import torch

from pipeserve_nb import LoadedModel, sample_texts, serve
from pipeserve_nb._models.embedder import SentenceEmbedder, TokenIds

LONG = "word " * 300  # 302 tokens: over the model's 256


def reference(embedder: LoadedModel, texts: list[str]) -> torch.Tensor:
    """Embeddings the way the model card computes them: the transformers tokenizer (padding,
    truncation at 256), mean pooling over real tokens, L2 normalisation."""
    assert isinstance(embedder.runner, SentenceEmbedder)
    tokenizer, model = embedder.runner.pipe.tokenizer, embedder.runner.pipe.model
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        tokens = model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def test_prepare_gives_the_tokenizers_ids_and_counts_without_cutting(embedder: LoadedModel) -> None:
    texts = ["Hello world.", "héllo wörld, ünïcode ✓", LONG]
    prepared = embedder.runner.prepare(texts, {})
    ids, counts = prepared.inputs, prepared.tokens
    assert all(isinstance(t, TokenIds) for t in ids)
    assert isinstance(embedder.runner, SentenceEmbedder)
    tokenizer = embedder.runner.pipe.tokenizer
    assert [t.ids for t in ids] == tokenizer(texts)["input_ids"]
    assert counts == [len(t.ids) for t in ids] and counts[2] == 302


def test_ids_embed_exactly_as_the_model_card_says(embedder_float32: LoadedModel) -> None:
    exact = embedder_float32
    texts = [*sample_texts(12, seed=4), "héllo wörld, ünïcode ✓", LONG]  # varied lengths, one cut at 256
    expected = reference(exact, texts)
    ids = exact.runner.prepare(texts, {}).inputs
    from_texts = torch.tensor(exact(texts, truncation=True))  # prepare, run, encode: as the server does
    from_ids = torch.tensor(exact.runner.run(ids, {"truncation": True}))
    some = torch.tensor(exact.runner.run([ids[0], ids[1], ids[-1], ids[-1]], {}))
    assert torch.allclose(from_texts, expected, atol=1e-6)
    assert torch.allclose(from_ids, expected, atol=1e-6)
    assert torch.allclose(some, expected[[0, 1, -1, -1]], atol=1e-6)
    assert exact([]) == []


def test_texts_are_tokenized_once_per_request_and_never_on_the_event_loop(
    embedder_float32: LoadedModel,
) -> None:
    exact = embedder_float32
    runner = exact.runner
    assert isinstance(runner, SentenceEmbedder)
    encoder = runner._encoder
    threads: list[str] = []

    class Watched:
        def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return encoder.encode_batch(*args, **kwargs)

    runner._encoder = Watched()
    try:
        with serve(exact) as server:
            texts = ["short", "a somewhat longer text to embed"]
            answers = server.query(texts)
            cut = httpx.post(server.url, json={"inputs": LONG, "parameters": {"truncation": True}}, trust_env=False)
    finally:
        runner._encoder = encoder
    # two texts: on the preparation thread; one text at an idle server: the fast lane, at the start of its own call
    assert threads == ["pipeserve-prepare", "pipeserve-inference"]
    assert torch.allclose(torch.tensor(answers), reference(exact, texts), atol=1e-6)
    assert cut.status_code == 200
    assert torch.allclose(torch.tensor(cut.json()), reference(exact, [LONG])[0], atol=1e-6)

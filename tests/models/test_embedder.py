"""The bundled embedder: token ids from the event loop run as they are, and give exactly
what the transformers tokenizer and the model card's pooling give.

Exactness is checked in float32 (the ``embedder_float32`` fixture), where the same inputs give the same bits;
what bfloat16, the default on this CPU, changes is ``test_precision``'s to check."""

from __future__ import annotations

from typing import Any

import httpx
import torch

from pipeserve_nb import LoadedModel, sample_texts, serve
from pipeserve_nb._models.embedder import SentenceEmbedder, TokenIds

LONG = "word " * 300  # 302 tokens: over the model's 256


def reference(embedder: LoadedModel, texts: list[str]) -> torch.Tensor:
    """Embeddings the way the model card computes them: the transformers tokenizer (padding,
    truncation at 256), mean pooling over real tokens, L2 normalisation."""
    assert isinstance(embedder.run, SentenceEmbedder)
    tokenizer, model = embedder.run.pipe.tokenizer, embedder.run.pipe.model
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        tokens = model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def test_prepare_gives_the_tokenizers_ids_and_counts_without_cutting(embedder: LoadedModel) -> None:
    assert embedder.prepare is not None
    texts = ["Hello world.", "héllo wörld, ünïcode ✓", LONG]
    ids, counts = embedder.prepare(texts)
    assert all(isinstance(t, TokenIds) for t in ids)
    tokenizer = embedder.run.pipe.tokenizer
    assert [t.ids for t in ids] == tokenizer(texts)["input_ids"]
    assert counts == [len(t.ids) for t in ids] and counts[2] == 302


def test_ids_texts_and_a_mix_embed_exactly_as_the_model_card_says(embedder_float32: LoadedModel) -> None:
    exact = embedder_float32
    texts = [*sample_texts(12, seed=4), "héllo wörld, ünïcode ✓", LONG]  # varied lengths, one cut at 256
    expected = reference(exact, texts)
    ids, _ = exact.prepare(texts)
    from_texts = torch.tensor(exact(texts, truncation=True))
    from_ids = torch.tensor(exact.run(ids, {"truncation": True}))
    mixed = torch.tensor(exact.run([texts[0], ids[1], LONG, ids[-1]], {}))
    assert torch.allclose(from_texts, expected, atol=1e-6)
    assert torch.allclose(from_ids, expected, atol=1e-6)
    assert torch.allclose(mixed, expected[[0, 1, -1, -1]], atol=1e-6)
    assert exact([]) == []


def test_the_server_hands_the_worker_ids_so_it_never_tokenizes_again(embedder_float32: LoadedModel) -> None:
    exact = embedder_float32

    class NoTokenizer:
        def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the worker tokenized a text the server had already tokenized")

    run = exact.run
    assert isinstance(run, SentenceEmbedder)
    worker_encoder, run._worker_encoder = run._worker_encoder, NoTokenizer()
    try:
        with serve(exact) as server:
            texts = ["short", "a somewhat longer text to embed"]
            answers = server.query(texts)
            cut = httpx.post(server.url, json={"inputs": LONG, "parameters": {"truncation": True}}, trust_env=False)
    finally:
        run._worker_encoder = worker_encoder
    assert torch.allclose(torch.tensor(answers), reference(exact, texts), atol=1e-6)
    assert cut.status_code == 200
    assert torch.allclose(torch.tensor(cut.json()), reference(exact, [LONG])[0], atol=1e-6)

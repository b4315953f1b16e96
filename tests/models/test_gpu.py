"""With ``device`` set to a CUDA device, the model and every batch run there.

Skipped where PyTorch sees no CUDA device (as on the CPU-only CI machine)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pipeserve_nb import LoadedModel, serve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_batches_run_on_the_gpu_and_match_the_cpu_embeddings(embedder: LoadedModel) -> None:
    texts = [f"sentence number {i} about serving models on a GPU" + " again" * (i % 7) for i in range(48)]
    torch.cuda.reset_peak_memory_stats()
    with serve(device="cuda:0") as server, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(server.query, texts))
        stats = server.stats()
    assert torch.cuda.max_memory_allocated() > 0  # the forward passes allocated on the device
    assert stats["batches"] < len(texts)  # concurrent requests were batched there
    expected = embedder(texts)
    for got, want in zip(answers, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-3

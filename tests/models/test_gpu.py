"""With ``device`` set to a CUDA device, the model and every batch run there.

Skipped where PyTorch sees no CUDA device (as on the CPU-only CI machine)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pipeserve_nb import LoadedModel, serve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


TEXTS = [f"sentence number {i} about serving models on a GPU" + " again" * (i % 7) for i in range(48)]


def test_batches_run_on_the_gpu_in_float32_and_match_the_cpu_embeddings(embedder_float32: LoadedModel) -> None:
    torch.cuda.reset_peak_memory_stats()
    with serve(device="cuda:0", dtype="float32") as server, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(server.query, TEXTS))
        stats = server.stats()
    assert torch.cuda.max_memory_allocated() > 0  # the forward passes allocated on the device
    assert stats["batches"] < len(TEXTS)  # concurrent requests were batched there
    expected = embedder_float32(TEXTS)
    for got, want in zip(answers, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-3


def test_auto_runs_bfloat16_on_a_gpu_that_supports_it_within_cosine_0_999(embedder_float32: LoadedModel) -> None:
    with serve(device="cuda:0") as server:
        answers = server.query(TEXTS)
        dtype = server.dtype
    assert dtype == ("bfloat16" if torch.cuda.get_device_capability(0)[0] >= 8 else "float32")  # 9.0 on an H200
    cosines = torch.nn.functional.cosine_similarity(torch.tensor(answers), torch.tensor(embedder_float32(TEXTS)))
    assert float(cosines.min()) >= 0.999

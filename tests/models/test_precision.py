"""The ``dtype`` option: what the device runs natively, decided both ways, and what reduced
precision does to the answers (the accuracy guard: the same answers, to within what matters)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

import pipeserve_nb as ps
from pipeserve_nb import InvalidSetting, LoadedModel, load_model, serve
from pipeserve_nb._models import precision
from pipeserve_nb._models.precision import AUTO_MIN_SPEEDUP, native, resolve


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()  # pragma: no cover - every Linux CPU lists its flags


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU's flags from Linux")
def test_detection_agrees_with_the_cpu_flags_the_kernel_reports() -> None:
    flags = _cpu_flags()
    found = native("cpu")
    assert found.bfloat16 == bool(flags & {"avx512_bf16", "amx_bf16"}), (found, sorted(flags))
    assert found.float16 == bool(flags & {"amx_fp16", "avx512_fp16"})
    faster = found.bfloat16 and precision.speedup("bfloat16", 384, torch.get_num_threads()) >= AUTO_MIN_SPEEDUP
    assert resolve("auto", "cpu") == ("bfloat16" if faster else "float32")


def test_the_timing_auto_relies_on_is_a_real_measurement_taken_once_per_shape() -> None:
    threads = torch.get_num_threads()
    first = precision.speedup("bfloat16", 64, threads)
    assert 0 < first < float("inf")
    assert precision.speedup("bfloat16", 64, threads) == first  # cached: one process gives one answer
    assert precision.speedup("bfloat16", 65, threads) != first  # another width is timed afresh


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_follows_the_detected_capability_and_a_forced_type_the_cpu_lacks_is_refused(
    monkeypatch: pytest.MonkeyPatch, has_bf16: bool
) -> None:
    # the other answer than this machine's can only be had by making torch's probes (and Linux's flags) say it
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)
    monkeypatch.setattr(precision, "_linux_cpu_flags", frozenset)
    monkeypatch.setattr(precision, "speedup", lambda dtype, width, threads: 2.0)  # a CPU where bfloat16 pays
    found = native("cpu")
    assert found.bfloat16 is has_bf16 and not found.float16
    assert ("AVX512-BF16" in found.found) is has_bf16
    assert resolve("auto", "cpu") == ("bfloat16" if has_bf16 else "float32")
    assert resolve("float32", "cpu") == "float32"
    with pytest.raises(InvalidSetting, match=r"does not run float16 natively.*'float32'"):
        resolve("float16", "cpu")
    if has_bf16:
        assert resolve("bfloat16", "cpu") == "bfloat16"
    else:
        with pytest.raises(InvalidSetting, match="does not run bfloat16 natively"):
            resolve("bfloat16", "cpu")
        assert load_model(dtype="auto").dtype == "float32"  # auto on such a machine: float32, not an error


@pytest.mark.parametrize(("measured", "chosen"), [(0.7, "float32"), (1.05, "float32"), (1.6, "bfloat16")])
def test_on_a_cpu_auto_takes_bfloat16_only_where_it_was_timed_clearly_faster(
    monkeypatch: pytest.MonkeyPatch, measured: float, chosen: str
) -> None:
    # 0.7x: an Intel Xeon with AVX512-BF16 and no AMX; 1.6x: an AMD Zen 4 (docs/precision.md)
    widths: list[int] = []

    def timed(dtype: str, width: int, threads: int) -> float:
        widths.append(width)
        return measured

    monkeypatch.setattr(precision, "speedup", timed)
    found = precision.Native(bfloat16=True, float16=False, found="CPU features: AVX512-BF16")
    assert resolve("auto", "cpu", found, width=768) == chosen and widths == [768]
    assert resolve("bfloat16", "cpu", found) == "bfloat16" and widths == [768]  # forced: not timed, not refused


def test_auto_times_the_layer_width_of_the_model_it_loads(
    monkeypatch: pytest.MonkeyPatch, tiny_fill_mask: Path
) -> None:
    widths: list[int] = []
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(precision, "speedup", lambda dtype, width, threads: widths.append(width) or 0.5)
    assert load_model(str(tiny_fill_mask), task="fill-mask").dtype == "float32"  # timed slower: kept float32
    from transformers import AutoConfig

    assert widths == [AutoConfig.from_pretrained(tiny_fill_mask).hidden_size]  # the width of the model it loads


def test_an_unknown_dtype_and_a_dtype_for_a_ready_model_are_refused(embedder: LoadedModel) -> None:
    with pytest.raises(InvalidSetting, match="dtype must be one of 'auto', 'float32', 'bfloat16', 'float16'"):
        load_model(dtype="int8")
    with pytest.raises(InvalidSetting, match="dtype= applies only when pipeserve loads the model"):
        serve(embedder, dtype="float32")


def _cosines(a: list[list[float]], b: list[list[float]]) -> torch.Tensor:
    x, y = torch.tensor(a), torch.tensor(b)
    return torch.nn.functional.cosine_similarity(x, y, dim=1)


@pytest.mark.skipif(not native("cpu").bfloat16, reason="this CPU does not run bfloat16 natively")
def test_the_bundled_model_in_bfloat16_keeps_every_embedding_within_cosine_0_999(
    embedder_float32: LoadedModel,
) -> None:
    texts = ps.sample_texts(256)
    embedder, full = load_model(dtype="bfloat16"), embedder_float32
    assert (embedder.dtype, full.dtype) == ("bfloat16", "float32")
    reduced, exact = embedder(texts), full(texts)
    assert all(isinstance(v, float) for row in reduced for v in row) and {len(r) for r in reduced} == {384}
    assert float(_cosines(reduced, exact).min()) >= 0.999
    assert reduced != exact  # it did run in another precision
    weights = embedder.runner.pipe.model  # type: ignore[attr-defined]
    assert {p.dtype for p in weights.parameters()} == {torch.bfloat16}  # cast: the one copy is half the size
    assert embedder.weights_mb is not None and full.weights_mb is not None
    assert abs(embedder.weights_mb - full.weights_mb / 2) < 0.01 and full.weights_mb > 80


CLASSIFY = ["the movie was good", "the movie was bad", "not good", "very awful .", "a fine movie", "great", "bad bad"]
FILL = ["test [MASK]", "hello [MASK] world", "the [MASK] .", "a model [MASK] the queue", "[MASK] batch !"]


def _best(answer: Any) -> dict[str, Any]:
    """The best candidate: fill-mask answers a list of them, text-classification its label."""
    best: dict[str, Any] = answer[0] if isinstance(answer, list) else answer
    return best


@pytest.mark.skipif(not native("cpu").bfloat16, reason="this CPU does not run bfloat16 natively")
@pytest.mark.parametrize("kind", ["fill-mask", "text-classification"])
def test_pipelines_served_in_bfloat16_give_the_same_top_answer_as_float32(
    kind: str, tiny_fill_mask: Path, tiny_classifier: Path
) -> None:
    model = tiny_fill_mask if kind == "fill-mask" else tiny_classifier
    texts = FILL if kind == "fill-mask" else CLASSIFY
    answers = {}
    for dtype in ("bfloat16", "float32"):
        with serve(str(model), task=kind, dtype=dtype, name="precision") as server:
            health = httpx.get(f"{server.url}/health", trust_env=False).json()
            assert health["dtype"] == server.dtype == dtype
            assert server.stats()["dtype"] == server.dtype and f"dtype='{server.dtype}'" in repr(server)
            answers[dtype] = server.query(texts)
    key = "token" if kind == "fill-mask" else "label"
    for reduced, exact in zip(map(_best, answers["bfloat16"]), map(_best, answers["float32"]), strict=True):
        assert reduced[key] == exact[key], (reduced, exact)
        assert isinstance(reduced["score"], float) and abs(reduced["score"] - exact["score"]) < 0.05


def test_forcing_float32_runs_the_bundled_model_in_float32_end_to_end() -> None:
    with serve(dtype="float32", name="precision") as server:
        assert (server.device, server.dtype) == ("cpu", "float32")
        assert ">float32</td>" in server._repr_html_()
        assert len(server.query("hello world")) == 384
    assert precision.DTYPES[0] == "auto" and inspect.signature(serve).parameters["dtype"].default == "auto"

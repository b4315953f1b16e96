"""The runner protocol: a user's own runner, served as documented; the defaults of each step; what a
model pipeserve loads becomes; and a model's own refusal against its failure."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeserve_nb import LoadedModel, Prepared, Runner, load_model, serve
from pipeserve_nb._models.runner import to_jsonable
from pipeserve_nb._models.runners import CallableRunner, PipelineRunner

from ..helpers import ROOT


def _documented_example() -> str:
    """The Python block of ``docs/serving.md``'s section on a model of your own."""
    text = (ROOT / "docs" / "serving.md").read_text()
    section = text.split("## A model of your own", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_documented_runner_serves_as_the_docs_say() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_documented_example(), "docs/serving.md", "exec"), {"__name__": "docs"})
    assert printed.getvalue().strip() == "['HELLOHELLO', 'BATCH MEBATCH ME']"


class Words(Runner):
    """Counts words as tokens; ``run`` returns tuples, which the default ``encode`` makes lists."""

    max_tokens = 3
    parameter_names = frozenset({"truncation"})

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        return Prepared(list(texts), [len(t.split()) for t in texts])

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        return [(len(text), float("nan")) for text in inputs]


def test_a_runner_of_your_own_gets_its_limits_enforced_and_its_outputs_encoded() -> None:
    with serve(Words(), name="words") as server:
        assert server.query("two words") == [9, None]  # a tuple made a list, NaN made null
        too_long = httpx.post(server.url, content=b"four words are many", trust_env=False, timeout=30)
        cut = httpx.post(
            server.url, json={"inputs": "four words are many", "parameters": {"truncation": True}}, trust_env=False
        )
        unknown = httpx.post(server.url, json={"inputs": "a", "parameters": {"k": 1}}, trust_env=False)
    assert (
        too_long.status_code == 413
        and "has 4 tokens; this model takes at most 3" in too_long.json()["error"]["message"]
    )
    assert cut.status_code == 200
    assert unknown.status_code == 400 and "it takes: truncation" in unknown.json()["error"]["message"]


def test_the_defaults_count_characters_and_encode_to_json() -> None:
    runner = Runner()
    assert runner.prepare(["abc", "de"], {}) == Prepared(["abc", "de"], [3, 2])
    assert runner.encode((1, 2.5, float("inf"))) == [1, 2.5, None]
    with pytest.raises(NotImplementedError, match="must define run"):
        runner.run(["a"], {})
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        to_jsonable({1, 2})


def test_what_pipeserve_loads_is_a_runner_and_a_loaded_model_runs_all_three_steps(tiny_fill_mask: Path) -> None:
    def double(inputs: list[str], *, by: int = 2) -> list[str]:
        return [text * by for text in inputs]

    wrapped = load_model(double)
    assert isinstance(wrapped.runner, CallableRunner) and wrapped.parameter_names == frozenset({"by"})
    assert wrapped(["ab"], by=3) == ["ababab"]
    pipeline = load_model(str(tiny_fill_mask), task="fill-mask")
    assert isinstance(pipeline.runner, PipelineRunner) and pipeline.max_tokens == 64
    assert pipeline.runner.prepare(["test [MASK] ."], {}).tokens == [5]  # [CLS] test [MASK] . [SEP]
    assert len(pipeline(["test [MASK] ."], top_k=2)[0]) == 2
    own = load_model(Words())
    assert isinstance(own, LoadedModel) and own.name == "Words" and own(["a b"]) == [[3, None]]

"""The generation core: many generations in one KV cache (``StepBatch``), sampling settings, and text pieces.

The step batch is checked against the model's own ``generate()``: a row that joined a running batch
late, beside rows of other lengths, writes the same greedy tokens as the prompt generated alone, and
a row that leaves takes its columns with it. The bundled chat model (SmolLM2-135M-Instruct, read
from its GGUF file) answers the question every chat demo asks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from pipeserve_nb._exceptions import InvalidInput, InvalidSetting
from pipeserve_nb._models.generation.sampling import Sampling, choose
from pipeserve_nb._models.generation.step_batch import Row, StepBatch
from pipeserve_nb._models.generation.text import TextStream

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write a haiku about the sea.",
    "What is 2+2?",
    "Tell me a fun fact about cats.",
]
NEW_TOKENS = 16


@pytest.fixture
def chat(chat_model: tuple[Any, Any]) -> tuple[Any, Any]:
    return chat_model


def _prompt(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )


def _alone(model: Any, prompt: list[int], tokens: int) -> list[int]:
    """The model's own greedy answer to one prompt, at most ``tokens`` long."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False)
    return [int(t) for t in out[0, len(prompt) :]]


def _ends(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end an answer (the model's generation config may name several)."""
    configured = model.generation_config.eos_token_id
    return {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}


def _until_end(tokens: list[int], ends: set[int]) -> list[int]:
    """The answer up to its first end token (a row of the test's batch goes on after it)."""
    cut = [i for i, t in enumerate(tokens) if t in ends]
    return tokens[: cut[0]] if cut else tokens


def test_the_bundled_chat_model_answers_paris(chat: tuple[Any, Any]) -> None:
    model, tokenizer = chat
    batch = StepBatch(model, pad_id=tokenizer.pad_token_id)
    row = Row("q", Sampling(max_new_tokens=NEW_TOKENS))
    batch.join([_prompt(tokenizer, "What is the capital of France?")], [row])
    while len(row.tokens) < NEW_TOKENS and row.tokens[-1] not in _ends(model, tokenizer):
        batch.step()
    assert "Paris" in tokenizer.decode(row.tokens, skip_special_tokens=True)


def test_bfloat16_weights_keep_float32s_greedy_answers_the_accuracy_guard(chat: tuple[Any, Any]) -> None:
    """The guard for serving the chat model in bfloat16 (``dtype="auto"`` takes it where it is faster): along
    float32's own greedy answers, the reduced copy picks the same next token at 90% of the positions or
    more (teacher forcing: each position given float32's text so far), and the short factual answers are
    the same text."""
    import copy

    from pipeserve_nb._models.precision import cast

    model, tokenizer = chat
    reduced = copy.deepcopy(model)
    cast(reduced, "bfloat16")  # what loading with dtype bfloat16 does to the weights
    agreements = []
    for question in QUESTIONS:
        prompt = torch.tensor([_prompt(tokenizer, question)])
        with torch.inference_mode():
            written = model.generate(prompt, max_new_tokens=32, do_sample=False)
            span = slice(prompt.shape[1] - 1, -1)  # the positions that predicted each written token
            exact, low = (m(written).logits[0, span].argmax(-1) for m in (model, reduced))
        agreements.append(float((exact == low).float().mean()))
        if question in ("What is the capital of France?", "What is 2+2?"):
            with torch.inference_mode():
                answer = reduced.generate(prompt, max_new_tokens=16, do_sample=False)
            assert tokenizer.decode(answer[0, prompt.shape[1] :]) == tokenizer.decode(
                written[0, prompt.shape[1] :][:16]
            )
    assert sum(agreements) / len(agreements) >= 0.9, agreements


def test_the_chat_model_is_read_from_its_cache_and_a_damaged_cache_from_the_gguf_file_again(
    chat: tuple[Any, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeserve_nb._models.generation import bundled

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = bundled.cache_folder(bundled.smollm2_file())
    assert folder.parent == tmp_path / "pipeserve_nb" and not folder.exists()
    expected, tokenizer = chat
    bundled._keep(expected, tokenizer, folder)  # what the first load of a machine writes (one GGUF read spared)
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    for round_ in ("from the cache", "from the file, the cache damaged", "from the cache it wrote again"):
        model, loaded_tokenizer = bundled.load_smollm2()
        read_gguf = "quantization_config" in model.config.to_dict()  # only a model read from the file has it
        assert read_gguf == (round_ == "from the file, the cache damaged"), round_
        weights = model.state_dict()
        assert all(torch.equal(weights[k], v) for k, v in expected.state_dict().items()), round_
        assert loaded_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == prompt
        assert loaded_tokenizer.eos_token_id == tokenizer.eos_token_id and model.dtype == torch.float32
        assert (folder / "model.safetensors").is_file() and not list(tmp_path.glob("pipeserve_nb/*.partial"))
        if round_ == "from the cache":
            (folder / "model.safetensors").write_bytes(b"damaged")  # the next load reads the file and mends it


def test_rows_joining_a_running_batch_write_what_each_prompt_writes_alone(chat: tuple[Any, Any]) -> None:
    model, tokenizer = chat
    prompts = [_prompt(tokenizer, q) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) > 1, "prompts of several lengths: rows sit on padding"
    alone = [_alone(model, p, NEW_TOKENS) for p in prompts]
    rows = [Row(i, Sampling(max_new_tokens=NEW_TOKENS)) for i in range(len(prompts))]
    batch = StepBatch(model, pad_id=tokenizer.pad_token_id)
    joins = {0: [0, 1], 3: [2], 5: [3, 4]}  # step -> newcomers: two at once, then one, then two while others run
    sizes = []
    for step in range(4 * NEW_TOKENS):
        if step in joins:
            batch.join([prompts[i] for i in joins[step]], [rows[i] for i in joins[step]])
        if batch:
            batch.step()
            sizes.append(len(batch))
        batch.leave({r.key for r in batch.rows if len(r.tokens) >= NEW_TOKENS})
    assert max(sizes) == 5 and len(batch) == 0
    end = _ends(model, tokenizer)
    for row, expected in zip(rows, alone, strict=True):
        assert _until_end(row.tokens[:NEW_TOKENS], end) == _until_end(expected, end), row.key


def test_a_row_that_leaves_frees_its_columns_and_the_rest_go_on_unchanged(chat: tuple[Any, Any]) -> None:
    model, tokenizer = chat
    short, long = _prompt(tokenizer, "Hi"), _prompt(tokenizer, QUESTIONS[4] + " Please answer in one long sentence.")
    batch = StepBatch(model, pad_id=tokenizer.pad_token_id)
    keep, go = Row("keep", Sampling(max_new_tokens=8)), Row("go", Sampling(max_new_tokens=8))
    batch.join([short, long], [keep, go])
    assert batch.columns == len(long)
    batch.step()
    assert batch.leave({"go"}) == [go]
    assert [r.key for r in batch.rows] == ["keep"]
    assert batch.columns == len(short) + 1, "the padding only the long row needed is gone"
    while len(keep.tokens) < 8:
        batch.step()
    end = _ends(model, tokenizer)
    assert _until_end(keep.tokens, end) == _until_end(_alone(model, short, 8), end)
    assert batch.leave({"nobody"}) == []
    batch.leave({"keep"})
    assert len(batch) == 0 and batch.columns == 0 and batch.step() == []


def test_a_model_whose_cache_cannot_be_padded_is_refused_with_what_to_do() -> None:
    from transformers import DynamicCache

    class SlidingCacheModel(torch.nn.Module):
        def forward(self, **_: Any) -> Any:
            from transformers.cache_utils import DynamicSlidingWindowLayer
            from transformers.modeling_outputs import CausalLMOutputWithPast

            cache = DynamicCache()
            cache.layers = [DynamicSlidingWindowLayer(sliding_window=4)]
            return CausalLMOutputWithPast(logits=torch.zeros(1, 1, 4), cache=cache)

    with pytest.raises(InvalidSetting, match="DynamicSlidingWindowLayer: serve it with the static"):
        StepBatch(SlidingCacheModel(), pad_id=0).join([[1, 2]], [Row("r", Sampling(max_new_tokens=2))])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_new_tokens": 0}, "max_tokens must be an integer >= 1"),
        ({"max_new_tokens": 4, "temperature": -0.1}, "temperature must be a number from 0 to 2"),
        ({"max_new_tokens": 4, "temperature": float("nan")}, "temperature must be"),
        ({"max_new_tokens": 4, "top_p": 0}, "top_p must be a number above 0"),
        ({"max_new_tokens": 4, "seed": 1.5}, "seed must be an integer"),
        ({"max_new_tokens": 4, "stop": ("",)}, "stop must be at most 4 non-empty strings"),
        ({"max_new_tokens": 4, "stop": ("a", "b", "c", "d", "e")}, "stop must be at most 4"),
    ],
)
def test_bad_sampling_settings_are_refused_with_the_rule(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Sampling(**settings)


def test_sampling_is_greedy_at_zero_and_repeatable_with_a_seed() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    greedy = Sampling(max_new_tokens=1)
    assert choose(logits, [greedy, greedy], [None, None]) == [1, 0]
    seeded = Sampling(max_new_tokens=1, temperature=1.5, seed=7)
    draws = [choose(logits, [seeded, greedy], [seeded.generator(), None])[0] for _ in range(5)]
    assert len(set(draws)) == 1, "one seed, one answer"
    many = {
        choose(logits[:1], [seeded], [Sampling(max_new_tokens=1, temperature=1.5, seed=s).generator()])[0]
        for s in range(40)
    }
    assert len(many) > 1, "a temperature samples"
    nucleus = Sampling(max_new_tokens=1, temperature=1.0, top_p=0.4)  # the likeliest alone holds 0.48
    assert {choose(logits[:1], [nucleus], [nucleus.generator()])[0] for _ in range(40)} == {1}, (
        "top_p keeps the likeliest"
    )


class CharTokenizer:
    """A tokenizer whose tokens are characters, with a multi-byte character split over two tokens."""

    pieces: ClassVar[dict[int, str]] = {
        1: "Par",
        2: "is",
        3: " is",
        4: " nice",
        5: ".",
        6: "\n",
        7: "END",
        8: "\xc3",
        9: "\xa9",
    }

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        raw = "".join(self.pieces[i] for i in ids if not (skip_special_tokens and i == 7))
        return raw.encode("latin-1").decode("utf-8", errors="replace")


def _stream(tokens: list[int], stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    text = TextStream(CharTokenizer(), stop=stop)
    return [text.push(t) for t in tokens] + [text.finish()], text


def test_text_comes_out_piece_by_piece_and_a_split_character_whole() -> None:
    pieces, text = _stream([1, 2, 8, 9, 5])
    assert pieces == ["Par", "is", "", "é", ".", ""]
    assert text.text == "Parisé." and not text.stopped


def test_a_stop_string_across_tokens_ends_the_text_before_it() -> None:
    pieces, text = _stream([1, 2, 3, 4, 5], stop=(" is nice",))
    assert "".join(pieces) == "Paris" and text.stopped
    assert pieces[2] == "", "' is' is held back: it may begin the stop string"
    assert text.push(5) == "" and text.finish() == ""


def test_held_back_text_that_turns_out_not_to_stop_is_handed_out() -> None:
    pieces, text = _stream([1, 2, 3, 5], stop=(" is nice",))
    assert "".join(pieces) == "Paris is." and not text.stopped
    pieces, text = _stream([1, 3], stop=(" is nice",))
    assert pieces == ["Par", "", " is"], "held to the end, then handed out"

"""Chat requests checked and turned into prompts, with the bundled chat model's own tokenizer and template."""

from __future__ import annotations

from typing import Any

import pytest

from pipeserve_nb import InvalidInput
from pipeserve_nb._models.generation.chat import ChatPrompts

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def prompts(chat_model: tuple[Any, Any]) -> ChatPrompts:
    return ChatPrompts(chat_model[1], context_tokens=64, max_new_tokens=32)


def test_messages_go_through_the_models_chat_template(prompts: ChatPrompts, chat_model: tuple[Any, Any]) -> None:
    tokenizer = chat_model[1]
    made = prompts.from_messages(QUESTION, {"max_tokens": 8, "temperature": 0, "stop": "Paris", "seed": 3})
    text = tokenizer.decode(made.ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text
    assert made.sampling.max_new_tokens == 8 and made.sampling.greedy and made.sampling.stop == ("Paris",)
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]
    assert prompts.from_messages([{"role": "user", "content": parts}], {}).ids == made.ids, "content parts, joined"
    developer = prompts.from_messages([{"role": "developer", "content": "Be brief."}, *QUESTION], {})
    assert "<|im_start|>system\nBe brief.<|im_end|>" in tokenizer.decode(developer.ids)


def test_without_a_budget_the_answer_may_fill_the_cap_or_the_rest_of_the_context(prompts: ChatPrompts) -> None:
    made = prompts.from_messages(QUESTION, {})
    assert made.sampling.max_new_tokens == min(32, 64 - len(made.ids))
    assert made.sampling.temperature == 1.0 and made.sampling.top_p == 1.0, "OpenAI's defaults: sampled"
    assert prompts.from_text("The capital of France is", {"max_completion_tokens": 5}).sampling.max_new_tokens == 5


@pytest.mark.parametrize(
    ("messages", "fields", "message"),
    [
        ([], {}, "messages must be a non-empty list"),
        ("hello", {}, "messages must be a non-empty list"),
        (["hello"], {}, r"messages\[0\] must be an object with a role and a content"),
        ([{"role": "wizard", "content": "hi"}], {}, r"messages\[0\].role must be one of system, developer, user"),
        ([{"role": "user"}], {}, r"messages\[0\].content must be a string or a list of text parts"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], {}, "only text parts"),
        (QUESTION, {"n": 2}, "n must be 1: this server writes one answer per request"),
        (QUESTION, {"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        (QUESTION, {"max_tokens": "ten"}, "max_tokens must be an integer >= 1, got 'ten'"),
        (QUESTION, {"max_tokens": 1000}, "max_tokens is 1000, over this server's cap of 32 tokens"),
        (QUESTION, {"temperature": 3}, "temperature must be a number from 0 to 2"),
        (QUESTION, {"top_p": 0}, "top_p must be a number above 0"),
        (QUESTION, {"seed": "x"}, "seed must be an integer"),
        (QUESTION, {"stop": ["a", "b", "c", "d", "e"]}, "stop must be at most 4"),
        (QUESTION, {"stop": 7}, "stop must be a string or a list"),
        (QUESTION, {"tools": [{"type": "function"}]}, "tools: tools .function calling. are not supported"),
        (QUESTION, {"logprobs": True}, "logprobs: logprobs are not supported"),
    ],
)
def test_a_request_the_server_cannot_honour_is_refused_with_what_to_change(
    prompts: ChatPrompts, messages: Any, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        prompts.from_messages(messages, fields)


def test_a_prompt_and_budget_over_the_context_are_refused_with_the_numbers(prompts: ChatPrompts) -> None:
    length = len(prompts.from_messages(QUESTION, {}).ids)
    room = 64 - length
    with pytest.raises(
        InvalidInput,
        match=f"has {length} tokens and max_tokens is {room + 1}: .* context of 64 tokens; ask for at most {room}",
    ):
        prompts.from_messages(QUESTION, {"max_tokens": room + 1})
    with pytest.raises(InvalidInput, match="leaves no room in the model's context of 64 tokens"):
        prompts.from_text("word " * 80, {})
    with pytest.raises(InvalidInput, match="prompt must be a non-empty string"):
        prompts.from_text("", {})

"""The step loop against the model alone, in one process, on one inference thread (issue 34's design check).

    python scripts/step_loop.py            # float32
    python scripts/step_loop.py bfloat16   # weights cast to bfloat16

For c = 1, 8, 16: c generations of the bundled chat model (greedy, 48 new tokens each, the end token
ignored so every answer has the same length) submitted at once to a ``StepLoop`` (continuous joins),
against ``generate()`` on a static, left-padded batch of the same c prompts. Both run on the same
inference thread: PyTorch keeps a thread team per calling thread, and a second team spinning on a
2-core machine would slow whichever ran second. No HTTP: this measures the scheduling, not the server.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from functools import partial
from typing import Any

import torch

from pipeserve_nb._models.generation.bundled import load_smollm2
from pipeserve_nb._models.generation.sampling import Sampling
from pipeserve_nb._server.core.generation import StepLoop
from pipeserve_nb._server.core.inference import InferenceThread
from pipeserve_nb._server.core.stream import Generation

NEW_TOKENS = 48
QUESTIONS = [
    "Write a story about a dragon.",
    "Explain photosynthesis.",
    "Describe Paris.",
    "What is machine learning?",
    "Write a poem about rain.",
    "Tell me about the moon.",
    "How do computers work?",
    "Why is the sky blue?",
]


def main(dtype_name: str) -> None:
    model, tokenizer = load_smollm2()
    model = model.to(getattr(torch, dtype_name))
    prompts = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for q in QUESTIONS
    ]
    worker = InferenceThread()
    loop = StepLoop(model, tokenizer, worker, join="continuous", max_rows=32)
    loop.ends = frozenset()  # every answer runs its 48 tokens, as generate(min_new_tokens=48) does

    def alone(c: int) -> float:
        chosen = [prompts[i % len(prompts)] for i in range(c)]
        width = max(map(len, chosen))
        ids = torch.full((c, width), tokenizer.pad_token_id)
        mask = torch.zeros((c, width), dtype=torch.long)
        for i, p in enumerate(chosen):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        with torch.inference_mode():
            started = time.perf_counter()
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            return c * NEW_TOKENS / (time.perf_counter() - started)

    def stepped(c: int) -> tuple[float, float]:
        async def body() -> tuple[float, float]:
            generations = [Generation(prompts[i % len(prompts)], Sampling(max_new_tokens=NEW_TOKENS)) for i in range(c)]
            started = time.perf_counter()
            for generation in generations:
                loop.submit(generation)
            done: list[Any] = [await g.result() for g in generations]
            elapsed = time.perf_counter() - started
            return sum(d.completion_tokens for d in done) / elapsed, statistics.median(d.first_token_s for d in done)

        return asyncio.run(body())

    worker.submit(partial(alone, 2)).result()  # warm both on the thread that runs them
    stepped(2)
    print(f"SmolLM2-135M-Instruct, {dtype_name}, {torch.get_num_threads()} threads, {NEW_TOKENS} new tokens, greedy")
    print("| c | model alone, static batch | step loop | ratio | step loop TTFT p50 |\n|---|---|---|---|---|")
    for c in (1, 8, 16):
        base = worker.submit(partial(alone, c)).result()
        rate, first = stepped(c)
        print(f"| {c} | {base:.1f} tok/s | {rate:.1f} tok/s | {rate / base:.2f} | {first * 1000:.0f} ms |")
    worker.close(30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "float32")

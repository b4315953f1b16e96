"""The bundled model: all-MiniLM-L6-v2 sentence embeddings, tokenized once per request.

``prepare`` tokenizes a request's texts on the server's preparation thread (the server needs the
token counts anyway, to refuse over-long inputs and to group requests by length) and hands the
token ids to ``run`` (``TokenIds``), so the inference thread never tokenizes the same texts again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .runner import Prepared, Runner
from .tokens import private_backend

__all__ = ["SentenceEmbedder", "TokenIds"]


@dataclass(frozen=True, slots=True)
class TokenIds:
    """One text's token ids, special tokens included, not truncated."""

    ids: list[int]


class SentenceEmbedder(Runner):
    """Mean pooling over real (unpadded) tokens, then L2 normalisation, as the model card
    prescribes: 384 floats per text.

    The pipeline's own batched output keeps padding tokens, so pooling it would give an
    embedding that depends on its batch-mates; pooling here uses the attention mask.
    """

    parameter_names = frozenset({"truncation"})
    task = "feature-extraction"

    def __init__(self, pipe: Any, max_tokens: int | None) -> None:
        """``pipe``: the model's feature-extraction pipeline; ``max_tokens``: where inputs are cut."""
        self.pipe = pipe
        self.max_tokens = max_tokens
        self._pad_id: int = pipe.tokenizer.pad_token_id
        self._encoder = private_backend(pipe.tokenizer)  # the preparation thread's own tokenizer

    def prepare(self, texts: list[str], parameters: Mapping[str, Any]) -> Prepared:
        """Tokenize ``texts``: their ids for ``run``, and their lengths."""
        ids = [TokenIds(e.ids) for e in self._encoder.encode_batch(texts, add_special_tokens=True)]
        return Prepared(list(ids), [len(t.ids) for t in ids])

    def run(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        """Embed ``inputs`` (``TokenIds`` from ``prepare``); inputs over ``max_tokens`` are cut there."""
        import torch

        rows = [self._cut(x.ids) for x in inputs]
        if not rows:
            return []
        longest = max(len(r) for r in rows)
        model = self.pipe.model
        input_ids = torch.tensor([r + [self._pad_id] * (longest - len(r)) for r in rows], device=model.device)
        mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows], device=model.device)
        with torch.inference_mode():
            # pooling and normalisation in float32, whatever the model ran in (see ``precision``)
            tokens = model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        result: list[Any] = vectors.cpu().tolist()
        return result

    def encode(self, output: Any) -> Any:
        """An embedding is already a list of finite floats (``run`` made it one in a single pass)."""
        return output

    def _cut(self, ids: list[int]) -> list[int]:
        """Token ids cut at ``max_tokens`` the way the tokenizer cuts: the text's tokens are shortened
        and the closing special token kept."""
        limit = self.max_tokens
        return ids if limit is None or len(ids) <= limit else [*ids[: limit - 1], ids[-1]]

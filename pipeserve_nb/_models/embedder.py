"""The bundled model: all-MiniLM-L6-v2 sentence embeddings, tokenized once per request.

The server tokenizes each request on the event loop before it is queued (it needs the
token counts to refuse over-long inputs and to group requests by length), so the worker
takes those token ids as they are (``TokenIds``) instead of tokenizing the same texts a
second time: the profile of a request put the transformers tokenizer call on the
inference thread at about 0.3 ms per batch on 2 cores, more than any other step outside
the model. Plain texts are accepted too (``load_model()(["a text"])``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .tokens import private_backend

__all__ = ["SentenceEmbedder", "TokenIds"]


@dataclass(frozen=True, slots=True)
class TokenIds:
    """One text's token ids, special tokens included, not truncated."""

    ids: list[int]


class SentenceEmbedder:
    """Mean pooling over real (unpadded) tokens, then L2 normalisation, as the model card
    prescribes: 384 floats per text.

    The pipeline's own batched output keeps padding tokens, so pooling it would give an
    embedding that depends on its batch-mates; pooling here uses the attention mask.
    """

    def __init__(self, pipe: Any, max_tokens: int | None) -> None:
        """``pipe``: the model's feature-extraction pipeline; ``max_tokens``: where inputs are cut."""
        self.pipe = pipe
        self.max_tokens = max_tokens
        self._pad_id: int = pipe.tokenizer.pad_token_id
        # one tokenizer for each thread that tokenizes: the event loop (prepare) and the worker (plain texts)
        self._loop_encoder = private_backend(pipe.tokenizer)
        self._worker_encoder = private_backend(pipe.tokenizer)

    def prepare(self, texts: list[str]) -> tuple[list[TokenIds], list[int]]:
        """Tokenize ``texts`` (on the event loop): their ids for the worker, and their lengths."""
        ids = [TokenIds(e.ids) for e in self._loop_encoder.encode_batch(texts, add_special_tokens=True)]
        return ids, [len(t.ids) for t in ids]

    def __call__(self, inputs: Sequence[str | TokenIds], parameters: Mapping[str, Any]) -> list[Any]:
        """Embed ``inputs`` (texts, or ids from ``prepare``); inputs over ``max_tokens`` are cut there."""
        import torch

        unknown = set(parameters) - {"truncation"}
        if unknown:
            raise TypeError(f"the bundled embedding model takes only 'truncation', got {sorted(unknown)}")
        rows = self._ids(inputs)
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

    def _ids(self, inputs: Sequence[str | TokenIds]) -> list[list[int]]:
        """Token ids per input, cut at ``max_tokens`` the way the tokenizer cuts: the text's
        tokens are shortened and the closing special token kept."""
        texts = [x for x in inputs if isinstance(x, str)]
        encoded = iter(self._worker_encoder.encode_batch(texts, add_special_tokens=True) if texts else [])
        limit = self.max_tokens
        rows = []
        for x in inputs:
            ids = next(encoded).ids if isinstance(x, str) else x.ids
            rows.append(ids if limit is None or len(ids) <= limit else [*ids[: limit - 1], ids[-1]])
        return rows

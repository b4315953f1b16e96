"""Many generations in one KV cache, advanced one token per model step together.

Continuous batching needs three moves on a batch of running generations, each between two model
steps: **join** (prefill newcomers' prompts in one call and add them as rows), **step** (one decode
call gives every row its next token) and **leave** (drop finished or cancelled rows at once). Rows
sit left-padded in one ``DynamicCache``: a row's tokens end at the right edge, an attention mask
says which columns are real, and each row's position ids count only its own real tokens, so a row
is computed as if it were alone. Joining pads the shorter side on the left; leaving trims the
columns that no remaining row uses. This is the padded layout TGI used for models without paged
attention: it works with any transformers causal LM whose cache is plain per-layer key/value
tensors (``DynamicLayer``), and ``join`` refuses any other cache with a clear error.

The batch runs on one thread (the inference thread); it keeps no locks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..._exceptions import InvalidSetting
from .sampling import Sampling, choose

__all__ = ["Row", "StepBatch"]


@dataclass(eq=False, slots=True)
class Row:
    """One generation in the batch: who it is for, how it picks tokens, what it has written."""

    key: Hashable
    sampling: Sampling
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    """The tokens generated so far (the prompt not included)."""


class StepBatch:
    """Running generations of one model (see the module docstring).

    Parameters:
        model: a transformers causal LM (``AutoModelForCausalLM``), in eval mode.
        pad_id: a token id to fill padding with (it is masked, so any id the model knows).
    """

    def __init__(self, model: Any, pad_id: int) -> None:
        self.model = model
        self.pad_id = pad_id
        self.rows: list[Row] = []
        self._cache: Any = None  # a DynamicCache, per layer keys and values [rows, heads, columns, dim]
        self._mask = torch.zeros((0, 0), dtype=torch.long)  # [rows, columns]: 1 where a column is a real token
        self._last = torch.zeros((0, 1), dtype=torch.long)  # [rows, 1]: each row's latest token, the next input

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> int:
        """The width of the cache: the longest row's tokens, plus the padding of the others."""
        return int(self._mask.shape[1])

    def join(self, prompts: Sequence[Sequence[int]], rows: Sequence[Row]) -> list[int]:
        """Prefill ``prompts`` (token ids) in one model call and add them as ``rows``; return each one's first token.

        The running rows wait for this call: a caller that wants them to keep flowing joins a few
        newcomers (or a bounded number of prompt tokens) at a time."""
        if len(prompts) != len(rows) or not rows:
            raise ValueError("join needs one prompt per row, and at least one")
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
        with torch.inference_mode():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
                logits_to_keep=1,
            )
        layers = _layers_of(out.cache)  # refuses a cache it cannot pad and trim
        first = self._choose(out.logits[:, -1, :], rows)
        for row, token in zip(rows, first, strict=True):
            row.tokens.append(token)
        new_last = torch.tensor(first, dtype=torch.long).unsqueeze(1)
        if not self.rows:
            self._cache, self._mask, self._last = out.cache, mask, new_last
        else:
            self._merge(layers, mask, new_last)
        self.rows.extend(rows)
        return first

    def step(self) -> list[int]:
        """One decode call for every row: each row's next token (also appended to ``row.tokens``)."""
        if not self.rows:
            return []
        mask = torch.cat([self._mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=self._last,
                attention_mask=mask,
                position_ids=self._mask.sum(-1, keepdim=True),
                cache=self._cache,  # grown in place by one column
                use_cache=True,
            )
        self._mask = mask
        tokens = self._choose(out.logits[:, -1, :], self.rows)
        for row, token in zip(self.rows, tokens, strict=True):
            row.tokens.append(token)
        self._last = torch.tensor(tokens, dtype=torch.long).unsqueeze(1)
        return tokens

    def leave(self, keys: set[Hashable]) -> list[Row]:
        """Drop the rows whose key is in ``keys`` at once; return them. The cache shrinks to what the rest use."""
        kept = [i for i, row in enumerate(self.rows) if row.key not in keys]
        gone = [row for row in self.rows if row.key in keys]
        if not gone:
            return []
        self.rows = [self.rows[i] for i in kept]
        if not kept:
            self._cache, self._mask, self._last = None, self._mask[:0, :0], self._last[:0]
            return gone
        index = torch.tensor(kept, dtype=torch.long)
        mask = self._mask[index]
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else mask.shape[1]
        self._mask = mask[:, start:]
        self._cache = _cache_of([(k[index, :, start:], v[index, :, start:]) for k, v in _layers_of(self._cache)])
        self._last = self._last[index]
        return gone

    def _choose(self, logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
        return choose(logits, [r.sampling for r in rows], [r.generator for r in rows])

    def _merge(self, layers: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor, last: torch.Tensor) -> None:
        width = max(self.columns, mask.shape[1])
        self._cache = _cache_of(
            [
                (
                    torch.cat([_pad_left(k0, width), _pad_left(k1, width)]),
                    torch.cat([_pad_left(v0, width), _pad_left(v1, width)]),
                )
                for (k0, v0), (k1, v1) in zip(_layers_of(self._cache), layers, strict=True)
            ]
        )
        self._mask = torch.cat([_pad_left(self._mask, width), _pad_left(mask, width)])
        self._last = torch.cat([self._last, last])


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """``tensor`` with zero columns added on the left up to ``width`` (dim 2 of keys and values, 1 of a mask)."""
    dim = 1 if tensor.dim() == 2 else 2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _layers_of(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers or []}) or [type(cache).__name__]
        raise InvalidSetting(
            f"continuous batching needs a model whose cache is plain keys and values per layer; this one uses "
            f"{', '.join(kinds)}: serve it with the static or one-at-a-time generation policy"
        )
    return [(layer.keys, layer.values) for layer in layers]


def _cache_of(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)

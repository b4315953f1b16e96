"""Counting the copies of a model a process holds: the weights themselves, not process memory."""

from __future__ import annotations

import gc
from pathlib import Path

from pipeserve_nb import load_model, model_copies, serve


def _copies(path: Path) -> int:
    gc.collect()
    return model_copies().get(str(path), 0)


def test_each_load_is_a_copy_and_a_replaced_server_leaves_one(tiny_fill_mask: Path) -> None:
    before = _copies(tiny_fill_mask)  # other tests in this process may still hold a copy of the same files
    first = load_model(str(tiny_fill_mask), task="fill-mask")
    second = load_model(str(tiny_fill_mask), task="fill-mask")
    assert _copies(tiny_fill_mask) == before + 2  # two loads, two copies of the weights
    del first, second
    assert _copies(tiny_fill_mask) == before  # let go: gone
    server = serve(str(tiny_fill_mask), task="fill-mask", name="copies")
    server = serve(str(tiny_fill_mask), task="fill-mask", name="copies")  # the notebook's re-run of a cell
    try:
        assert _copies(tiny_fill_mask) == before + 1
    finally:
        server.stop()
    del server
    assert _copies(tiny_fill_mask) == before

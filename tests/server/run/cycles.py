"""Re-run a notebook's start and stop cells N times in this process and print what it kept, as JSON.

``python -m tests.server.run.cycles 30`` runs in a fresh process of its own, so its memory, threads and
descriptors are the server's alone, not what the tests before it left in a pytest worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys

import orjson
import psutil

import pipeserve_nb
from pipeserve_nb import LoadedModel, serve

from ...helpers import pipeserve_threads, port_is_free


def run(cycles: int) -> dict[str, object]:
    """Start a server of the bundled model, answer one query, stop it; ``cycles`` times, measuring after each."""
    process = psutil.Process()
    copies_before = model_copies()
    rss_mb: list[float] = []
    threads: list[int] = []
    fds: list[int] = []
    for i in range(cycles):
        server = serve(name="cell")  # loads the real model each time, like re-running the start cell
        assert len(server.query(f"cycle {i}")) == 384
        server.stop()
        assert port_is_free(server.port)
        del server
        gc.collect()
        _return_freed_heap_to_the_os()
        rss_mb.append(process.memory_info().rss / 2**20)
        threads.append(process.num_threads())
        fds.append(process.num_fds())
    return {
        "model_mb": pipeserve_nb.load_model().weights_mb,
        "rss_mb": rss_mb,
        "threads": threads,
        "fds": fds,
        "copies_before": copies_before,
        "copies_after": model_copies(),
        "servers_left": len(pipeserve_nb.running_servers()),
        "threads_left": [t.name for t in pipeserve_threads()],
    }


def model_copies() -> int:
    """Loaded models and BERT networks alive in this process."""
    gc.collect()
    from transformers import BertModel

    from pipeserve_nb._models.embedder import SentenceEmbedder

    kinds = {LoadedModel, SentenceEmbedder, BertModel}  # classes, not names: a rename cannot empty the check
    return sum(type(o) in kinds for o in gc.get_objects())


def _return_freed_heap_to_the_os() -> None:
    """glibc's ``malloc_trim(0)``: freed heap pages go back to the OS, so RSS counts what is alive."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS keeps the allocator's slack
        ctypes.CDLL("libc.so.6").malloc_trim(0)


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(run(int(sys.argv[1]))))

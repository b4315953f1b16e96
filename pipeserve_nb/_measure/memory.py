"""Process memory, for lessons about how many copies of a model a setup holds."""

from __future__ import annotations

__all__ = ["rss_mb"]


def rss_mb(pid: int | None = None, *, children: bool = False) -> float:
    """Resident memory of process ``pid`` (default: this one) in MiB.

    With ``children=True``, add the resident memory of all its descendants (e.g. worker
    processes each holding a model copy).
    """
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    if children:
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    return float(total) / 2**20

"""Process memory, for lessons about how many copies of a model a setup holds."""

from __future__ import annotations

__all__ = ["rss_mb", "model_copies"]


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


def model_copies() -> dict[str, int]:
    """How many copies of each model's weights this process holds now: PyTorch models alive in it,
    by name, each copy counted once however many objects refer to it.

    Process memory cannot answer this: an allocator keeps memory it freed for later use, so a
    process's resident size moves by tens of MiB when a model is replaced without a second copy
    ever existing. This counts the weights themselves: every live ``torch.nn.Module`` that is not
    part of a larger one, told apart by where its first parameter's storage lives (two models that
    share storage are one copy). Call ``gc.collect()`` first to count only what is still reachable.
    """
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # nothing was loaded: no model can be alive
        return {}
    module_type = torch.nn.Module  # type(o), not isinstance: some objects warn when asked for their class
    modules = [o for o in gc.get_objects() if issubclass(type(o), module_type)]
    inner = {id(child) for m in modules for child in m.children()}
    storages: dict[str, set[int]] = {}
    for module in modules:
        if id(module) in inner:
            continue
        first = next(module.parameters(), None)
        if first is None:
            continue
        config = getattr(module, "config", None)
        name = getattr(config, "name_or_path", None) or type(module).__name__
        storages.setdefault(str(name), set()).add(first.untyped_storage().data_ptr())
    return {name: len(pointers) for name, pointers in sorted(storages.items())}

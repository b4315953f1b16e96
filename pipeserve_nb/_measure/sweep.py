"""A grid of servers by loads, measured one after another, as one tidy DataFrame."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from .._live.dashboard import Dashboard
from .._options import Int, check
from .._server.core.config import ServerConfig
from .._server.core.policy import BatchPolicy
from .._server.run.handle import AppHandle, ServerHandle
from .._server.run.serve import serve
from .loads import ClosedLoop, Load, Replay
from .results import LoadResult
from .runner import run_load

if TYPE_CHECKING:
    import pandas as pd

    from .._teaching.seed_policy import SeedPagePolicy  # a type only: the teaching designs sit above the toolkit

__all__ = ["sweep", "Target"]

Target: TypeAlias = "BatchPolicy | SeedPagePolicy | Callable[[], AppHandle]"
"""A policy (served with ``serve(model, policy=...)``) or a callable that starts any server."""


def sweep(
    targets: Mapping[str, Target],
    loads: Sequence[Load],
    *,
    model: Any = None,
    config: ServerConfig | None = None,
    texts: Sequence[str] | None = None,
    in_process: bool = False,
    warmup_requests: int = 16,
    keep: dict[tuple[str, str], LoadResult] | None = None,
    progress: bool = True,
    dashboard: bool = False,
    repeats: int = 1,
) -> pd.DataFrame:
    """Run every load against every target; one row per (target, load) with its summary.

    Each target gets a fresh server (started, warmed up with a short closed loop sent from this
    process, measured, stopped), so runs do not share queues or caches; a policy target is served with
    ``model`` and ``config`` (default ``ServerConfig()``). Pass a dict as ``keep`` to also get
    each run's full ``LoadResult`` keyed by ``(target label, load label)``; ``progress``
    shows a bar for each run longer than a second; ``dashboard`` shows instead one live panel
    per target (its server's numbers across its loads; in a notebook, for pipeserve servers).
    With ``repeats`` above 1 each load runs that many times on the same server and its row (and
    kept result) is the run of median goodput: one short run is noisy, and a real run keeps
    its figures consistent with each other, as a mean of runs would not.

    Columns: ``policy``, ``load``, ``kind``, ``concurrency``, ``rate_rps``, then the
    ``Summary`` fields (``n_<status>`` per status seen).
    """
    import pandas as pd

    check("repeats", repeats, Int())
    records = []
    for label, target in targets.items():
        handle = target() if callable(target) else serve(model, policy=target, config=config, name="sweep")
        with handle:
            if warmup_requests:
                warmup = ClosedLoop(concurrency=4, requests=warmup_requests)  # not measured: no process to start
                run_load(handle, warmup, texts=texts, in_process=True, progress=False)
            step = [0]  # which load runs, for the panel's note
            panel = _panel(handle, label, loads, step) if dashboard else None
            for load in loads:
                step[0] += 1
                runs = [
                    run_load(handle, load, texts=texts, in_process=in_process, progress=progress and panel is None)
                    for _ in range(repeats)
                ]
                result = sorted(runs, key=lambda r: r.summary.goodput_rps)[(len(runs) - 1) // 2]
                if keep is not None:
                    keep[(label, load.describe())] = result
                records.append(
                    {
                        "policy": label,
                        "load": load.describe(),
                        **_shape(load),
                        **result.summary.as_dict(),
                    }
                )
            if panel is not None:
                panel.stop(f"{label}: all {len(loads)} loads ran")
    frame = pd.DataFrame.from_records(records)
    status_columns = sorted(c for c in frame.columns if c.startswith("n_"))
    frame[status_columns] = frame[status_columns].fillna(0).astype(int)
    return frame


def _shape(load: Load) -> dict[str, Any]:
    """A load's kind, and its concurrency or its (mean) rate, as a row's columns."""
    if isinstance(load, ClosedLoop):
        return {"kind": "closed", "concurrency": load.concurrency, "rate_rps": None}
    if isinstance(load, Replay):
        return {"kind": "replay", "concurrency": None, "rate_rps": load.traffic.rate_rps * load.speed}
    return {"kind": "open", "concurrency": None, "rate_rps": load.rate_rps}


def _panel(handle: AppHandle, label: str, loads: Sequence[Load], step: list[int]) -> Dashboard | None:
    """A live panel for a pipeserve server across its loads (an app without ``/stats`` gets none)."""
    if not isinstance(handle, ServerHandle):
        return None
    return Dashboard(
        handle.url,
        name=label,
        token=handle.config.auth_token,
        alive=lambda: handle.running,
        note=lambda: f"sweep: load {max(step[0], 1)} of {len(loads)} ({loads[max(step[0], 1) - 1].describe()})",
        takes_over=False,
    ).show()

"""What a load run produced: per-request rows as a DataFrame, and the summary figures.

Definitions used everywhere (notebooks, benchmark, tests):

- ``wall_s``: from the first intended send to the last answer;
- ``throughput_rps``: answered requests (any HTTP status) per second of ``wall_s``;
- ``goodput_rps``: successful (2xx) answers per second of ``wall_s``;
- ``sending_goodput_rps``: successful answers that arrived while the load was sent (between the
  first and the last intended send) per second of that time: under an overload, the drain after
  the last send runs with nothing left to refuse, faster, and would flatter ``goodput_rps``;
- latency percentiles (nearest rank) are over *successful* requests, from intended send;
- ``lag``: how late a request left after its intended time (open loop only; closed-loop
  requests leave when intended). A run whose generator fell behind says so in ``warnings``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._percentile import percentile
from .loads import Load
from .sender import ROW_FIELDS, Row

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LoadResult", "Summary", "summarize", "LAG_TOLERANCE_S"]

LAG_TOLERANCE_S = 0.010
"""A request that left more than this after its intended time counts as behind schedule."""


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of one run (times in milliseconds, rates per second)."""

    requests: int
    answered: int
    ok: int
    by_status: dict[int, int]
    wall_s: float
    throughput_rps: float
    goodput_rps: float
    sending_goodput_rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_batch_size: float | None
    behind_schedule: int
    max_lag_ms: float

    def as_dict(self) -> dict[str, Any]:
        """Flat values for a DataFrame row (``by_status`` becomes ``n_<status>`` columns)."""
        flat = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "by_status"}
        flat.update({f"n_{status}": n for status, n in sorted(self.by_status.items())})
        return flat


def summarize(rows: Sequence[Row]) -> Summary:
    """The summary figures of ``rows`` (see the module docstring for definitions)."""
    if not rows:
        raise ValueError("no rows to summarize")
    answered = [r for r in rows if r.status != 0]
    ok = [r for r in rows if 200 <= r.status < 300]
    wall_s = max(r.done_s for r in rows) - min(r.intended_s for r in rows)
    latencies_ms = [r.latency_s * 1000 for r in ok]
    sizes = [r.batch_size for r in ok if r.batch_size is not None]
    lags = [r.sent_s - r.intended_s for r in rows]
    first_send, last_send = min(r.intended_s for r in rows), max(r.intended_s for r in rows)
    sending_s = last_send - first_send
    ok_while_sending = sum(r.done_s <= last_send for r in ok)

    def pct(q: float) -> float | None:
        return percentile(latencies_ms, q) if latencies_ms else None

    return Summary(
        requests=len(rows),
        answered=len(answered),
        ok=len(ok),
        by_status=dict(sorted(Counter(r.status for r in rows).items())),
        wall_s=wall_s,
        throughput_rps=len(answered) / wall_s if wall_s > 0 else 0.0,
        goodput_rps=len(ok) / wall_s if wall_s > 0 else 0.0,
        sending_goodput_rps=ok_while_sending / sending_s if sending_s > 0 else 0.0,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=max(latencies_ms) if latencies_ms else None,
        mean_batch_size=sum(sizes) / len(sizes) if sizes else None,
        behind_schedule=sum(lag > LAG_TOLERANCE_S for lag in lags),
        max_lag_ms=max(lags) * 1000,
    )


@dataclass(frozen=True)
class LoadResult:
    """One run: the load it sent, where, every request's row, and the summary."""

    load: Load
    url: str
    rows: list[Row]
    in_process: bool
    generator_cpu_s: float | None = None
    """CPU time the load generator itself spent (its process, or its thread with ``in_process``);
    None where it ran on the caller's event loop. On a small machine it is taken from the server."""
    summary: Summary = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", summarize(self.rows))

    @property
    def warnings(self) -> list[str]:
        """Reasons to distrust this run, in words (empty when there are none)."""
        s = self.summary
        out = []
        if s.behind_schedule:
            out.append(
                f"the generator fell behind its schedule for {s.behind_schedule} of {s.requests} requests "
                f"(up to {s.max_lag_ms:.0f} ms late): it could not send the load asked for"
            )
        if s.answered < s.requests:
            out.append(f"{s.requests - s.answered} requests got no HTTP answer (status 0)")
        return out

    def frame(self) -> pd.DataFrame:
        """Per-request rows: ``ROW_FIELDS`` plus ``latency_ms`` and ``lag_ms``."""
        import pandas as pd

        df = pd.DataFrame([[getattr(r, f) for f in ROW_FIELDS] for r in self.rows], columns=ROW_FIELDS)
        df["latency_ms"] = (df["done_s"] - df["intended_s"]) * 1000
        df["lag_ms"] = (df["sent_s"] - df["intended_s"]) * 1000
        return df

    def _repr_html_(self) -> str:
        from .result_view import result_html

        return result_html(self)

    def __repr__(self) -> str:
        s = self.summary
        lat = f"p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms" if s.p50_ms is not None and s.p99_ms is not None else "-"
        return (
            f"<LoadResult {self.load.describe()}: {s.requests} sent, {s.ok} ok, statuses {s.by_status}, "
            f"{s.goodput_rps:.1f} ok/s, {lat}>"
        )

"""Summary arithmetic on hand-made rows, the DataFrame's columns, plots and the sweep."""

from __future__ import annotations

import io

import pytest

from pipeserve_nb import (
    ClosedLoop,
    LoadResult,
    OpenLoop,
    plot_batch_sizes,
    plot_latency_cdf,
    plot_latency_over_time,
    plot_throughput_latency,
    serve_app,
    sweep,
)
from pipeserve_nb._measure.results import summarize
from pipeserve_nb._measure.sender import Row

from .stub_app import StubServer


def row(i: int, intended: float, sent: float, done: float, status: int = 200, batch: int | None = 1) -> Row:
    return Row(i, intended, sent, done, status, 0.1 if status == 200 else None, batch, 1.0, None)


ROWS = [
    row(0, 0.0, 0.0, 0.010),
    row(1, 0.1, 0.1, 0.130, batch=3),
    row(2, 0.2, 0.25, 0.300),  # left 50 ms late: behind schedule
    row(3, 0.3, 0.3, 0.320, status=503, batch=None),
    row(4, 0.4, 0.4, 1.000, status=0, batch=None),
]


def test_summary_figures_follow_their_definitions() -> None:
    s = summarize(ROWS)
    assert (s.requests, s.answered, s.ok) == (5, 4, 3)
    assert s.by_status == {0: 1, 200: 3, 503: 1}
    assert s.wall_s == pytest.approx(1.0)
    assert s.throughput_rps == pytest.approx(4.0) and s.goodput_rps == pytest.approx(3.0)
    # successful latencies from intended send: 10, 30, 100 ms
    assert (s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms) == pytest.approx((30.0, 100.0, 100.0, 100.0))
    assert s.mean_batch_size == pytest.approx((1 + 3 + 1) / 3)
    assert s.behind_schedule == 1 and s.max_lag_ms == pytest.approx(50.0)
    flat = s.as_dict()
    assert flat["n_200"] == 3 and flat["n_0"] == 1 and "by_status" not in flat
    # sent from 0.0 to 0.4 s; the 200s that arrived by 0.4 s (at 0.010, 0.130, 0.300): 3 over 0.4 s
    assert s.sending_goodput_rps == pytest.approx(3 / 0.4)


def test_goodput_while_sending_leaves_out_what_the_drain_answered() -> None:
    drained = [row(0, 0.0, 0.0, 0.05), row(1, 0.5, 0.5, 0.9), row(2, 1.0, 1.0, 3.0), row(3, 1.0, 1.0, 3.5)]
    s = summarize(drained)
    assert s.goodput_rps == pytest.approx(4 / 3.5)  # the drain after the last send counts here...
    assert s.sending_goodput_rps == pytest.approx(2 / 1.0)  # ...not here: two answers arrived while sending


def test_the_frame_has_one_row_per_request_with_derived_columns() -> None:
    result = LoadResult(OpenLoop(rate_rps=10, requests=5), "http://x", ROWS, in_process=False)
    df = result.frame()
    assert list(df.columns) == [
        "index", "intended_s", "sent_s", "done_s", "status", "queue_wait_ms",
        "batch_size", "inference_ms", "error", "retry_after_s", "latency_ms", "lag_ms",
    ]  # fmt: skip
    assert df.latency_ms.tolist() == pytest.approx([10, 30, 100, 20, 600])
    assert df.lag_ms.tolist() == pytest.approx([0, 0, 50, 0, 0])
    assert any("fell behind its schedule for 1 of 5" in w for w in result.warnings)
    assert "5 sent, 3 ok" in repr(result)


def _png(fig: object) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_sweep_gives_one_tidy_row_per_target_and_load_and_the_plots_draw_it() -> None:
    stubs = {"fast": StubServer(0.002), "slow": StubServer(0.02)}
    targets = {label: (lambda s=s: serve_app(s.app, name="sweep")) for label, s in stubs.items()}
    loads = [ClosedLoop(concurrency=2, requests=10), OpenLoop(rate_rps=40, requests=10)]
    kept: dict[tuple[str, str], LoadResult] = {}
    frame = sweep(targets, loads, warmup_requests=2, keep=kept)
    assert frame.policy.tolist() == ["fast", "fast", "slow", "slow"]
    assert frame.load.tolist() == ["closed c=2", "open 40 rps"] * 2
    assert frame.kind.tolist() == ["closed", "open"] * 2
    assert frame.concurrency.fillna(0).tolist() == [2, 0, 2, 0]
    assert frame.rate_rps.fillna(0).tolist() == [0, 40, 0, 40]
    assert frame.ok.tolist() == [10, 10, 10, 10] and frame.n_200.tolist() == [10, 10, 10, 10]
    slow = frame[frame.policy == "slow"].iloc[0]
    assert slow.p50_ms >= 20  # each answer waited at least the stub's 20 ms of service
    assert stubs["fast"].served == stubs["slow"].served == 22  # warm-up included
    assert set(kept) == {(p, load.describe()) for p in stubs for load in loads}

    figures = [
        plot_latency_cdf({k[0] + " " + k[1]: r for k, r in kept.items()}),
        plot_latency_over_time(kept[("slow", "open 40 rps")]),
        plot_throughput_latency(frame),
        plot_batch_sizes(kept[("fast", "closed c=2")]),
    ]
    assert len(figures[0].axes[0].get_lines()) == 4
    assert len(figures[2].axes[0].get_lines()) == 2
    assert {t.get_text() for t in figures[2].axes[0].texts} == {"c=2", "40/s"}  # each point says its load
    for fig in figures:
        assert fig.axes[0].get_title()  # every plot says what it shows
        assert _png(fig).startswith(b"\x89PNG")


def test_a_sweep_with_repeats_runs_each_load_that_often_and_keeps_one_real_run() -> None:
    stub = StubServer(0.002)
    kept: dict[tuple[str, str], LoadResult] = {}
    loads = [ClosedLoop(concurrency=2, requests=10), OpenLoop(rate_rps=40, requests=10)]
    frame = sweep({"s": lambda: serve_app(stub.app, name="sweep")}, loads, warmup_requests=2, keep=kept, repeats=3)
    assert stub.served == 2 + 3 * 20  # warm-up, then each load three times
    assert len(frame) == 2 and frame.requests.tolist() == [10, 10]  # one row per load: a run, not a sum
    assert [kept[("s", load.describe())].summary.goodput_rps for load in loads] == frame.goodput_rps.tolist()

"""``tune()`` on the real embedder, a small grid and two short loads: one row per setting and load, the best chosen
by the rule it states (checked against the table, not against a speed), the Pareto front non-dominated, the plot
drawn, the best ready for ``serve()``."""

from __future__ import annotations

import pytest

from pipeserve_nb import BatchPolicy, ClosedLoop, InvalidSetting, LoadedModel, Tuning, serve, tune

LOADS = [ClosedLoop(concurrency=2, requests=24), ClosedLoop(concurrency=8, requests=48)]
GRID = {"max_batch_size": (1, 16), "max_wait_s": (0.0, 0.002)}


@pytest.fixture(scope="module")
def tuning(embedder: LoadedModel) -> Tuning:
    return tune(embedder, LOADS, in_process=True, progress=False, **GRID)  # type: ignore[arg-type]


def test_every_setting_is_measured_at_every_load_and_every_request_answered(tuning: Tuning) -> None:
    table = tuning.table
    assert len(table) == 4 * 2 and set(tuning.policies) == set(table.policy)
    assert list(table.columns[:5]) == ["policy", "max_batch_size", "max_wait_s", "max_batch_tokens", "wait_for_returns"]
    for _, row in table.iterrows():
        policy = tuning.policies[row.policy]
        assert (policy.max_batch_size, policy.max_wait_s) == (row.max_batch_size, row.max_wait_s)
    statuses = table[["policy", "load", "requests", "answered", *table.filter(like="n_").columns]]
    assert (table.answered == table.requests).all(), statuses  # one answer each
    assert table.all_answered.all() and (table.requests == table.ok).all(), statuses
    no_batching = table[table.max_batch_size == 1]
    assert (no_batching.mean_batch_size == 1.0).all()  # the settings were served as labelled
    for _, rows in table.groupby("load"):
        assert rows.score.max() == 1.0 and (rows.score > 0).all()  # each load's best setting scores 1


def test_the_best_is_the_highest_mean_score_among_those_that_meet_the_target(
    embedder: LoadedModel, tuning: Tuning
) -> None:
    each = tuning.table.groupby("policy").agg(worst=("p99_ms", "max"), score=("score", "mean"))
    assert tuning.best_label == each.score.idxmax() and tuning.best == tuning.policies[tuning.best_label]
    target = float(each.worst.median())  # about half the settings meet it
    bounded = Tuning(tuning.table, tuning.policies, None, None, target)
    eligible = each[each.worst <= target]
    chosen = bounded.summary()
    assert chosen.index[0] == eligible.score.idxmax() and chosen.meets_target.sum() == len(eligible)
    drawn = [t.get_text() for t in bounded.plot().axes[0].get_legend().get_texts()]
    assert drawn == ["a setting", "Pareto front", "p99 target"]  # no best marked: that table was not chosen from
    with serve(embedder, policy=tuning.best, name="tuned") as server:  # ready to pass to serve()
        assert server.policy == tuning.best and len(server.query("tuned")) == 384


def test_a_target_no_setting_meets_chooses_none_and_says_so(embedder: LoadedModel) -> None:
    tight = tune(
        embedder,
        LOADS[:1],
        p99_target_ms=0.001,
        max_batch_size=(1,),
        max_wait_s=(0.0,),
        in_process=True,
        progress=False,
    )
    assert tight.best is None and tight.best_label is None
    assert "no setting answered every request with p99 within the target (0.001 ms)" in tight._repr_html_()
    with pytest.raises(InvalidSetting, match="p99_target_ms must be a finite number > 0"):
        tune(embedder, LOADS, p99_target_ms=0)


def test_the_pareto_front_holds_exactly_the_settings_no_other_beats_on_both(tuning: Tuning) -> None:
    for load in tuning.table.load.unique():
        rows = tuning.table[tuning.table.load == load]
        front = set(tuning.pareto(load).policy)
        for _, row in rows.iterrows():
            beaten = any(
                o.goodput_rps >= row.goodput_rps
                and o.p99_ms <= row.p99_ms
                and (o.goodput_rps > row.goodput_rps or o.p99_ms < row.p99_ms)
                for _, o in rows.iterrows()
            )
            assert (row.policy in front) == (not beaten)
        assert front  # a finite set always has a front


def test_the_plot_has_a_titled_panel_per_load_with_every_setting_and_the_best_marked(tuning: Tuning) -> None:
    figure = tuning.plot()
    assert figure.get_suptitle().startswith("tune():")
    assert [ax.get_title() for ax in figure.axes] == [f"{load.describe()}: goodput against p99" for load in LOADS]
    for ax in figure.axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[:3] == ["a setting", "Pareto front", "best"]
        assert len(ax.collections[0].get_offsets()) == 4  # one point per setting
    assert isinstance(tuning.best, BatchPolicy)

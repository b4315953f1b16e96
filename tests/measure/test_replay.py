"""Traffic a running server records (``server.recording()``), sent again (``Replay``), and tuned on (``tune``)."""

from __future__ import annotations

import httpx
import pytest

from pipeserve_nb import (
    BatchPolicy,
    InvalidSetting,
    LoadedModel,
    RecordedTraffic,
    Replay,
    run_load,
    serve,
    tune,
)

RAW = ["a short text", "a somewhat longer text about the weather in spring", "three"]
BATCHED = {"inputs": ["first of two", "second of two"], "parameters": {"truncation": True}}


def _send_the_mix(url: str) -> None:
    """Three raw texts, one JSON request of two inputs with a parameter, and two that are refused before
    admission (a malformed body, an unknown parameter): only the first four are admitted."""
    with httpx.Client(trust_env=False, timeout=30) as client:
        for text in RAW:
            assert client.post(url, content=text.encode()).status_code == 200
        assert client.post(url, json=BATCHED).status_code == 200
        malformed = client.post(url, content=b'{"inputs": [', headers={"content-type": "application/json"})
        assert malformed.status_code == 400
        assert client.post(url, json={"inputs": ["x"], "parameters": {"nonsense": 1}}).status_code == 400


def test_a_recording_keeps_what_was_admitted_in_order_and_nothing_outside_it(embedder: LoadedModel) -> None:
    with serve(embedder, name="recorded") as server:
        server.query("before the recording")
        with server.recording() as rec:
            _send_the_mix(server.url)
            during = rec.traffic  # a snapshot while it records
        server.query("after the recording")
        traffic = rec.traffic
    assert isinstance(traffic, RecordedTraffic) and traffic.model == server.models[0] == "minilm"
    assert traffic.inputs == ((RAW[0],), (RAW[1],), (RAW[2],), tuple(BATCHED["inputs"]))
    assert traffic.parameters == ({}, {}, {}, {"truncation": True})
    assert during.inputs == traffic.inputs  # nothing was admitted after the snapshot
    arrivals = traffic.arrivals_s
    assert list(arrivals) == sorted(arrivals) and arrivals[0] >= 0 and arrivals[-1] <= traffic.duration_s
    assert traffic.dropped == 0 and len(traffic) == 4 and traffic.rate_rps == 4 / traffic.duration_s


def test_a_recording_keeps_at_most_its_limit_and_counts_the_rest(embedder: LoadedModel) -> None:
    with serve(embedder, name="recorded") as server:
        with server.recording(limit=2) as rec:
            _send_the_mix(server.url)
        with pytest.raises(InvalidSetting, match="already being recorded"), server.recording(), server.recording():
            pass
        with pytest.raises(InvalidSetting, match="holds"), server.recording(model="nope"):
            pass
        with pytest.raises(InvalidSetting, match="at least one"), server.recording(limit=0):
            pass
    assert rec.traffic.inputs == ((RAW[0],), (RAW[1],)) and rec.traffic.dropped == 2


def test_a_replay_sends_each_recorded_request_again_with_its_inputs_and_parameters(embedder: LoadedModel) -> None:
    with serve(embedder, name="recorded") as server:
        with server.recording() as rec:
            _send_the_mix(server.url)
        recorded = rec.traffic
        with server.recording() as again:
            result = run_load(server, Replay(recorded, speed=4.0), progress=False)
    assert [row.status for row in result.rows] == [200, 200, 200, 200]  # every request answered once
    assert result.summary.mean_batch_size is not None
    replayed = again.traffic
    assert replayed.inputs == recorded.inputs and replayed.parameters == recorded.parameters  # the same requests
    # sent on the recorded schedule at 4x: each intended send time is the recorded arrival over 4
    assert [row.intended_s for row in result.rows] == [a / 4.0 for a in recorded.arrivals_s]
    assert Replay(recorded, speed=4.0).describe() == "replay 4 req x4"


def test_a_replay_refuses_what_it_cannot_send(embedder: LoadedModel) -> None:
    with serve(embedder, name="recorded") as server:
        with server.recording() as rec:
            pass
        with pytest.raises(InvalidSetting, match="nothing was recorded"):
            Replay(rec.traffic)
        with server.recording() as rec:
            server.query("one")
        with pytest.raises(InvalidSetting, match="speed"):
            Replay(rec.traffic, speed=0)
        with pytest.raises(InvalidSetting, match="texts= does not apply"):
            run_load(server, Replay(rec.traffic), texts=["other"], progress=False)
    with pytest.raises(InvalidSetting, match="recorded"):
        Replay(["not", "traffic"])  # type: ignore[arg-type]


def test_tune_measures_every_setting_on_the_recorded_traffic(embedder: LoadedModel) -> None:
    with serve(embedder, name="recorded") as server, server.recording() as rec:
        _send_the_mix(server.url)
    loads = [Replay(rec.traffic, speed=2.0), Replay(rec.traffic, speed=8.0)]
    tuning = tune(embedder, loads, max_batch_size=(1, 8), max_wait_s=(0.0,), in_process=True, progress=False)
    table = tuning.table
    assert sorted(table.load.unique()) == ["replay 4 req x2", "replay 4 req x8"]
    assert set(table.kind) == {"replay"} and (table.requests == 4).all() and table.all_answered.all()
    assert table.rate_rps.tolist() == pytest.approx([rec.traffic.rate_rps * s for _ in (1, 8) for s in (2.0, 8.0)])
    assert isinstance(tuning.best, BatchPolicy)  # no target: the best of all, ready for serve()

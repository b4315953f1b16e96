"""A lesson's findings: an effect the run could not show is said so, and no conclusion is drawn from it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeserve_nb import Findings


def test_an_unmet_effect_is_said_at_once_and_in_the_conclusion(capsys: pytest.CaptureFixture[str]) -> None:
    findings = Findings("04")
    findings["refused"] = 0
    findings.require("fast 503s", findings["refused"] > 0, failed="the server refused nothing")
    assert not findings.holds("fast 503s")
    said = capsys.readouterr().out
    assert said.startswith("This run could not show fast 503s: the server refused nothing. Other work")
    drawn = []
    findings.conclude("fast 503s", lambda: drawn.append(1) or "never printed")
    out = capsys.readouterr().out
    assert drawn == [] and "never printed" not in out  # the line is not even built from the missing numbers
    assert out == (
        "- This run did not show fast 503s (the server refused nothing), so there is no conclusion about it.\n"
    )


def test_a_shown_effect_prints_its_conclusion_and_a_later_run_can_show_it(capsys: pytest.CaptureFixture[str]) -> None:
    findings = Findings("02")
    findings.require("an effect", False, failed="not this time")
    findings.require("an effect", True, failed="unused")
    assert findings.holds("an effect")
    capsys.readouterr()
    findings.conclude("an effect", lambda: "- it showed")
    findings.conclude("an effect", "- a plain line too")
    assert capsys.readouterr().out == "- it showed\n- a plain line too\n"
    assert findings.unmet == {}  # the re-run (a cell run again) showed it


def test_a_conclusion_without_its_check_is_an_error() -> None:
    with pytest.raises(KeyError, match="no require"):
        Findings("00").conclude("something", "- a claim nobody checked")


def test_the_record_is_json_and_the_last_findings_made_are_the_ones_recorded() -> None:
    findings = Findings("03")
    frame = pd.DataFrame({"ms": [1.5, 2.5]})
    findings.update(
        median=frame.ms.median(), count=np.int64(3), ok=np.bool_(True), waits={1: np.float32(0.5)}, pair=(1, 2)
    )
    findings.require("a trap", True, failed="unused")
    record = Findings.recorded()
    assert record is not None and json.loads(json.dumps(record)) == record
    assert record["values"] == {"median": 2.0, "count": 3, "ok": True, "waits": {"1": 0.5}, "pair": [1, 2]}
    assert record["lesson"] == "03" and record["shown"] == {"a trap": True} and record["unmet"] == {}

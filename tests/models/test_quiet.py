"""Loading a model draws no "Loading weights" bar, puts transformers' setting back, and says
in one line of its own when a load is slow."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from huggingface_hub import utils as hub
from transformers.utils import logging

from pipeserve_nb import load_model, serve
from pipeserve_nb._models.quiet import quiet_loading


def test_loading_draws_no_bar_and_restores_the_setting(tiny_fill_mask: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert logging.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    load_model(str(tiny_fill_mask), task="fill-mask")
    with serve(str(tiny_fill_mask), task="fill-mask", name="quiet"):
        pass
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "pipeserve: loading" not in err  # a fast load says nothing
    assert logging.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    logging.disable_progress_bar()  # a user's own choice is kept too
    try:
        load_model(str(tiny_fill_mask), task="fill-mask")
        assert not logging.is_progress_bar_enabled()
    finally:
        logging.enable_progress_bar()


def test_bars_are_off_while_loading_but_the_hubs_download_bars_stay_on() -> None:
    with quiet_loading("a model"):
        assert not logging.is_progress_bar_enabled()
        assert not hub.are_progress_bars_disabled()  # a download would still show its progress
    assert logging.is_progress_bar_enabled()


class _Lines(io.StringIO):
    """A stream that signals each line written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        self.wrote.set()
        return n


def test_a_slow_load_says_so_in_one_line_and_how_long_it_took() -> None:
    out = _Lines()
    with quiet_loading("the big model", notice_after_s=0.0, out=out):
        assert out.wrote.wait(10)  # the load is still running when it says so
        assert out.getvalue() == "pipeserve: loading the big model ...\n"
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("pipeserve: loaded the big model in ")
    assert lines[1].endswith(" s")


def test_the_lines_go_to_standard_output_not_the_error_stream(capsys: pytest.CaptureFixture[str]) -> None:
    with quiet_loading("the big model", notice_after_s=0.0):
        pass  # the notice's timer has been joined when the block ends
    captured = capsys.readouterr()
    assert "pipeserve: loading the big model" in captured.out and "pipeserve: loaded" in captured.out
    assert captured.err == ""  # a notebook draws stderr as an error box

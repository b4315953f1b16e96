"""The examples in the docstrings run, and say what they print.

Examples that need nothing run as they are (the fast tier). Examples that need a live server are marked
``+SKIP``, so that a plain doctest run does not start servers; the full gate runs them for real, with the
``+SKIP`` taken off and a default server as ``server`` (the one that starts a Ray cluster in the Ray group).
"""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeserve_nb

PACKAGE = Path(pipeserve_nb.__file__).parent
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
    for p in PACKAGE.rglob("*.py")
    if ">>> " in p.read_text() and p.name != "__main__.py"
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _source(module: str) -> str:
    return (PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text()


def _examples(module: str, live: bool) -> list[doctest.DocTest]:
    """The module's doctests; with ``live``, only those that need a server, their ``+SKIP`` taken off."""
    finder = doctest.DocTestFinder()
    found = [t for t in finder.find(importlib.import_module(module)) if t.examples]
    if not live:
        return found
    live_tests = []
    for test in found:
        skipped = [e for e in test.examples if e.options.get(doctest.SKIP)]
        if skipped:
            for example in test.examples:
                example.options.pop(doctest.SKIP, None)
            live_tests.append(test)
    return live_tests


def _run(tests: list[doctest.DocTest], globs: dict[str, object]) -> tuple[int, int, str]:
    """``(failed, attempted, report)`` of running ``tests`` with ``globs`` added to their own."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        test.globs.update(globs)
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    return results.failed, results.attempted, "".join(report)


@pytest.mark.parametrize("module", MODULES)
def test_the_examples_that_need_nothing_run_and_print_what_they_say(module: str) -> None:
    failed, _, report = _run(_examples(module, live=False), {})
    assert failed == 0, report


def test_some_examples_run_in_the_fast_tier() -> None:
    attempted = sum(_run(_examples(m, live=False), {})[1] for m in MODULES)
    assert attempted >= 5  # ServerConfig, BatchPolicy and CallCost's examples, at least


@pytest.fixture
def server() -> Iterator[pipeserve_nb.ServerHandle]:
    with pipeserve_nb.serve() as handle:
        yield handle


LIVE = [m for m in MODULES if "+SKIP" in _source(m) and not m.endswith("_ray.serve")]
"""The modules with examples that need a server (the Ray one runs on a cluster in ``tests/ray/test_on_ray.py``)."""


@pytest.mark.gate
@pytest.mark.parametrize("module", LIVE)
def test_the_examples_that_need_a_server_run_against_a_real_one(module: str, server: pipeserve_nb.ServerHandle) -> None:
    tests = _examples(module, live=True)
    failed, _, report = _run(tests, {"server": server, **vars(pipeserve_nb)})
    assert failed == 0, report

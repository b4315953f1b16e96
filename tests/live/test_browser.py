"""The live panel as a reader sees it: a real JupyterLab 4 (and Notebook 7) server, a notebook
opened in headless Chromium, its cells run from the page; the panel's numbers change while a
load runs and end agreeing with ``/stats``. A screenshot of each is saved under ``build/browser/``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them
the test is skipped, except under ``CI``, where it fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .browser import FRONTENDS, KERNEL_READY, NEEDS_CHROMIUM, SCREENSHOTS, chromium, jupyter, outputs, wait_until

pytestmark = [pytest.mark.gate, pytest.mark.timeout(300), NEEDS_CHROMIUM]

CELLS = [
    "import pipeserve_nb as p\nserver = p.serve(name='browser-test')",
    "server.dashboard()",
    "result = p.run_load(server, p.ClosedLoop(concurrency=8, duration_s=8), progress=False)\nresult.summary.ok",
    "import json\nprint('STATS=' + json.dumps(server.stats()['requests_by_status']))",
]


@pytest.fixture(params=list(FRONTENDS))
def frontend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab 4 or Notebook 7 server on a free port, serving ``tmp_path``: ``(notebook url, root)``."""
    with jupyter(request.param, tmp_path) as server:
        yield server.notebook_url("live.ipynb"), tmp_path


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def panel_numbers(driver: Any) -> dict[str, str]:
    """The numbers of the (last) live panel on the page, by ``data-metric``."""
    numbers: dict[str, str] = driver.execute_script(
        """const panels = document.querySelectorAll('.pipeserve-dashboard');
        if (!panels.length) return {};
        const last = panels[panels.length - 1], found = {live: last.dataset.live};
        last.querySelectorAll('[data-metric]').forEach(e => found[e.dataset.metric] = e.textContent);
        return found;"""
    )
    return numbers


def test_the_panel_follows_a_load_in_the_browser_and_ends_agreeing_with_stats(
    frontend: tuple[str, Path], browser: Any
) -> None:
    url, root = frontend
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "live.ipynb")

    browser.get(url)
    wait_until(browser, KERNEL_READY, timeout_s=120)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    seen: list[int] = []
    deadline = time.monotonic() + 180
    while "STATS=" not in outputs(browser):
        numbers = panel_numbers(browser)
        if numbers.get("status_200", "").isdigit() and (not seen or int(numbers["status_200"]) != seen[-1]):
            seen.append(int(numbers["status_200"]))
        assert time.monotonic() < deadline, f"the cells did not finish; the page shows: {numbers}"
        time.sleep(0.1)
    stats = json.loads(outputs(browser).split("STATS=", 1)[1].splitlines()[0])

    assert len(seen) >= 3, f"the panel showed only {seen} while the load ran"  # it updated during the load
    assert seen == sorted(seen) and seen[-1] > seen[0]
    wait_until(
        browser,
        f"return (document.querySelector('.pipeserve-dashboard [data-metric=status_200]') || {{}})"
        f".textContent == '{stats['200']}'",
        timeout_s=10,
    )  # the next update shows what /stats says
    final = panel_numbers(browser)
    assert final["live"] == "yes" and final["state"] == "running"
    assert final["status_200"] == str(stats["200"]) and final["status_503"] == "0"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = "notebook7" if "/notebooks/" in url else "jupyterlab"
    browser.find_element("css selector", ".pipeserve-dashboard").screenshot(str(SCREENSHOTS / f"{name}.png"))

    browser.execute_script(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code: 'server.stop()'})"
    )
    wait_until(browser, "return document.querySelector('.pipeserve-dashboard').dataset.live == 'no'", timeout_s=20)
    assert panel_numbers(browser)["status_200"] == str(stats["200"])  # the final state keeps the numbers

"""The live panel as a reader sees it: a real JupyterLab 4 (and Notebook 7) server, a notebook
opened in headless Chromium, its cells run from the page; the panel's numbers change while a
load runs and end agreeing with ``/stats``. A screenshot of each is saved under ``build/browser/``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them
the test is skipped, except under ``CI``, where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from ..helpers import ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.gate,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        (CHROMIUM is None or DRIVER is None) and not os.environ.get("CI"),
        reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)",
    ),
]
SCREENSHOTS = ROOT / "build" / "browser"

CELLS = [
    "import pipeserve_nb as p\nserver = p.serve(name='browser-test')",
    "server.dashboard()",
    "result = p.run_load(server, p.ClosedLoop(concurrency=8, duration_s=8), progress=False)\nresult.summary.ok",
    "import json\nprint('STATS=' + json.dumps(server.stats()['requests_by_status']))",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


FRONTENDS = {
    # name: (module to run, the app's option that exposes it to scripts, the notebook's page)
    "jupyterlab": ("jupyterlab", "--LabApp.expose_app_in_browser=True", "lab/tree"),
    "notebook7": ("notebook", "--JupyterNotebookApp.expose_app_in_browser=True", "notebooks"),
}


@pytest.fixture(params=list(FRONTENDS))
def frontend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab 4 or Notebook 7 server on a free port, serving ``tmp_path``: ``(notebook url, root)``."""
    module, expose, page = FRONTENDS[request.param]
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter")}
    env.pop("CI", None)  # the notebook's workload, not the test suite's switch
    cmd = [
        *(sys.executable, "-m", module, "--no-browser", "--ip=127.0.0.1", f"--port={port}"),
        *(f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", expose),
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{module} did not start in time"
            time.sleep(0.2)
        yield f"{base}/{page}/live.ipynb?token={token}", tmp_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER or "chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


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
    wait_until(
        browser,
        "return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus == 'connected')",
        timeout_s=120,
    )
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


def outputs(driver: Any) -> str:
    """The text of every cell output on the page (not the code, which contains the markers too)."""
    text: str = driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.innerText).join('\\n')"
    )
    return text


def wait_until(driver: Any, script: str, timeout_s: float) -> None:
    """Poll a condition in the page (the browser announces nothing the test can wait on)."""
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(script):
        assert time.monotonic() < deadline, f"not true in {timeout_s} s: {script}"
        time.sleep(0.1)

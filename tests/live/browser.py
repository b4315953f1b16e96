"""What the browser tests share: Debian's Chromium driven through its WebDriver, a real Jupyter server
(JupyterLab 4 or Notebook 7) on a free port, and waiting on a condition in the page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them the tests
that use these are skipped, except under ``CI``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..helpers import ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NEEDS_CHROMIUM = pytest.mark.skipif(
    (CHROMIUM is None or DRIVER is None) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)",
)
SCREENSHOTS = ROOT / "build" / "browser"

FRONTENDS = {
    # name: (module to run, the app's option that exposes it to scripts, the notebook's page)
    "jupyterlab": ("jupyterlab", "--LabApp.expose_app_in_browser=True", "lab/tree"),
    "notebook7": ("notebook", "--JupyterNotebookApp.expose_app_in_browser=True", "notebooks"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Jupyter:
    """A running Jupyter server: its origin (``http://127.0.0.1:port``), base URL path, token and root."""

    origin: str
    base_url: str
    token: str
    root: Path
    page: str

    def notebook_url(self, name: str) -> str:
        """The page of notebook ``name`` (in ``root``), logged in by the token."""
        return f"{self.origin}{self.base_url}{self.page}/{name}?token={self.token}"


@contextlib.contextmanager
def jupyter(
    frontend: str, root: Path, *, base_url: str = "/", env: Mapping[str, str] = {}, args: Sequence[str] = ()
) -> Iterator[Jupyter]:
    """A JupyterLab 4 or Notebook 7 server on a free port serving ``root``, with ``env`` added to its
    environment (its kernels inherit it), until the block ends."""
    module, expose, page = FRONTENDS[frontend]
    port, token = free_port(), secrets.token_hex(16)
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), **env}
    environ.pop("CI", None)  # the notebook's workload, not the test suite's switch
    cmd = [
        *(sys.executable, "-m", module, "--no-browser", "--ip=127.0.0.1", f"--port={port}"),
        *(f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", f"--ServerApp.base_url={base_url}"),
        *(expose, *args),
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log_path = root / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(cmd, env=environ, stdout=log, stderr=subprocess.STDOUT)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                status = httpx.get(f"{origin}{base_url}api/status", params={"token": token}, timeout=2).status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{module} did not start in time"
            time.sleep(0.2)
        yield Jupyter(origin, base_url, token, root, page)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextlib.contextmanager
def chromium(width: int = 1300, height: int = 1400) -> Iterator[Any]:
    """Headless Chromium through its WebDriver, until the block ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER or "chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


KERNEL_READY = (
    "return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget"
    " && window.jupyterapp.shell.currentWidget.sessionContext"
    " && window.jupyterapp.shell.currentWidget.sessionContext.session"
    " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
    " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus == 'connected')"
)
"""True once the notebook open in the page has a connected kernel."""


def run_in_kernel(driver: Any, code: str) -> None:
    """Run ``code`` in the kernel of the notebook open in the page (no output shown)."""
    driver.execute_script(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code: arguments[0]})",
        code,
    )


def outputs(driver: Any) -> str:
    """The text of every cell output on the page (not the code, which contains the markers too)."""
    text: str = driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.innerText).join('\\n')"
    )
    return text


def wait_until(driver: Any, script: str, timeout_s: float, *args: Any) -> Any:
    """Poll a condition in the page (the browser announces nothing the test can wait on); its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := driver.execute_script(script, *args)):
        assert time.monotonic() < deadline, f"not true in {timeout_s} s: {script}"
        time.sleep(0.1)
    return value


ENDED = "return ['done', 'error', 'stopped'].includes(document.getElementById('answer').dataset.state)"
"""True once the try-it page's answer has ended (``data-state`` of ``#answer``)."""


def ask(browser: Any, model: str, text: str, max_tokens: int | None = None, wait: bool = True) -> dict[str, str]:
    """On the try-it page: choose ``model``, run ``text``, wait for the answer to end (unless not ``wait``);
    the answer's ``data-*`` record (``state``, ``kind``, ``size``, ``pieces``, ``reads``, ...)."""
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "model")).select_by_value(model)
    if max_tokens is not None:  # shown for a chat model
        browser.find_element("id", "max-tokens").clear()
        browser.find_element("id", "max-tokens").send_keys(str(max_tokens))
    box = browser.find_element("id", "text")
    box.clear()
    box.send_keys(text)
    browser.execute_script("document.getElementById('answer').dataset.state = 'idle'")  # not the last answer's end
    browser.find_element("id", "run").click()
    if wait:
        wait_until(browser, ENDED, timeout_s=120)
    answer: dict[str, str] = browser.execute_script(
        "return Object.assign({}, document.getElementById('answer').dataset)"
    )
    return answer

"""Reaching a notebook's server from the browser as on a JupyterHub: a real JupyterLab at the base URL a hub
gives a user (``/user/alice/``) with jupyter-server-proxy, ``JUPYTERHUB_SERVICE_PREFIX`` set as a hub sets
it, a notebook run from the page in headless Chromium.

The link printed under ``serve()`` is the proxy path; opened in the same browser it answers ``/health``
through the Jupyter server; the try-it page answers an embedding query and streams a chat answer through the
proxy in pieces; ``server.open()`` shows the page in the cell; a client like ``curl`` streams through the
proxy. Screenshots go to ``build/browser/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import nbformat
import pytest
from selenium.webdriver.common.keys import Keys

from .browser import (
    KERNEL_READY,
    NEEDS_CHROMIUM,
    SCREENSHOTS,
    ask,
    chromium,
    jupyter,
    outputs,
    run_in_kernel,
    wait_until,
)

pytestmark = [pytest.mark.gate, pytest.mark.timeout(420), NEEDS_CHROMIUM]

PREFIX = "/user/alice/"
TOKEN = "the-servers-own-bearer-token"
CELLS = [
    "import pipeserve_nb as p\n"
    f"config = p.ServerConfig(auth_token={TOKEN!r})\n"
    "server = p.serve('minilm', 'smollm2', config=config, name='through-proxy')\nserver",
    "print('BROWSER_URL=' + server.browser_url + ' VIA=' + server.browser_url.via + ' PORT=' + str(server.port))",
    "server.open(height=430, include_token=True)",
]
bearer = {"Authorization": f"Bearer {TOKEN}"}
STORY = "Write a long story about a lighthouse keeper."


def test_the_browser_link_opens_the_page_through_jupyter_server_proxy_and_streams(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "reach.ipynb")
    hub = {"JUPYTERHUB_SERVICE_PREFIX": PREFIX}
    with jupyter("jupyterlab", tmp_path, base_url=PREFIX, env=hub) as lab, chromium(1200, 1500) as browser:
        browser.get(lab.notebook_url("reach.ipynb"))
        wait_until(browser, KERNEL_READY, timeout_s=120)
        browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        wait_until(browser, "return document.querySelector('iframe.pipeserve-page')", timeout_s=240)
        printed = re.search(r"BROWSER_URL=(\S+) VIA=(\S+) PORT=(\d+)", outputs(browser))
        assert printed is not None, outputs(browser)
        url, via, port = printed.groups()
        assert (url, via) == (f"{PREFIX}proxy/{port}/", "jupyterhub")

        # the link under the handle is that path on the Jupyter server's own address
        link = browser.execute_script("return document.querySelector('.pipeserve-browser-link a').getAttribute('href')")
        assert link == url
        # server.open(): the page in the cell, its models listed through the proxy
        frame = browser.find_element("css selector", "iframe.pipeserve-page")
        assert frame.get_attribute("src") == f"{lab.origin}{url}#token={TOKEN}"  # the token, as asked
        browser.execute_script("arguments[0].scrollIntoView()", frame)
        browser.switch_to.frame(frame)
        wait_until(browser, "return document.querySelectorAll('#model option').length == 2", timeout_s=30)
        browser.switch_to.default_content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        cells = browser.find_elements("css selector", ".jp-Cell")
        cells[0].screenshot(str(SCREENSHOTS / "handle-link.png"))
        cells[2].screenshot(str(SCREENSHOTS / "open-in-cell.png"))

        # the link, opened in a tab of the same browser: /health, then the page answers through the proxy
        browser.switch_to.new_window("tab")
        browser.get(lab.origin + url + "health")  # opened bare: the server's own 401 comes back through Jupyter
        assert json.loads(browser.find_element("tag name", "body").text)["error"]["type"] == "Unauthorized"
        browser.get(lab.origin + url)  # a new tab: the page asks for the server's token, sent through the proxy
        wait_until(browser, "return !document.getElementById('token-row').hidden", timeout_s=30)
        browser.find_element("id", "token").send_keys(TOKEN + Keys.TAB)
        wait_until(browser, "return document.querySelectorAll('#model option').length == 2", timeout_s=30)
        wait_until(browser, "return document.getElementById('health').dataset.ok == 'yes'", timeout_s=30)
        health = httpx.get(lab.origin + url + "health", params={"token": lab.token}, headers=bearer, trust_env=False)
        assert health.json()["status"] == "ok" and set(health.json()["models"]) == {"minilm", "smollm2"}
        embedding = ask(browser, "minilm", "a cat sat on the mat")
        assert embedding["state"] == "done" and embedding["kind"] == "vector" and embedding["size"] == "384"
        # a story, greedy (the page's default): an answer longer than its 40-token budget in either type the model
        # may run in (a short answer would leave too few pieces to tell streamed from buffered)
        chat = ask(browser, "smollm2", STORY, max_tokens=40)
        assert chat["state"] == "done", chat
        # streamed through the proxy: the text came in many reads, not in one at the end
        assert int(chat["pieces"]) >= 10 and int(chat["reads"]) >= 5, chat
        assert browser.execute_script("return document.querySelector('#answer .chat').textContent.length") > 0
        browser.save_screenshot(str(SCREENSHOTS / "page-through-proxy.png"))

        # a client outside the browser (curl's way) streams through the proxy too, with Jupyter's token
        pieces = stream_through(lab.origin + url, lab.token)
        assert len(pieces) >= 5, pieces

        browser.switch_to.window(browser.window_handles[0])
        run_in_kernel(browser, "server.stop()")


def stream_through(url: str, jupyter_token: str) -> list[bytes]:
    """A streamed chat answer read through the proxy as ``curl -N`` reads it: the pieces as they came. Jupyter's
    token in the query, the server's in the Authorization header."""
    body = {"model": "smollm2", "messages": [{"role": "user", "content": STORY}], "max_tokens": 24, "temperature": 0}
    headers = {**bearer, "Accept": "text/event-stream"}  # else the proxy hands on the whole answer at its end
    with (
        httpx.Client(trust_env=False, timeout=60, params={"token": jupyter_token}) as client,
        client.stream("POST", url + "v1/chat/completions", json={**body, "stream": True}, headers=headers) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [chunk for chunk in r.iter_raw() if b"delta" in chunk]

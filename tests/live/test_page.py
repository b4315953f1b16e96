"""The try-it page (``GET /``) in headless Chromium against a real server of four models, one per view: an
embedding, a fill-mask model, a classifier and the chat model; the server has a token, which the page asks
for. A bad input is shown as the server's error, and the Stop button ends a streamed answer on the server.
Screenshots go to ``build/browser/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys

from pipeserve_nb import LoadedModel, ServerConfig, load_model, serve

from ..helpers import wait_for
from .browser import ENDED, NEEDS_CHROMIUM, SCREENSHOTS, ask, chromium, wait_until

pytestmark = [pytest.mark.gate, pytest.mark.timeout(300), NEEDS_CHROMIUM]

TOKEN = "a-token-the-page-asks-for"


def test_the_page_asks_for_the_token_and_draws_each_task_and_stops_a_stream(
    embedder: LoadedModel, smollm2: LoadedModel, tiny_fill_mask: Path, tiny_classifier: Path
) -> None:
    models = {
        "minilm": embedder,
        "mask": load_model(str(tiny_fill_mask), task="fill-mask"),
        "mood": load_model(str(tiny_classifier), task="text-classification"),
        "smollm2": smollm2,
    }
    config = ServerConfig(auth_token=TOKEN)
    with serve(models, config=config, name="page") as server, chromium(1000, 900) as browser:
        browser.get(server.browser_url)  # the page itself needs no token; its first call gets 401
        wait_until(browser, "return !document.getElementById('token-row').hidden", timeout_s=30)
        assert browser.execute_script("return document.querySelectorAll('#model option').length") == 0
        browser.find_element("id", "token").send_keys(TOKEN + Keys.TAB)
        wait_until(browser, "return document.querySelectorAll('#model option').length == 4", timeout_s=30)
        assert browser.execute_script("return document.getElementById('token-row').hidden")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

        vector = ask(browser, "minilm", "a cat sat on the mat")
        assert (vector["state"], vector["kind"], vector["size"]) == ("done", "vector", "384")
        tokens = ask(browser, "mask", "hello [MASK] world")
        assert (tokens["state"], tokens["kind"], tokens["size"]) == ("done", "tokens", "5")  # the pipeline's top 5
        browser.save_screenshot(str(SCREENSHOTS / "page-fill-mask.png"))
        labels = ask(browser, "mood", "the movie was good")
        assert (labels["state"], labels["kind"], labels["size"]) == ("done", "labels", "3")  # every label, scored
        browser.save_screenshot(str(SCREENSHOTS / "page-classification.png"))

        refused = ask(browser, "mask", "no mask token here")  # the server's 400, shown; the page goes on
        assert refused["state"] == "error"
        shown = browser.find_element("css selector", "#answer .error").text
        assert shown.startswith("HTTP 400 InvalidInput:"), shown

        # a long answer, stopped from the page: the server sees its client leave and ends the generation
        ask(browser, "smollm2", "Write a long story about a lighthouse.", max_tokens=400, wait=False)
        wait_until(browser, "return Number(document.getElementById('answer').dataset.pieces || 0) >= 3", 60)
        browser.find_element("id", "stop").click()
        wait_until(browser, ENDED, timeout_s=30)
        assert browser.execute_script("return document.getElementById('answer').dataset.state") == "stopped"

        def ended() -> dict[str, int]:
            generation: dict[str, dict[str, int]] = server.stats()["models"]["smollm2"]["generation"]
            return generation["ended"]

        wait_for(lambda: ended()["client_gone"] == 1, timeout_s=30)  # ended by the client's leaving, not at 400
        assert ended()["length"] == 0 and ended()["stop"] == 0

"""``GET /``: the try-it page as the server sends it. It needs no token while every other route does, it is
not counted as a request, it fetches nothing from elsewhere and every URL it calls is relative (so it works
under a proxy's path prefix); ``POST /`` still runs the model. The page in a browser: ``tests/live/``."""

from __future__ import annotations

import re

import httpx

from pipeserve_nb import LoadedModel, ServerConfig, serve

TOKEN = "a-token-of-enough-characters"


def test_the_page_is_served_without_the_token_and_not_counted(embedder: LoadedModel) -> None:
    with serve(embedder, config=ServerConfig(auth_token=TOKEN), name="page") as server:
        page = httpx.get(server.url, trust_env=False)
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache" and "<title>pipeserve_nb: try the model</title>" in page.text
        assert httpx.head(server.url, trust_env=False).status_code == 200
        assert httpx.get(f"{server.url}/v1/models", trust_env=False).status_code == 401  # what it calls needs it
        assert httpx.post(server.url, content=b"hello", trust_env=False).status_code == 401
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(server.url, content=b"hello", headers=authorized, trust_env=False)
        assert answer.status_code == 200 and len(answer.json()) == 384  # POST / is still the model
        counted = httpx.get(f"{server.url}/stats", headers=authorized, trust_env=False).json()["requests_by_status"]
        assert counted == {"200": 1, "401": 2}  # the page's two loads are not requests of the model


def test_the_page_calls_only_relative_urls_and_loads_nothing_from_elsewhere(embedder: LoadedModel) -> None:
    with serve(embedder, name="page") as server:
        page = httpx.get(server.url, trust_env=False).text
    called = re.findall(r"""call\(\s*["']([^"']+)["']""", page)
    assert set(called) == {"health", "v1/models", "models/", "v1/chat/completions"}  # relative: under any prefix
    assert not re.search(r"""<(script|link|img|iframe)[^>]*\b(src|href)=["'](?!data:)""", page)  # nothing fetched
    assert not re.search(r"""fetch\(\s*["'`]""", page)  # every call goes through call(), which adds the token
    addresses = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert addresses <= {"http://www.w3.org/2000/svg"}  # an XML namespace, never fetched


def test_the_model_list_tells_the_page_each_models_task_and_parameters(
    embedder: LoadedModel, smollm2: LoadedModel
) -> None:
    with serve({"minilm": embedder, "chat": smollm2}, name="page") as server:
        listed = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models", trust_env=False).json()["data"]}
    assert (listed["minilm"]["task"], listed["minilm"]["chat"]) == ("feature-extraction", False)
    assert listed["minilm"]["parameters"] == ["truncation"]
    assert (listed["chat"]["task"], listed["chat"]["chat"]) == ("text-generation", True)
    assert "max_new_tokens" in listed["chat"]["parameters"]

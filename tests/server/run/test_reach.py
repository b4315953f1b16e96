"""``server.browser_url``: each rule of ``run/reach.py`` on the surroundings it reads, the runtime file of a
real Jupyter server's kind, and a real server's handle: its link, ``open()``'s frame, ``public_url`` from the
keyword and from the environment. (Colab is a rule run here with the function it would call given as data:
Colab's frontend does not run on this machine.)"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import httpx
import pytest

from pipeserve_nb import InvalidSetting, LoadedModel, ServerConfig, serve
from pipeserve_nb._server.run import settings
from pipeserve_nb._server.run.reach import Surroundings, around, find_browser_url, jupyter_base

PUBLIC_URL_VARIABLE = settings.env_name("public_url")

HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
SSH = {"SSH_CONNECTION": "10.0.0.9 52100 10.0.0.5 22"}


def found(environ: dict[str, str], public_url: str | None = None, **where: object) -> tuple[str, str]:
    url = find_browser_url("127.0.0.1", 8123, public_url, Surroundings(environ, **where))  # type: ignore[arg-type]
    return str(url), url.via


def test_a_plain_local_jupyter_gets_the_servers_own_address() -> None:
    url = find_browser_url("127.0.0.1", 8123, None, Surroundings({}, has_proxy=True))
    assert (url, url.via, url.hint) == ("http://127.0.0.1:8123/", "local", None)
    assert "this machine" in url.how
    assert str(find_browser_url("::1", 8123, None, Surroundings({}))) == "http://[::1]:8123/"
    assert str(find_browser_url("0.0.0.0", 8123, None, Surroundings({}))) == "http://127.0.0.1:8123/"  # every address


def test_jupyterhub_with_jupyter_server_proxy_gets_the_proxy_path_on_the_hubs_address() -> None:
    assert found(HUB, has_proxy=True) == ("/user/alice/proxy/8123/", "jupyterhub")
    assert found({"JUPYTERHUB_SERVICE_PREFIX": "/user/bob"}, has_proxy=True)[0] == "/user/bob/proxy/8123/"
    public = {**HUB, "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/"}  # set where the hub knows its address
    assert found(public, has_proxy=True) == ("https://hub.example.org/user/alice/proxy/8123/", "jupyterhub")


def test_jupyterhub_without_the_proxy_says_what_to_install() -> None:
    url = find_browser_url("127.0.0.1", 8123, None, Surroundings(HUB, has_proxy=False))
    assert (url, url.via) == ("http://127.0.0.1:8123/", "jupyterhub-no-proxy")
    assert url.hint is not None and "jupyter-server-proxy>=4.4" in url.hint and "/user/alice/proxy/8123/" in url.hint


def test_a_kernel_over_ssh_goes_through_its_jupyters_proxy_or_gets_the_forwarding_command() -> None:
    assert found(SSH, has_proxy=True, jupyter_base="/lab-base/") == ("/lab-base/proxy/8123/", "jupyter")
    url = find_browser_url("127.0.0.1", 8123, None, Surroundings(SSH, has_proxy=False, jupyter_base="/"))
    assert (url, url.via) == ("http://127.0.0.1:8123/", "ssh")
    assert url.hint is not None and f"ssh -N -L 8123:127.0.0.1:8123 {getpass.getuser()}@10.0.0.5" in url.hint
    assert found(SSH, has_proxy=True, jupyter_base=None)[1] == "ssh"  # no Jupyter server started this kernel


def test_public_url_wins_then_colab_then_the_hub() -> None:
    everything = {**HUB, **SSH}
    colab = "https://8123-m-s-abc.prod.colab.dev"
    assert found(everything, "https://example.org/t/{port}", colab_url=lambda port: colab, has_proxy=True) == (
        "https://example.org/t/8123/",
        "public_url",
    )
    assert found(everything, colab_url=lambda port: colab, has_proxy=True) == (colab + "/", "colab")
    assert found(everything, colab_url=lambda port: None, has_proxy=True)[1] == "jupyterhub"  # Colab's page silent
    assert found(everything, has_proxy=True)[1] == "jupyterhub"


def test_the_base_url_of_the_jupyter_server_that_started_a_kernel_comes_from_its_runtime_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "jpserver-4242.json").write_text(json.dumps({"base_url": "/jupyter/", "port": 8888}))
    assert jupyter_base(4242) == "/jupyter/"
    assert jupyter_base(4243) is None  # not a Jupyter server: no file of its own


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as on a laptop: none of the variables the rules read."""
    for name in ("SSH_CONNECTION", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_PUBLIC_URL", PUBLIC_URL_VARIABLE):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("plain")
def test_a_servers_handle_links_its_page_and_frames_it(embedder: LoadedModel) -> None:
    token = "a-token-of-enough-characters"
    with serve(embedder, config=ServerConfig(auth_token=token), name="reach") as server:
        assert server.browser_url == server.url + "/" and server.browser_url.via == "local"
        page = httpx.get(server.browser_url, trust_env=False)  # the page needs no token
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        shown = server._repr_html_()
        assert f"href='{server.browser_url}'" in shown and "server.open()" in shown
        frame = server.open(height=300)
        assert f"<iframe class='pipeserve-page' src='{server.browser_url}'" in frame._repr_html_()
        assert token not in frame._repr_html_()  # a cell's output is saved in the notebook: no token unless asked
        assert f"src='{server.browser_url}#token={token}'" in server.open(include_token=True)._repr_html_()
    assert "pipeserve-browser-link" not in server._repr_html_()  # a stopped server offers no link


@pytest.mark.usefixtures("plain")
def test_public_url_comes_from_the_keyword_or_the_environment_and_is_checked(
    embedder: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(embedder, public_url="https://example.org/tunnel/{port}", name="reach") as server:
        assert server.browser_url == f"https://example.org/tunnel/{server.port}/"
    monkeypatch.setenv(PUBLIC_URL_VARIABLE, "/shared/{port}/")
    with serve(embedder, name="reach") as server:
        assert (server.browser_url, server.browser_url.via) == (f"/shared/{server.port}/", "public_url")
    with pytest.raises(InvalidSetting, match="public_url must be None or an http"):
        serve(embedder, public_url="example.org:{port}", name="reach")
    monkeypatch.setenv(PUBLIC_URL_VARIABLE, "ftp://example.org/")
    with pytest.raises(InvalidSetting, match="public_url must be None or an http"):
        serve(embedder, name="reach")


def test_the_environment_of_this_process_is_what_a_handle_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/carol/")
    where = around()
    assert where.environ["JUPYTERHUB_SERVICE_PREFIX"] == "/user/carol/"
    assert where.has_proxy  # the notebook extra installs jupyter-server-proxy
    assert where.colab_url is None and "google.colab" not in sys.modules

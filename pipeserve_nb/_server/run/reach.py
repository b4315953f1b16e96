"""The URL a person's browser can open: ``server.browser_url``, and how it was found.

A server listens on the machine that runs the kernel (``server.url``: what code in the kernel uses). A
person's browser may be elsewhere: on JupyterHub, Binder or Colab the kernel runs on a machine the browser
cannot reach, and only the Jupyter server (or Colab's frontend) is reachable. The first rule that applies:

1. ``public_url`` (``serve(public_url=...)``, ``--public-url`` or ``PIPESERVE_PUBLIC_URL``), a template with
   ``{port}``: a reverse proxy or tunnel set up for it, e.g. ``https://example.org/tunnel/{port}/``.
2. Colab: the URL Colab's frontend proxies to the kernel's port (``google.colab.kernel.proxyPort``).
3. JupyterHub or Binder (``JUPYTERHUB_SERVICE_PREFIX`` is set) with jupyter-server-proxy installed:
   ``{prefix}proxy/{port}/`` on the hub's address, which the hub's login already guards. JupyterHub's
   ``JUPYTERHUB_PUBLIC_URL`` makes it a full URL; else it is a path on the address the browser shows.
4. A kernel on a machine reached over SSH (``SSH_CONNECTION`` is set): through the proxy of the Jupyter
   server that started the kernel, if it has jupyter-server-proxy (its port is one the user forwards
   already); else the local URL and an ``ssh -L`` command that forwards the port.
5. Otherwise a browser on this machine: the local URL, as ``server.url`` (a plain local Jupyter).

Each rule's wording is in ``BrowserUrl.how``. The URL always ends with ``/``: the try-it page's links are
relative, so they resolve under a path prefix.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrowserUrl", "Surroundings", "around", "find_browser_url", "is_public_url", "jupyter_base"]

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class BrowserUrl(str):
    """A URL a person's browser can open (a ``str``), with the rule that found it (``via``: ``"public_url"``,
    ``"colab"``, ``"jupyterhub"``, ``"jupyterhub-no-proxy"``, ``"jupyter"``, ``"ssh"``, ``"local"``), ``how``
    in words and, where the browser cannot open it before the user does something, a ``hint`` that says what."""

    via: str
    how: str
    hint: str | None

    def __new__(cls, url: str, via: str, how: str, hint: str | None = None) -> BrowserUrl:
        made = super().__new__(cls, url)
        made.via, made.how, made.hint = via, how, hint
        return made

    def __repr__(self) -> str:
        hint = f", hint={self.hint!r}" if self.hint else ""
        return f"BrowserUrl({str(self)!r}, via={self.via!r}, how={self.how!r}{hint})"


@dataclass(frozen=True)
class Surroundings:
    """What the rules read about where the kernel runs (``around()`` reads them from this process).

    Parameters:
        environ: the environment variables.
        colab_url: on Colab, the function that asks the frontend for a port's URL (None when it does not
            answer); None elsewhere.
        has_proxy: whether jupyter-server-proxy is installed.
        jupyter_base: the base URL path of the Jupyter server that started this kernel (``"/"``), when known.
    """

    environ: Mapping[str, str]
    colab_url: Callable[[int], str | None] | None = None
    has_proxy: bool = False
    jupyter_base: str | None = None


def around() -> Surroundings:
    """The surroundings of this process."""
    environ = dict(os.environ)
    colab = _colab_url if "google.colab" in sys.modules else None
    has_proxy = importlib.util.find_spec("jupyter_server_proxy") is not None
    base = jupyter_base(os.getppid()) if "SSH_CONNECTION" in environ else None
    return Surroundings(environ, colab, has_proxy, base)


def find_browser_url(host: str, port: int, public_url: str | None, where: Surroundings) -> BrowserUrl:
    """The URL for a browser of a server listening on ``host:port`` (see the module docstring's rules)."""
    near = _WILDCARDS.get(host, host)  # a server on every address is reached on loopback from this machine
    local = f"http://[{near}]:{port}/" if ":" in near else f"http://{near}:{port}/"
    if public_url is not None:
        url = _slash(public_url.replace("{port}", str(port)))
        return BrowserUrl(url, "public_url", f"public_url {public_url!r}, the port filled in")
    colab = where.colab_url(port) if where.colab_url is not None else None
    if colab is not None:
        return BrowserUrl(_slash(colab), "colab", "Colab: its frontend's proxy to the kernel's port")
    prefix = where.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix and where.has_proxy:
        path = f"{_slash(prefix)}proxy/{port}/"
        public = where.environ.get("JUPYTERHUB_PUBLIC_URL", "").rstrip("/")
        how = "JupyterHub (JUPYTERHUB_SERVICE_PREFIX) with jupyter-server-proxy: the hub's login guards it"
        if public:
            return BrowserUrl(public + path, "jupyterhub", how)
        return BrowserUrl(path, "jupyterhub", how + "; a path on the address your browser shows for the hub")
    if prefix:
        hint = (
            "install jupyter-server-proxy>=4.4 where the hub's Jupyter server runs and restart your server; it "
            f"then serves this port at {_slash(prefix)}proxy/{port}/ (or set public_url)"
        )
        how = "JupyterHub without jupyter-server-proxy: the browser cannot reach this address"
        return BrowserUrl(local, "jupyterhub-no-proxy", how, hint)
    ssh = where.environ.get("SSH_CONNECTION", "").split()
    if len(ssh) == 4:
        if where.jupyter_base is not None and where.has_proxy:
            how = "a kernel reached over SSH: through its Jupyter server's jupyter-server-proxy, on the address"
            path = f"{_slash(where.jupyter_base)}proxy/{port}/"
            return BrowserUrl(path, "jupyter", how + " your browser shows for Jupyter")
        forward = f"ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{ssh[2]}"
        hint = f"forward the port first, from the machine of your browser: {forward}"
        return BrowserUrl(local, "ssh", "a kernel reached over SSH (SSH_CONNECTION is set)", hint)
    return BrowserUrl(local, "local", "a browser on this machine: the server's own address")


def is_public_url(value: object) -> bool:
    """Whether ``value`` can be a ``public_url`` template: None, or an http(s) URL or a path from ``/``."""
    return value is None or (isinstance(value, str) and value.startswith(("http://", "https://", "/")))


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _colab_url(port: int) -> str | None:  # pragma: no cover - runs only on Colab
    from google.colab.output import eval_js

    try:  # a question to the page: no page (a kernel run headless), no answer
        url = eval_js(f"google.colab.kernel.proxyPort({port})", timeout_sec=10)
    except Exception:
        return None
    return url if isinstance(url, str) and url else None


def jupyter_base(server_pid: int) -> str | None:
    """The base URL of the Jupyter server with process id ``server_pid`` (a kernel's parent), from the
    files each running Jupyter server writes (``jpserver-<pid>.json``); None if it is not one."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None
    info = Path(jupyter_runtime_dir()) / f"jpserver-{server_pid}.json"
    try:
        base = json.loads(info.read_text()).get("base_url")
    except (OSError, ValueError):
        return None
    return base if isinstance(base, str) else None

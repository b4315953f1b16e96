"""A server's try-it page in a notebook: the link under a handle, and ``server.open()``'s frame.

Both point at ``server.browser_url`` (``_server/run/reach.py``): the address the person's browser reaches,
which on JupyterHub or Binder is a path through jupyter-server-proxy on the hub's own address, and on Colab
the frontend's proxy to the kernel's port. On Colab the frame is Colab's own
(``google.colab.output.serve_kernel_port_as_iframe``): an iframe of a proxied port must be made by its
frontend. The token is put in the URL's fragment only when asked (``include_token``): a cell's output is
saved in the notebook, and a fragment is never sent to a server.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["PageFrame", "browser_link_html"]


def browser_link_html(url: str, how: str, hint: str | None, label: str = "open in a browser") -> str:
    """A line with a link to ``url`` (a new tab), how it was found, and the ``hint`` when it needs one."""
    link = f"<a href='{html.escape(url, quote=True)}' target='_blank' rel='noopener'>{html.escape(url)}</a>"
    how_html = f" <span style='color:#777'>({html.escape(how)})</span>"
    hint_html = f"<div style='color:#b54708'>{html.escape(hint)}</div>" if hint else ""
    line = f"<div class='pipeserve-browser-link' style='font-size:12px'>{html.escape(label)}: {link}{how_html}</div>"
    return line + hint_html


class PageFrame:
    """The try-it page in a cell's output (an iframe on ``url``), as ``server.open()`` returns it.

    Parameters:
        url: the page's browser URL (``server.browser_url``), with the token's fragment if one was asked for.
        height: the frame's height in pixels.
        colab_port: on Colab, the kernel's port that Colab's frontend frames itself; None elsewhere.
    """

    def __init__(self, url: str, height: int, colab_port: int | None = None) -> None:
        self.url = url
        self.height = height
        self.colab_port = colab_port

    def __repr__(self) -> str:
        return f"<PageFrame of {self.url}>"

    def _repr_html_(self) -> str:
        src = html.escape(self.url, quote=True)
        return (
            f"<iframe class='pipeserve-page' src='{src}' title='pipeserve_nb: try the model' width='100%' "
            f"height='{self.height}' style='border:1px solid #ddd;border-radius:4px'></iframe>"
            + browser_link_html(self.url.split("#", 1)[0], "the same page in a tab of its own", None, "open it")
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        show: Any = display
        if self.colab_port is not None:  # pragma: no cover - runs only on Colab
            from google.colab import output

            fragment = self.url.partition("#")[2]
            output.serve_kernel_port_as_iframe(
                self.colab_port, path="/" + (f"#{fragment}" if fragment else ""), height=self.height
            )
            return
        bundle: dict[str, Any] = {"text/html": self._repr_html_(), "text/plain": repr(self)}
        show(bundle, raw=True)

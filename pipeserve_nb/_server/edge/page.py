"""``GET /``: the try-it page (``page.html``), a text box and the answer drawn for the model's task.

The page is one static file: plain HTML and a little JavaScript, nothing fetched from elsewhere. It holds
no secret, so it is served without the bearer token (``BearerTokenMiddleware`` lets ``GET /`` through);
every call it makes sends the token the person gives it. Its URLs are relative, so it works at any path
prefix (``server.browser_url``, ``run/reach.py``).
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["PAGE_PATH", "try_page"]

PAGE_PATH = "/"
"""Where the page is served (``GET``); ``POST`` on the same path runs the default model."""

_PAGE = files(__package__).joinpath("page.html").read_bytes()


async def try_page(request: Request) -> Response:
    """The page, not cached (a new version of the package serves its own)."""
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})

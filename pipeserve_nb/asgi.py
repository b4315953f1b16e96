"""The app for an ASGI server of your own, configured by ``PIPESERVE_*`` environment variables.

    PIPESERVE_MODEL=bert-base-uncased PIPESERVE_TASK=fill-mask \\
        uvicorn pipeserve_nb.asgi:app --lifespan on --port 8000 --http pipeserve_nb.asgi:HttpProtocol

Every model, policy and limit option of the settings source is read from its variable
(the README's option table lists them, e.g. ``PIPESERVE_MAX_BATCH_SIZE``,
``PIPESERVE_AUTH_TOKEN``); unset ones take the defaults of ``serve()``. The address options
(``PIPESERVE_HOST``, ``PIPESERVE_PORT``, ``PIPESERVE_ALLOW_UNAUTHENTICATED``) are refused here:
uvicorn binds, with its own ``--host`` and ``--port``, and this module cannot see which
address that is, so set ``PIPESERVE_AUTH_TOKEN`` whenever it is not loopback.
The model loads in the app's lifespan (once per process: run a single worker). On
shutdown, uvicorn lets open requests finish for its own ``--timeout-graceful-shutdown``,
then the lifespan answers anything left with 503 and drops the model.

``--http pipeserve_nb.asgi:HttpProtocol`` runs the HTTP protocol that ``serve()`` and the command
line use: uvicorn's httptools parser with the bound on an unfinished request head
(``PIPESERVE_MAX_*``), sending each response in one write; without it the app still answers 414
and 431, but a head that never ends is buffered by uvicorn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.applications import Starlette

from ._server.core.models import Models
from ._server.edge.app import create_app
from ._server.edge.http_protocol import http_protocol
from ._server.run.settings import from_environment, refuse_unused

__all__ = ["app", "app_from_env", "HttpProtocol"]


def app_from_env(env: Mapping[str, str] | None = None) -> Starlette:
    """Build the app from ``PIPESERVE_*`` variables (``os.environ`` by default)."""
    return create_app(_models(os.environ if env is None else env))


def _models(env: Mapping[str, str]) -> Models:
    refuse_unused(env, "address", "under uvicorn: pass uvicorn's own --host and --port")
    settings = from_environment(env)
    return Models.build(settings.models, settings.policy, settings.config, "pipeserve")


_served = _models(os.environ)
app = create_app(_served)
HttpProtocol = http_protocol(_served.config.max_head_bytes, _served.record_response)
"""pipeserve's HTTP protocol for ``app``: a bounded head, one write per response, its refusals counted in
``app``'s numbers (``--http pipeserve_nb.asgi:HttpProtocol``)."""

"""Command line: ``python -m pipeserve_nb serve ...``, ``... demo`` and ``... options``.

``serve`` takes one flag per option of the settings source (``settings``), each also read
from its ``PIPESERVE_*`` environment variable when the flag is not given; the token only
from ``PIPESERVE_AUTH_TOKEN``, so it never shows in the process list. It drains and stops on
Ctrl-C or SIGTERM, in the same order as a notebook server (``runner``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from ..._exceptions import InvalidSetting, ServerStartError
from ..core.models import Models
from ..edge.app import create_app
from ..edge.http_protocol import http_protocol
from .exposure import check_exposure
from .reach import BrowserUrl, around, find_browser_url
from .settings import (
    RayPlacement,
    add_arguments,
    env_name,
    from_command_line,
    markdown_table,
    section_from_command_line,
)
from .uvicorn_runner import Server, bind_socket

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for both commands."""
    parser = argparse.ArgumentParser(prog="python -m pipeserve_nb", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a model until Ctrl-C or SIGTERM",
        description=f"Serve a model. The bearer token, if any, is read from ${env_name('auth_token')}.",
    )
    add_arguments(serve)
    on_ray = serve.add_argument_group("Ray Serve", "serve the same app as a Ray Serve deployment (docs/ray.md)")
    on_ray.add_argument("--ray", action="store_true", help="run as replicas behind Ray Serve's proxy")
    add_arguments(on_ray, RayPlacement)  # type: ignore[arg-type]
    demo = commands.add_parser("demo", help="serve the bundled model in a thread, query it, compare batching")
    demo.add_argument("--rounds", type=int, default=3, help="rounds; each measures every policy, in a turning order")
    demo.add_argument("--duration-s", type=float, default=4.0, help="seconds of load per policy and round")
    demo.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    commands.add_parser("options", help="print every option: its serve() keyword, flag, variable, default, rule")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run a command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from ..._teaching.demo import run_demo

        run_demo(rounds=args.rounds, duration_s=args.duration_s, concurrency=args.concurrency)
        return 0
    if args.command == "options":
        print(markdown_table())
        return 0
    return _serve(args, os.environ if env is None else env)


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.ray:
        return _serve_on_ray(args, env)
    try:
        settings = from_command_line(args, env)
        address, config = settings.address, settings.config
        check_exposure(address.host, config.auth_token, address.allow_unauthenticated)
        models = Models.build(settings.models, settings.policy, config, "pipeserve")
        sock = bind_socket(address.host, address.port)
    except (InvalidSetting, ServerStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, engine in models:
        print(f"pipeserve_nb: loading {engine.model_name} as {name!r} ...", flush=True)
    try:
        models.load()
    except Exception as exc:
        sock.close()
        failed = settings.models[models.not_loaded or models.default_name].describe()
        print(f"error: could not load model {failed!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(name for name, _ in models)
    page = find_browser_url(host, port, address.public_url, around())
    announcement = (
        f"pipeserve_nb: serving {names} at http://{shown}:{port}/ (OpenAI API at /v1; Ctrl-C to stop)\n"
        + _page_lines(page)
    )
    server = Server(
        create_app(models),
        drain=models.drain,
        drain_timeout_s=config.drain_timeout_s,
        on_started=lambda: print(announcement, flush=True),
        log=True,
        http=http_protocol(config.max_head_bytes, models.record_response),
    )
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _page_lines(page: BrowserUrl) -> str:
    """Where a person's browser opens the try-it page, how that was found, and what to do first if anything."""
    hint = f"\npipeserve_nb: {page.hint}" if page.hint else ""
    return f"pipeserve_nb: try it in a browser at {page} ({page.how}){hint}"


def _serve_on_ray(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``serve --ray``: deploy on Ray Serve, then wait for Ctrl-C or SIGTERM and delete the deployment."""
    from ..._ray.serve import serve_on_ray

    try:
        settings = from_command_line(args, env)
        placement = section_from_command_line(RayPlacement, args, env)
        if len(settings.models) > 1:
            raise InvalidSetting("serve --ray serves one model: deploy each model on its own (docs/ray.md)")
    except InvalidSetting as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    address, spec = settings.address, settings.model
    print(f"pipeserve_nb: deploying {spec.describe()} as {placement.replicas} Ray Serve replicas ...", flush=True)
    try:
        handle = serve_on_ray(
            spec.model,
            task=spec.task,
            device=spec.device,
            dtype=spec.dtype,
            policy=settings.policy,
            config=settings.config,
            host=address.host,
            port=address.port,
            allow_unauthenticated=address.allow_unauthenticated,
            public_url=address.public_url,
            replicas=placement.replicas,
            address=placement.ray_address,
            dashboard=placement.ray_dashboard,
        )
    except (InvalidSetting, ServerStartError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidSetting) else 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"pipeserve_nb: serving {handle.model} at {handle.url}/ on Ray ({handle.cluster_address}; Ctrl-C to stop)")
    print(_page_lines(handle.browser_url))
    sys.stdout.flush()
    stop.wait()
    print("pipeserve_nb: stopping the deployment ...", flush=True)
    handle.stop()
    return 0

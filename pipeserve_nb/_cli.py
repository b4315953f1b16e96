"""Command line: ``python -m pipeserve_nb serve ...`` and ``python -m pipeserve_nb demo``."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from ._app import create_app
from ._config import ServerConfig
from ._engine import Engine
from ._exceptions import ServerStartError
from ._models import ModelSpec
from ._policy import BatchPolicy
from ._server import check_exposure
from ._thread_server import bind_socket

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for both commands."""
    parser = argparse.ArgumentParser(prog="python -m pipeserve_nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a model until Ctrl-C or SIGTERM")
    serve.add_argument("--model", default=None, help="Hub id or local path (default: bundled all-MiniLM-L6-v2)")
    serve.add_argument("--task", default=None, help="pipeline task, e.g. fill-mask")
    serve.add_argument("--device", default=None, help="e.g. cuda:0 (default: transformers' choice)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one")
    policy, config = BatchPolicy(), ServerConfig()  # the defaults, as serve() has them
    serve.add_argument(
        "--max-batch-size", type=int, default=policy.max_batch_size, help="most inputs per model call; 1 = no batching"
    )
    serve.add_argument("--max-wait-ms", type=float, default=0.0, help="longest wait for a batch to fill, ms")
    serve.add_argument("--max-batch-tokens", type=int, default=None, help="most padded tokens per model call")
    serve.add_argument(
        "--arrival-order", action="store_true", help="batch in arrival order instead of grouping similar lengths"
    )
    serve.add_argument(
        "--call-overhead-tokens",
        type=float,
        default=policy.call_overhead_tokens,
        help="price of one more model call in padded tokens, when grouping by length (raise it on a GPU)",
    )
    serve.add_argument("--torch-threads", type=int, default=None, help="PyTorch threads (default: one per core)")
    serve.add_argument("--max-queue", type=int, default=config.max_queue, help="queued requests before fast 503s")
    serve.add_argument("--timeout-s", type=float, default=config.timeout_s, help="per-request deadline (504 after)")
    serve.add_argument(
        "--max-body-bytes", type=int, default=config.max_body_bytes, help="largest request body (413 above)"
    )
    serve.add_argument(
        "--token-env",
        default="PIPESERVE_TOKEN",
        help="environment variable holding the bearer token clients must send (default PIPESERVE_TOKEN; "
        "unset = no token). Needed to bind a non-loopback host.",
    )
    serve.add_argument(
        "--allow-unauthenticated", action="store_true", help="bind a non-loopback host without a token (warns)"
    )
    serve.add_argument("--debug", action="store_true", help="put exception messages and tracebacks in error bodies")

    demo = commands.add_parser("demo", help="serve the bundled model in a thread, query it, compare batching")
    demo.add_argument("--requests", type=int, default=192, help="requests per policy")
    demo.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(requests=args.requests, concurrency=args.concurrency)
        return 0
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        policy = BatchPolicy(
            max_batch_size=args.max_batch_size,
            max_wait_s=args.max_wait_ms / 1000,
            max_batch_tokens=args.max_batch_tokens,
            sort_by_length=not args.arrival_order,
            call_overhead_tokens=args.call_overhead_tokens,
        )
        config = ServerConfig(
            max_queue=args.max_queue,
            timeout_s=args.timeout_s,
            max_body_bytes=args.max_body_bytes,
            auth_token=os.environ.get(args.token_env) or None,
            torch_threads=args.torch_threads,
            debug=args.debug,
        )
        check_exposure(args.host, config, args.allow_unauthenticated)
        engine = Engine(ModelSpec(model=args.model, task=args.task, device=args.device), policy, config)
        sock = bind_socket(args.host, args.port)
    except (TypeError, ValueError, ServerStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pipeserve_nb: loading {engine.model_name} ...", flush=True)
    try:
        engine.load()
    except Exception as exc:
        engine.release(timeout_s=5.0)
        print(f"error: could not load model {engine.model_name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = _AnnouncingServer(
        uvicorn.Config(
            create_app(engine),
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=max(1, int(config.drain_timeout_s)),
        ),
        announcement=f"pipeserve_nb: serving {engine.model_name} at http://{shown}:{port}/ (Ctrl-C to stop)",
    )
    server.run(sockets=[sock])
    return 0 if server.started else 1


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its URL once it accepts connections."""

    def __init__(self, config: uvicorn.Config, announcement: str) -> None:
        super().__init__(config)
        self.announcement = announcement

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.announcement, flush=True)

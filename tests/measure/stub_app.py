"""A stub ASGI server with a known service time: one request at a time, ``service_s`` each.

It stands in for a model server when a test needs exact queueing arithmetic. It records how
many requests were inside it at once, so tests can check the load generator's concurrency.
"""

from __future__ import annotations

import asyncio
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class StubServer:
    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.inside = 0
        self.max_inside = 0
        self.served = 0
        self.bodies: list[str] = []
        self.first_request = threading.Event()  # set when the first request arrives
        self.app = Starlette(routes=[Route("/", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> JSONResponse:
        self.first_request.set()
        self.inside += 1
        self.max_inside = max(self.max_inside, self.inside)
        try:
            body = (await request.body()).decode()
            async with self._lock():
                await asyncio.sleep(self.service_s)
            self.served += 1
            self.bodies.append(body)
            if body == "fail":
                return JSONResponse({"error": {"type": "InvalidInput", "message": "no"}}, status_code=400)
            return JSONResponse({"echo": body}, headers={"x-batch-size": "1", "x-queue-wait-ms": "0.5"})
        finally:
            self.inside -= 1

    def _lock(self) -> asyncio.Lock:
        if not hasattr(self, "_the_lock"):
            self._the_lock = asyncio.Lock()  # created on the server's own loop
        return self._the_lock

"""A real Jupyter kernel for tests that need one: run code in it and read the messages it
publishes (what every frontend receives)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

Message = dict[str, Any]


class Kernel:
    """A real IPython kernel: run code in it, keep every message it published."""

    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager, self.client = manager, client

    def run(self, code: str, timeout_s: float = 120) -> list[Message]:
        """Execute ``code``; return the messages published until the kernel is idle again (other
        threads' messages included). Raise if the code raised."""
        msg_id = self.client.execute(code)
        messages = []
        while True:
            message = self.client.get_iopub_msg(timeout=timeout_s)
            messages.append(message)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "error":
                raise AssertionError("\n".join(message["content"]["traceback"]))
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return messages

    def wait_for(self, found: Callable[[Message], bool], timeout_s: float = 15) -> Message:
        """The next message published in the background (no cell running) for which ``found`` is true."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                break
            if found(message):
                return message
        raise AssertionError(f"no such message in {timeout_s} s")

    def stdout(self, code: str) -> str:
        return "".join(m["content"]["text"] for m in self.run(code) if m["msg_type"] == "stream")


@contextmanager
def started_kernel(setup: str) -> Iterator[Kernel]:
    """A fresh kernel (offline), with ``setup`` run in it; shut down on leaving."""
    manager, client = start_new_kernel(kernel_name="python3", env={"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""})
    try:
        kernel = Kernel(manager, client)
        kernel.run(setup)
        yield kernel
        kernel.run("import pipeserve_nb; pipeserve_nb.stop_all()")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

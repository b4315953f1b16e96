"""The servers this process started, by name: re-running a notebook cell replaces, never doubles.

Starting a server under a name in use stops the old one first (``stop_named``); every
registered server is stopped at interpreter exit, with a short drain.
"""

from __future__ import annotations

import atexit
import threading
from typing import Protocol

__all__ = ["Registered", "register", "unregister", "stop_named", "stop_all", "running", "holder_of"]


class Registered(Protocol):
    """What the registry needs of a handle."""

    name: str
    port: int

    @property
    def running(self) -> bool: ...

    def stop(self, timeout_s: float | None = None) -> None: ...


_servers: dict[str, Registered] = {}
_lock = threading.Lock()
_atexit_registered = False


def register(handle: Registered) -> None:
    """Keep ``handle`` under its name, and stop it at interpreter exit."""
    global _atexit_registered
    with _lock:
        _servers[handle.name] = handle
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True


def unregister(handle: Registered) -> None:
    """Forget ``handle`` (it stopped), unless another server has taken its name since."""
    with _lock:
        if _servers.get(handle.name) is handle:
            del _servers[handle.name]


def stop_named(name: str) -> None:
    """Stop the registered server called ``name``, if any."""
    with _lock:
        previous = _servers.pop(name, None)
    if previous is not None:
        previous.stop()


def stop_all(timeout_s: float | None = None) -> None:
    """Stop every server started from this process (drain time as in each handle's ``stop``)."""
    with _lock:
        handles = list(_servers.values())
    for handle in handles:
        handle.stop(timeout_s)


def running() -> dict[str, Registered]:
    """The running servers by name."""
    with _lock:
        return {name: h for name, h in _servers.items() if h.running}


def holder_of(port: int) -> str | None:
    """The name of the running server on ``port``, if one of ours holds it."""
    return next((name for name, h in running().items() if h.port == port), None)


def _stop_all_at_exit() -> None:
    stop_all(timeout_s=2.0)  # interpreter exit should not wait out a long drain

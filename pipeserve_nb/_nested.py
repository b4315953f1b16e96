"""Opt-in nested event loops for notebook code that calls ``asyncio.run`` in a cell.

The server never needs this (it runs on its own loop in its own thread). It exists for
users whose *own* code calls ``asyncio.run()`` or ``loop.run_until_complete()`` inside a
cell, which fails on Jupyter's running loop. It patches asyncio for the whole process,
so it is never applied at import; call it explicitly, once, if you must.
"""

from __future__ import annotations

__all__ = ["allow_nested_event_loops"]


def allow_nested_event_loops() -> None:
    """Apply ``nest_asyncio2`` to the running (or default) event loop.

    Prefer ``await coro`` in a cell over this: the patch swaps asyncio's C tasks for
    pure-Python ones process-wide and cannot be undone.
    """
    import nest_asyncio2

    nest_asyncio2.apply()

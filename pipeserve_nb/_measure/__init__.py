"""The measurement toolkit: it drives a server from outside, over HTTP, like any client.

``loads`` (what to send, when) -> ``sender`` (the async engine, on ``rawhttp``, its lean
HTTP/1.1 client) -> ``runner`` (``run_load``: the sender in a child process or a thread)
-> ``results`` (rows, summaries) -> ``plots``; ``progress`` (a run's progress line), ``sweep``
(a grid of servers by loads), ``procedures`` (warm-up, capacity, soaks), ``corpus`` (texts),
``memory`` (process memory, model copies), ``findings`` (what a lesson showed, and what it
could not). It uses only the public pieces of the server (``serve``, its handles, the policies)
and the HTTP contract in ``_wire``.
"""

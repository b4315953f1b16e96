"""The models: what the user asks to serve, loading it once, and the runner the server calls.

``runner`` (the protocol: prepare, run, encode) <- ``runners`` (pipelines, callables), ``embedder``
(the bundled model); ``spec`` (``ModelSpec``, ``LoadedModel``) -> ``loading`` (``load``);
``precision`` (the type a device runs natively), ``tokens`` (counts and limits before the queue),
``quiet`` (loading without progress bars). Nothing here knows about HTTP, queues or threads.
"""

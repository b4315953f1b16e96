"""The models: what the user asks to serve, loading it once, and the batch function the worker calls.

``spec`` (``ModelSpec``, ``LoadedModel``) -> ``loading`` (``load``) -> ``runners`` (pipelines,
callables), ``embedder`` (the bundled model), ``tokens`` (counts and limits before the queue).
Nothing here knows about HTTP, queues or threads.
"""

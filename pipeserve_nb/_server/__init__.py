"""The model server: the request path, one module per step.

A request flows one way::

    app (HTTP in; protocol: the body) -> engine.submit -> admission (checks before the queue)
      -> batch_queue (where it waits, where it expires) -> batch_loop -> worker (the model runs)
      -> the request's future -> app (HTTP out; errors: the one exception -> status table)

Around it: ``policy``/``formation`` (when a batch closes, which requests run together),
``request`` (one request's record), ``stats``, ``auth``, ``openapi``; ``config`` and
``settings`` (every option, declared once); ``runner`` (uvicorn in a thread, one shutdown
order), ``handle``, ``registry`` and ``serve`` (what a notebook calls); ``cli``.
"""

"""The model server, in four layers, bottom up (each imports only the layers below it;
``tests/test_architecture.py`` holds them to it):

- ``observe``: the numbers (counters, Prometheus metrics, the last seconds), fed by the layers above;
- ``core``: the scheduling core: a request's record, admission, preparation off the event loop, the
  queue and batch formation, the batch loop and the inference thread, the call cost, the engine that
  wires them, its health; no HTTP;
- ``edge``: the HTTP edge: the Starlette app, body parsing, the middleware before the routes, the one
  error table, the OpenAPI description, the HTTP protocol uvicorn runs;
- ``run``: running it: the settings source, uvicorn in a thread, ``serve()`` and its handle, the
  registry of running servers, the command line.

A request flows one way: ``edge`` -> ``core`` (admission -> preparation -> queue -> batch loop ->
inference thread) -> the request's future -> ``edge`` (one response, from the error table on failure).
"""

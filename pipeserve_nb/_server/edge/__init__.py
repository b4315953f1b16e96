"""The HTTP edge: HTTP in, one engine call, HTTP out.

``app`` (the routes), ``body`` (the request body format), ``middleware`` (what runs before the routes),
``errors`` (the one table from failure to response), ``openapi`` (the API description),
``http_protocol`` (the HTTP protocol uvicorn runs)."""

"""OpenAI's HTTP API (``/v1/...``), a face over the same engines as the native routes: nothing it serves
bypasses their admission, batching or limits, and its errors come from the one error table in OpenAI's shape.

``listing`` (``GET /v1/models``), ``embeddings``, ``completions`` and ``chat``; ``routing`` reads a body and
finds the model it names; ``answers`` writes a generated answer, whole or streamed, in OpenAI's shapes.
"""

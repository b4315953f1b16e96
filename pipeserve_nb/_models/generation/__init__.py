"""Generation, one token per model step: what continuous batching is built on.

``step_batch`` holds many generations in one left-padded KV cache and advances them together, a
newcomer joining after its prompt is prefilled and a finished one leaving at once; ``sampling``
picks each row's next token by its own settings; ``text`` turns tokens into text pieces as they
are written, holding back what could still become a stop string.
"""

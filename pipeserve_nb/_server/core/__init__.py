"""The scheduling core: what happens to a request between the HTTP edge and its answer, with no HTTP.

``engine`` wires the rest: ``admission`` (checks before the queue), ``batch_queue`` (where a request waits),
``policy``/``formation`` (which requests run together), ``batch_loop`` (hands batches over, answers
futures), ``inference`` (the one thread that runs the model), ``cost`` (what a call costs, fitted online),
``request`` (one request's record), ``health`` (whether to send it traffic), ``report`` (the ``/stats``
document), ``config`` (the limits), ``traffic`` (what it admits, recorded while asked), ``thread_team``
(the calling thread's PyTorch thread team let go, ``cores="own"``)."""

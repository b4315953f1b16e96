"""The numbers of one server: counters by status and reason, Prometheus metrics, the last seconds
(``/stats``, ``/metrics``).

The bottom layer: it imports nothing else of the server; the core and the edge record into it."""

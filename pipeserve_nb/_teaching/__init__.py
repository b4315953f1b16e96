"""The teaching designs, kept to be measured beside the server: the seed page's app and its
reset-timer batching policy, N worker processes (``workers``, the multi-copy shape), and the
``demo`` command."""

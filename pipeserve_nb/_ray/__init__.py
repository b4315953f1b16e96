"""Past one machine: pipeserve's app as the replica of a Ray Serve deployment (``serve_on_ray``).

``mapping`` (Ray's settings, derived from ours; no Ray import), ``cluster`` (connect to a
cluster or start a local one), ``replica`` (the deployment: each replica builds its own
engine and app), ``combine`` (one view of every replica's ``/stats``), ``handle`` (what
``serve_on_ray`` returns), ``serve`` (``serve_on_ray`` itself). Ray is an optional extra
(``pip install pipeserve_nb[ray]``): nothing here imports it until ``serve_on_ray`` runs.
"""

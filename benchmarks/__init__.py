"""pipeserve_nb's benchmarks: every figure measured in one run on this machine, as ratios against
references measured in the same run (the model alone, and what a user would pick instead).

One entry point, ``python -m benchmarks COMMAND`` (``make bench`` and ``make reliability`` call it):

- ``bench``: our server against the model alone, the seed page's designs, float32, one thread, the live
  panel's cost and Ray Serve (``bench``, ``targets``, ``on_ray``, ``live``, ``report*``); writes
  ``benchmarks/results/latest.md``;
- ``generation``: the chat model served by pipeserve against ``transformers serve`` (with and without
  continuous batching) and the model alone, streamed; writes ``benchmarks/results/generation.md``;
- ``reliability``: bad input, overload soaks, paired rounds, a hung model (``reliability``, ``overload``,
  ``rounds``, ``hung``, ``split``); writes ``benchmarks/results/reliability.md``;
- ``ab``: two checkouts of pipeserve, interleaved: overhead at c=1 and throughput at c=32 (``ab``);
- ``levers``: the default server with one change each (no second thread team, the switch interval, the
  event loop's priority, one torch thread, the model in its own process, no model at all), in turning rounds
  bracketed by the model alone, each server's c=32 batches replayed by the model alone, and issue 37's
  targets judged (``levers``, ``report_levers``); writes ``benchmarks/results/levers.md``;
- ``policies``: the default batching policy against the best setting of a grid at six loads, each load's best
  measured again against it in interleaved rounds (``policies``); writes ``benchmarks/results/policies.md``;
- ``model``: one measurement of the model alone in this process (``inprocess``; ``bench`` runs it in a
  child process of its own).

They use only pipeserve_nb's public API, as a user's notebook would; ``docs/performance.md`` says how
each figure is made and what the current results are.
"""

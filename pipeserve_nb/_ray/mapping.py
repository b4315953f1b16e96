"""Ray Serve's settings, derived from pipeserve's own: one place, so the two never disagree.

Each mapping, and why (``docs/ray.md`` has the same table):

- ``max_ongoing_requests`` = ``max_queue`` + 2 x the largest batch. Ray's proxy sends a
  replica at most this many requests at once. pipeserve's replica holds at most
  ``max_queue`` waiting plus one batch running, and refuses more itself with its own 503 and
  ``Retry-After``; the second batch's worth of room lets those refusals pass while the
  replica is full, so the client sees pipeserve's 503, not a request parked in Ray's queue.
  (Below the batch cap a batch could never fill.)
- ``max_queued_requests`` stays Ray's default (no bound): a request finding every replica at
  ``max_ongoing_requests`` (a burst) waits in Ray's router for a slot, which frees within
  milliseconds because the replicas refuse the excess at once. A bound there would make Ray
  answer the burst with its own 503 page, without ``Retry-After``, before any replica saw it.
- ``health_check_period_s`` = 2 s, ``health_check_timeout_s`` = 10 s: Ray calls the
  replica's ``check_health``, which is pipeserve's ``/health``; after three failures in a
  row Ray replaces the replica (a dead inference thread, or a model call past the stuck bound).
- ``graceful_shutdown_timeout_s`` = ``drain_timeout_s``: how long a stopping replica lets
  its requests finish, as ``stop()`` does in one process.
- ``ray_actor_options.num_cpus`` = ``torch_threads``, else the cluster's CPUs shared out
  (at most one node's); the replica runs PyTorch with that many threads, so replicas do not
  oversubscribe the cores they were given.
- A client that leaves: Ray cancels the replica's handler; pipeserve's app cancels the
  request (a queued one never runs) and counts it under 499, as it does for a disconnect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._exceptions import InvalidSetting
from .._server.core.config import ServerConfig
from .._server.core.policy import BatchPolicy, Policy

__all__ = ["HEALTH_PERIOD_S", "HEALTH_TIMEOUT_S", "largest_batch", "cpus_per_replica"]
__all__ += ["deployment_options", "replica_config"]

HEALTH_PERIOD_S = 2.0
HEALTH_TIMEOUT_S = 10.0


def largest_batch(policy: Policy, config: ServerConfig) -> int:
    """Most requests one model call can hold under ``policy``."""
    if isinstance(policy, BatchPolicy):
        return policy.max_batch_size
    return policy.window or config.max_queue


def cpus_per_replica(config: ServerConfig, replicas: int, cluster_cpus: float, node_cpus: float) -> int:
    """CPUs (and PyTorch threads) for each replica; ``InvalidSetting`` when the cluster cannot hold them."""
    cpus = config.torch_threads or max(1, int(min(node_cpus, cluster_cpus // replicas)))
    if cpus > node_cpus or replicas * cpus > cluster_cpus:
        raise InvalidSetting(
            f"{replicas} replicas of {cpus} CPUs each need {replicas * cpus:g} CPUs (at most {node_cpus:g} on "
            f"one node); the cluster has {cluster_cpus:g}: ask for fewer replicas, or set torch_threads"
        )
    return cpus


def replica_config(config: ServerConfig, cpus: int) -> ServerConfig:
    """The limits each replica runs with: the caller's, with PyTorch's threads fixed to its CPUs."""
    return config if config.torch_threads == cpus else dataclasses.replace(config, torch_threads=cpus)


def deployment_options(policy: Policy, config: ServerConfig, replicas: int, cpus: int) -> dict[str, Any]:
    """The options of ``serve.deployment`` for a pipeserve replica (see the module docstring)."""
    return {
        "num_replicas": replicas,
        "max_ongoing_requests": config.max_queue + 2 * largest_batch(policy, config),
        "health_check_period_s": HEALTH_PERIOD_S,
        "health_check_timeout_s": HEALTH_TIMEOUT_S,
        "graceful_shutdown_timeout_s": config.drain_timeout_s,
        "ray_actor_options": {"num_cpus": cpus},
    }

"""Ray's settings derived from ours, the combined ``/stats``, and what ``serve_on_ray`` refuses
before it touches Ray (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pipeserve_nb
from pipeserve_nb import BatchPolicy, InvalidSetting, SeedPagePolicy, ServerConfig
from pipeserve_nb._ray.combine import combine
from pipeserve_nb._ray.mapping import cpus_per_replica, deployment_options, replica_config


def test_ray_admits_every_request_the_replica_can_hold_plus_room_for_its_refusals() -> None:
    options = deployment_options(BatchPolicy(max_batch_size=8), ServerConfig(max_queue=16), 3, 2)
    assert options["num_replicas"] == 3
    assert options["max_ongoing_requests"] == 16 + 2 * 8
    assert "max_queued_requests" not in options  # Ray must not answer a burst with its own 503
    assert options["graceful_shutdown_timeout_s"] == ServerConfig().drain_timeout_s
    assert options["ray_actor_options"] == {"num_cpus": 2}
    seed = deployment_options(SeedPagePolicy(), ServerConfig(max_queue=16), 1, 1)
    assert seed["max_ongoing_requests"] >= 16 + 2


def test_each_replica_gets_its_share_of_the_cpus_and_torch_threads_to_match() -> None:
    assert cpus_per_replica(ServerConfig(), 2, cluster_cpus=2, node_cpus=2) == 1
    assert cpus_per_replica(ServerConfig(), 1, cluster_cpus=2, node_cpus=2) == 2
    assert cpus_per_replica(ServerConfig(), 2, cluster_cpus=32, node_cpus=8) == 8
    assert cpus_per_replica(ServerConfig(torch_threads=1), 1, cluster_cpus=2, node_cpus=2) == 1
    with pytest.raises(InvalidSetting, match="3 replicas of 1 CPUs each need 3 CPUs"):
        cpus_per_replica(ServerConfig(), 3, cluster_cpus=2, node_cpus=2)
    assert replica_config(ServerConfig(max_queue=5), 2) == ServerConfig(max_queue=5, torch_threads=2)


def test_the_combined_stats_add_up_counts_and_keep_each_replica() -> None:
    a = {"model": "m", "state": "running", "requests": 3, "requests_by_status": {"200": 2, "503": 1}, "batches": 2}
    a |= {"batch_size_histogram": {"1": 1, "2": 1}, "real_tokens": 10, "padded_tokens": 20, "model_busy_s": 0.5}
    a |= {"queue_depth": 1, "recent": {"answers_per_s": 1.5, "ok_per_s": 1.0}}
    b = {"model": "m", "state": "running", "requests": 4, "requests_by_status": {"200": 4}, "batches": 1}
    b |= {"batch_size_histogram": {"4": 1}, "real_tokens": 30, "padded_tokens": 30, "model_busy_s": 0.25}
    b |= {"queue_depth": 0, "recent": {"answers_per_s": 2.0, "ok_per_s": 2.0}}
    both = combine({"ra": a, "rb": b})
    assert both["requests"] == 7 and both["requests_by_status"] == {"200": 6, "503": 1}
    assert both["batches"] == 3 and both["batch_size_histogram"] == {"1": 1, "2": 1, "4": 1}
    assert both["mean_batch_size"] == 7 / 3 and both["padding_efficiency"] == 0.8
    assert both["queue_depth"] == 1 and both["model_busy_s"] == 0.75
    assert both["recent"] == {"answers_per_s": 3.5, "ok_per_s": 3.0}
    assert set(both["replicas"]) == {"ra", "rb"} and both["state"] == "running"


def test_a_loaded_model_is_refused_because_it_would_be_pickled_to_every_replica() -> None:
    with pytest.raises(InvalidSetting, match="each replica loads its own copy"):
        pipeserve_nb.serve_on_ray(model=object())
    with pytest.raises(InvalidSetting, match="replicas must be an int >= 1"):
        pipeserve_nb.serve_on_ray(replicas=0)


def test_a_ray_client_address_is_refused_with_the_way_that_works(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidSetting, match=r"ray_address='ray://head:10001' is a Ray Client address.*'auto'"):
        pipeserve_nb.serve_on_ray(address="ray://head:10001")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with pytest.raises(InvalidSetting, match=r"\$RAY_ADDRESS='ray://head:10001' is a Ray Client address"):
        pipeserve_nb.serve_on_ray()


def test_importing_the_package_does_not_import_ray() -> None:
    probe = "import sys, pipeserve_nb, pipeserve_nb._server.run.cli; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


def test_the_ray_command_line_refuses_a_bad_placement_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipeserve_nb._server.run.cli import main

    assert main(["serve", "--ray", "--replicas", "0"], env={}) == 2
    assert "replicas must be an int >= 1" in capsys.readouterr().err
    assert main(["serve", "--ray", "--ray-address", "ray://head:10001"], env={}) == 2
    assert "is a Ray Client address" in capsys.readouterr().err

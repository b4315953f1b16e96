"""The built wheel, installed where the source tree is not on the path, serves the bundled model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.gate  # the full gate: builds and installs a wheel

PROBE = """
import pathlib, sys
import pipeserve_nb

here = pathlib.Path(pipeserve_nb.__file__).resolve()
assert here.is_relative_to(pathlib.Path(sys.argv[1]).resolve()), f"imported from {here}"
import httpx
with pipeserve_nb.serve() as server:
    vector = server.query("served from the installed wheel")
    page = httpx.get(server.url, trust_env=False)  # the try-it page, a data file of the package
    assert page.status_code == 200 and "try the model" in page.text, page.status_code
print(len(vector), here.parent.name)
"""


def test_the_wheel_installs_and_serves_without_the_source_tree(tmp_path: Path) -> None:
    source, dist, site, elsewhere = (tmp_path / d for d in ("source", "dist", "site", "elsewhere"))
    elsewhere.mkdir()
    # a clean copy of what the wheel is built from: no stale build/ output of an earlier layout can slip in
    shutil.copytree(ROOT / "pipeserve_nb", source / "pipeserve_nb", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [wheel] = dist.glob("pipeserve_nb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for part in (
        "_server/core/engine.py",
        "_models/embedder.py",
        "_measure/runner.py",
        "_teaching/demo.py",
        "py.typed",
        "_server/edge/page.html",
    ):
        assert f"pipeserve_nb/{part}" in names, f"the wheel lacks {part}"

    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    # The dependencies come from this environment; pipeserve_nb comes from the wheel (PYTHONPATH wins over
    # the editable install's finder), and the working directory is not the source tree.
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(site)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["384", "pipeserve_nb"]

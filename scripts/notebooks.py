"""Execute the notebooks with a real Jupyter kernel; write the executed copies and HTML.

    python scripts/notebooks.py                  # full workloads -> build/notebooks/*.html
    python scripts/notebooks.py --ci             # CI mode: small workloads, every cell run
    python scripts/notebooks.py --ci 03-*.ipynb  # some of them

Cells tagged ``raises-exception`` may fail on purpose; any other error stops the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BUILD = Path(__file__).resolve().parent.parent / "build" / "notebooks"
CELL_TIMEOUT_S = 300


def kernel_env(ci: bool) -> dict[str, str]:
    """The kernel's environment: offline, and with ``CI`` set exactly when asked for."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HF_HUB_OFFLINE"] = "1"
    if ci:
        env["CI"] = "1"
    return env


PROBE = "import json as _json, pipeserve_nb as _ps\nprint(_json.dumps(_ps.Findings.recorded()))"
"""Run after the last cell: the lesson's findings (``Findings.recorded()``), for the tests and tools."""


def execute(
    path: Path, out: Path, *, ci: bool, timeout_s: int = CELL_TIMEOUT_S, **client_options: Any
) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel; write ``out/NAME.ipynb`` and ``out/NAME.html``.

    The lesson's findings go in the executed notebook's metadata (``metadata.pipeserve.findings``), where
    the tests read them and a reader does not see them, with the run's wall time
    (``metadata.pipeserve.wall_s``). ``client_options`` go to nbclient's ``NotebookClient`` (its hooks,
    such as ``on_cell_execute``, let a test act around chosen cells).
    """
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        **client_options,
    )
    started = time.monotonic()
    client.execute(env=kernel_env(ci))
    wall_s = time.monotonic() - started
    probe = nb.cells.pop()
    printed = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream" and o.name == "stdout")
    nb.metadata["pipeserve"] = {"findings": json.loads(printed.strip().splitlines()[-1]), "wall_s": round(wall_s, 1)}
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})  # a streamed answer's pieces read as one text
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out / path.with_suffix(".html").name).write_text(html)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: all in notebooks/)")
    parser.add_argument("--ci", action="store_true", help="small workloads (sets CI in the kernel)")
    parser.add_argument("--out", type=Path, default=BUILD, help="where executed notebooks and HTML go")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / name for name in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        nb = execute(path, args.out, ci=args.ci)
        findings = nb.metadata["pipeserve"]["findings"] or {}
        unmet = "; ".join(f"{k}: {v}" for k, v in findings.get("unmet", {}).items())
        print(
            f"  -> {args.out / path.with_suffix('.html').name} in {nb.metadata['pipeserve']['wall_s']:.0f} s"
            + (f"; this run could not show {unmet}" if unmet else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

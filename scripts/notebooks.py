"""Execute the notebooks with a real Jupyter kernel; write the executed copies and HTML.

    python scripts/notebooks.py                  # full workloads -> build/notebooks/*.html
    python scripts/notebooks.py --ci             # CI mode: small workloads, every cell run
    python scripts/notebooks.py --ci 03-*.ipynb  # some of them

Cells tagged ``raises-exception`` may fail on purpose; any other error stops the run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

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


def execute(path: Path, out: Path, *, ci: bool, timeout_s: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel; write ``out/NAME.ipynb`` and ``out/NAME.html``."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=kernel_env(ci))
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    html, _ = HTMLExporter().from_notebook_node(_for_readers(nb))
    (out / path.with_suffix(".html").name).write_text(html)
    return nb


FINDINGS = "application/vnd.pipeserve.findings+json"
"""The lessons' machine-readable findings (for the tests): kept in the executed notebook, left out of its HTML."""


def _for_readers(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without the outputs only the tests read."""
    copy = nbformat.from_dict(nb)
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if FINDINGS not in o.get("data", {})]
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: all in notebooks/)")
    parser.add_argument("--ci", action="store_true", help="small workloads (sets CI in the kernel)")
    parser.add_argument("--out", type=Path, default=BUILD, help="where executed notebooks and HTML go")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / name for name in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        execute(path, args.out, ci=args.ci)
        print(f"  -> {args.out / path.with_suffix('.html').name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

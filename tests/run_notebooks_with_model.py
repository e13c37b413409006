"""Execute every notebook with another model in its settings cell, to check the series works with it.

    python tests/run_notebooks_with_model.py efficientnet_lite1 efficientnet_lite2 [--notebooks 01 03]

For each model and notebook, a temporary copy gets ``MODEL = "<model>"`` in place of
the settings cell's ``MODEL = ...`` line and runs top to bottom in a fresh kernel from
notebooks/ (so relative paths work). The stored notebooks are not touched. Prints one
line per run and exits 1 when any run failed (with the failing cell's error). Not a
pytest test: it takes minutes per model (``make check-models``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SETTING = re.compile(r'^MODEL = .*$', re.M)


def with_model(notebook: nbformat.NotebookNode, model: str) -> nbformat.NotebookNode:
    """The notebook with its settings cell's ``MODEL = ...`` line set to ``model``."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and SETTING.search(cell.source):
            cell.source = SETTING.sub(f"MODEL = {model!r}", cell.source, count=1)
            return notebook
    raise ValueError("no settings cell with a 'MODEL = ...' line")


def run(path: Path, model: str, timeout: int) -> str | None:
    """Execute a copy of the notebook at ``path`` with ``model``; None when it ran, else the error."""
    notebook = with_model(nbformat.read(path, as_version=4), model)
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    except (CellExecutionError, ValueError) as e:
        return str(e).strip().splitlines()[-1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="registry names, e.g. efficientnet_lite1")
    parser.add_argument("--notebooks", nargs="*", default=None, help="number prefixes to run (default: all)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        paths = [p for p in paths if p.name[:2] in args.notebooks]
    failed = 0
    for model in args.models:
        for path in paths:
            start = time.perf_counter()
            error = run(path, model, args.timeout)
            failed += error is not None
            print(f"{model:<20} {path.name:<45} {'ok' if error is None else 'FAILED: ' + error} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

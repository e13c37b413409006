"""The notebooks as stored: what nbval compares, and what every stored notebook must be."""
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from support import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"


def sanitized(text: str) -> str:
    for regex, replace in get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


def test_only_the_digits_after_the_approximate_sign_are_left_out():
    assert sanitized("tusker ≈0.39, 0.390 ≈ 12 of 22 ≈90% ≈-0.05 ≈1,281 ≈2e-05 ≈1e+05 ≈29, best (7, 7)") == \
        "tusker ≈…, 0.390 ≈… of 22 ≈… ≈… ≈… ≈… ≈… ≈…, best (7, 7)"


def _notebook(path, cells):
    book = nbformat.v4.new_notebook()
    for count, (code, printed) in enumerate(cells, 1):
        cell = nbformat.v4.new_code_cell(code, execution_count=count)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
        book.cells.append(cell)
    nbformat.write(book, path)


def test_nbval_uses_the_sanitizer_of_the_notebooks_folder(tmp_path):
    # A copy of notebooks/conftest.py and the sanitizer beside two cells whose stored outputs differ
    # from what they print: in a digit after "≈" (passes), and in a digit without it (fails).
    for name in ("conftest.py", "nbval_sanitize.cfg"):
        shutil.copy(ROOT / "notebooks" / name, tmp_path / name)
    code = 'print(f"score ≈{0.123:.2f}, exact {0.12}")'
    _notebook(tmp_path / "check.ipynb", [(code, "score ≈0.99, exact 0.12\n"), (code, "score ≈0.12, exact 0.13\n")])
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
                          "-q", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert "1 failed, 1 passed" in run.stdout, run.stdout
    assert "check.ipynb::Cell 1" in run.stdout and "exact 0.13" in run.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_stored_notebook_ran_in_order_from_a_clean_kernel(path):
    book = nbformat.read(path, as_version=4)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run `make outputs`"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    assert not [cell for cell in book.cells if "execution" in cell.metadata]  # timestamps: `make outputs` drops them
    assert path.stat().st_size < 1.5e6
    # An output nbval does not compare is checked by an assert in the same cell.
    for cell in code:
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            assert re.search(r"^\s*assert ", cell.source, re.MULTILINE), cell.source[:80]

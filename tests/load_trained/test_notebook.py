"""The example notebook runs green in a real Jupyter kernel (nbclient), as in CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support import REPO

NOTEBOOK = REPO / "examples" / "notebook.ipynb"

pytestmark = pytest.mark.slow


def _kernel_for_this_python(root: Path) -> Path:
    """A ``python3`` kernel spec that runs the interpreter running the tests.

    Jupyter takes the first ``python3`` spec on its path; one installed for another Python
    would run the notebook without Forge installed, so this one goes first (JUPYTER_PATH).
    """
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    return root


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_runs_green(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_for_this_python(tmp_path / "jupyter")))
    monkeypatch.setenv("FORGE_NOTEBOOK_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    assert list((tmp_path / "results").glob("*/*/*/_SUCCESS")), "the notebook trained nothing"
    printed = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "test accuracy" in printed

"""course.notebooks: notebooks/ in step with the scripts, and lab01's notebook run as a student would."""

import json

import nbformat
import pytest

from course import notebooks

from fakes import REPO_ROOT


def test_every_notebook_matches_its_script():
    out_of_date = notebooks.stale()
    assert not out_of_date, f"regenerate with `python -m course.notebooks`: {out_of_date}"


def test_a_changed_script_makes_its_notebook_stale(tmp_path):
    for script in notebooks.SCRIPTS:
        (tmp_path / script).write_text((REPO_ROOT / script).read_text())
    notebooks.write_all(tmp_path)
    assert notebooks.stale(tmp_path) == []
    changed = tmp_path / "lab01_mnist.py"
    changed.write_text(changed.read_text().replace("## Setup", "## Set-up"))
    assert notebooks.stale(tmp_path) == ["lab01_mnist.py"]


def test_title_cell_comes_from_the_docstring_and_setup_cell_finds_the_repository():
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "lab01_mnist.ipynb", as_version=4)
    title, setup = notebook.cells[0], notebook.cells[1]
    assert title.cell_type == "markdown"
    assert title.source.startswith("# Softmax regression and a small CNN on MNIST\n\nThe lab's first section.")
    assert "```bash\npython lab01_mnist.py --epochs 1 --limit 2000" in title.source
    assert setup.cell_type == "code" and "sys.path.insert(0, str(repository))" in setup.source
    assert not any(cell.get("outputs") for cell in notebook.cells)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and 'ARGS = ""' in parameters[0].source


def test_docstring_fields_keep_continuation_lines():
    fields = notebooks.docstring_fields("\nTitle: A\nDescription: one\n    two\nRun: python x.py\n    python y.py\n")
    assert fields == {"Title": "A", "Description": "one\ntwo", "Run": "python x.py\n    python y.py"}


@pytest.mark.slow
def test_lab01_notebook_runs_from_notebooks_folder_and_shows_its_figures(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks Jupyter's inline backend
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "lab01_mnist.ipynb", as_version=4)
    (parameters,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    out = tmp_path / "out"
    parameters.source = f'ARGS = "--data standin --epochs 1 --limit 300 --out {out}"'
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}})
    client.execute()
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) == 3  # sample digits, predictions, training curves: each shown once
    echoed = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "execute_result"]
    assert not echoed, echoed  # no PosixPath(...) or repeated summary line under a cell
    text = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "lab01 (stand-in data) | dataset=mnist" in text
    assert "oneDNN" not in text and "absl::InitializeLog" not in text
    # Nothing on stderr in any cell: no warning (TqdmWarning, UserWarning, ...), no start-up notice.
    stderr = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "stream" and output.name == "stderr"]
    assert not stderr, stderr
    assert "Warning" not in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["settings"]["epochs"] == 1  # ARGS was read
    assert {"sample_digits.png", "predictions.png", "training_curves.png"} <= {path.name for path in out.iterdir()}

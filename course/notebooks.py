"""Notebooks generated from the lab scripts: ``python -m course.notebooks``.

The scripts are the source (``# %%`` cells, jupytext's py:percent format); the
notebooks in ``notebooks/`` are generated from them, never edited by hand. Each
notebook opens with

1. a markdown title cell made from the script's docstring (``Title:`` as a ``#``
   heading, ``Description:`` as text, the other fields below it);
2. a code cell that makes the repository importable (so ``common`` and
   ``tfrecord_tools`` import when the notebook is opened from ``notebooks/``) and
   runs from the repository's folder, so outputs land where the script's would;

and then has the script's own cells, outputs stripped. The ``ARGS`` parameters
cell keeps its ``parameters`` tag (papermill's convention). A cell that ends with a
``run.<method>(...)`` call gets a ``;`` after it, so Jupyter does not echo its
return value (a path, the summary line already printed).

Usage::

    python -m course.notebooks            # (re)write notebooks/<script>.ipynb for every script
    python -m course.notebooks --check    # exit 1 if a notebook is out of date with its script
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import jupytext
import nbformat

from common.files import atomic_path

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPTS = ("lab01_mnist.py", "lab02_cifar_baselines.py", "lab03_cifar_cnn.py", "lab04_pipeline.py",
           "assignment_wildlife.py", "distributed_cifar_cnn.py")
FOLDER = "notebooks"

SETUP_CELL = '''\
# Make the repository importable (common, tfrecord_tools) and run from its folder,
# so outputs land where the script's would, also when this notebook is opened from notebooks/.
import os
import sys
from pathlib import Path

repository = next((folder for folder in [Path.cwd(), *Path.cwd().parents] if (folder / "common").is_dir()), None)
if repository is None:
    raise RuntimeError("open this notebook from inside the course repository (its notebooks/ folder)")
sys.path.insert(0, str(repository))
os.chdir(repository)'''

_FIELD = re.compile(r"^([A-Z][A-Za-z ]*):\s?(.*)$")


def docstring_fields(docstring: str) -> dict[str, str]:
    """``{"Title": ..., "Description": ..., ...}`` from a keras-io style docstring.

    A field starts with ``Name:`` at the start of a line; indented lines that
    follow continue it. Lines before the first field go to ``"Description"``.
    """
    fields: dict[str, list[str]] = {}
    current = "Description"
    for line in docstring.strip("\n").splitlines():
        match = _FIELD.match(line)
        if match and not line[:1].isspace():
            current = match.group(1)
            fields[current] = [match.group(2)]
        else:
            fields.setdefault(current, []).append(line.strip() if current != "Run" else line.rstrip())
    return {name: "\n".join(lines).strip() for name, lines in fields.items() if "".join(lines).strip()}


def title_cell(docstring: str, script: str) -> str:
    """The markdown of a notebook's first cell, made from the script's docstring."""
    fields = docstring_fields(docstring)
    title = fields.pop("Title", Path(script).stem)
    parts = [f"# {title}"]
    description = fields.pop("Description", "")
    if description:
        parts.append(" ".join(description.split()))
    for name, text in fields.items():
        if name == "Run":
            commands = "\n".join(line.strip() for line in text.splitlines())
            parts.append(f"**Run** (as a script):\n\n```bash\n{commands}\n```")
        else:
            parts.append(f"**{name}:** {' '.join(text.split())}")
    parts.append(f"*Generated from `{script}` by `python -m course.notebooks`: edit the script, "
                 "not this notebook. Set the flags in the `ARGS` cell below, then Run All.*")
    return "\n\n".join(parts)


def notebook_for(script: str | Path) -> nbformat.NotebookNode:
    """The notebook for ``script`` (a path to a py:percent script), outputs stripped."""
    script = Path(script)
    notebook = jupytext.reads(script.read_text(encoding="utf-8"), fmt="py:percent")
    cells = list(notebook.cells)
    docstring = ""
    if cells and cells[0].cell_type == "code":
        docstring, rest = _split_docstring(cells[0].source)
        if docstring is not None:
            cells = cells[1:]
            if rest.strip():  # code that shares the docstring's cell stays a code cell
                cells.insert(0, nbformat.v4.new_code_cell(rest.strip("\n")))
    new = nbformat.v4.new_notebook()
    new.cells = [nbformat.v4.new_markdown_cell(title_cell(docstring or "", script.name)),
                 nbformat.v4.new_code_cell(SETUP_CELL)]
    for cell in cells:
        metadata = {key: value for key, value in cell.metadata.items() if key == "tags"}
        if cell.cell_type == "markdown":
            new.cells.append(nbformat.v4.new_markdown_cell(cell.source, metadata=metadata))
        else:
            new.cells.append(nbformat.v4.new_code_cell(_quiet_last_call(cell.source), metadata=metadata))
    for index, cell in enumerate(new.cells):
        cell.id = f"{script.stem.replace('_', '-')}-{index}"  # stable ids: regenerating changes nothing
    new.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    return new


def _split_docstring(source: str) -> tuple[str | None, str]:
    """The module docstring at the top of ``source`` (or None) and the code after it."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None, source
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(getattr(body[0], "value", None), ast.Constant) \
            or not isinstance(body[0].value.value, str):
        return None, source
    lines = source.splitlines()
    return body[0].value.value, "\n".join(lines[body[0].end_lineno:])


def _quiet_last_call(source: str) -> str:
    """Add ``;`` after a cell's last statement when it is a ``run.<method>(...)`` call.

    Jupyter shows the value of a cell's last expression: ``run.save_figure`` returns
    the figure's path and ``run.finish`` the summary line it already printed. The
    semicolon keeps that echo out of the notebook.
    """
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return source
    last = body[-1] if body else None
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and isinstance(last.value.func, ast.Attribute) and isinstance(last.value.func.value, ast.Name)
            and last.value.func.value.id == "run"):
        return source
    lines = source.splitlines()
    end = last.end_lineno - 1
    lines[end] = lines[end][:last.end_col_offset] + ";" + lines[end][last.end_col_offset:]
    return "\n".join(lines)


def notebook_path(script: str, repository: Path = REPOSITORY) -> Path:
    return repository / FOLDER / (Path(script).stem + ".ipynb")


def cell_sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """``[(cell_type, source), ...]``: what must match between a script and its notebook."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def stale(repository: Path = REPOSITORY) -> list[str]:
    """Scripts whose committed notebook is missing or differs from a fresh one (cell sources)."""
    out_of_date = []
    for script in SCRIPTS:
        path = notebook_path(script, repository)
        if not (repository / script).exists():
            continue
        if not path.exists() or cell_sources(nbformat.read(path, as_version=4)) != \
                cell_sources(notebook_for(repository / script)):
            out_of_date.append(script)
    return out_of_date


def write_all(repository: Path = REPOSITORY) -> list[Path]:
    """Write ``notebooks/<script>.ipynb`` for every script (atomically); returns the paths."""
    written = []
    for script in SCRIPTS:
        if not (repository / script).exists():
            continue
        path = notebook_path(script, repository)
        with atomic_path(path) as temporary:
            nbformat.write(notebook_for(repository / script), str(temporary))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name the scripts whose notebook is out of date")
    arguments = parser.parse_args(argv)
    if arguments.check:
        out_of_date = stale()
        for script in out_of_date:
            print(f"{notebook_path(script).relative_to(REPOSITORY)} is out of date with {script}: "
                  "run python -m course.notebooks")
        if not out_of_date:
            print(f"all {len(SCRIPTS)} notebooks match their scripts")
        return 1 if out_of_date else 0
    for path in write_all():
        print(f"wrote {path.relative_to(REPOSITORY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

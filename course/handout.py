"""Make the student handout of the assignment from the reference solution.

    python -m course.handout OUT_DIR      # OUT_DIR/ and OUT_DIR.zip

The solution, ``assignment_wildlife.py``, marks what students write with nbgrader's
fences (``### BEGIN SOLUTION`` / ``### END SOLUTION``), each under a ``# TODO N: ...``
comment that stays. :func:`strip_solutions` replaces every fenced block by
``# YOUR CODE HERE`` and ``raise NotImplementedError("TODO N: ...")`` (nbgrader's stub,
naming its TODO), so the starter still runs: the script skips what is not written
yet and says which TODO it waits for. Teachers who grade with nbgrader can use the
same fences in the notebook made from the script.

The handout holds the starter, what it imports (``common/`` without this folder,
``tfrecord_tools/``), ``requirements.txt`` and a short student README.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from course.notebooks import notebook_for

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "assignment_wildlife.py"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINTS_MARKER = "# Hints:"
# What outputs/assignment/ takes, .resume/ left out, measured on the stand-in: 5.2 MB for --check's 375
# photos, 3.7 MB of it TFRecords (10 KB a photo at 300 px). Real photos compress less than the stand-in's
# shapes; Oregon Wildlife itself could not be measured here.
HANDIN_SIZE = "1.5 MB of figures and tables plus the TFRecords: 10 KB a photo on the stand-in, more on real photos"
NOTEBOOK = "assignment_wildlife.ipynb"
STUB = "# YOUR CODE HERE"
TODO_LINE = re.compile(r"^\s*# (TODO \d+: [^.]+)")
PACKAGES = ("common", "tfrecord_tools")


def fences(text: str):
    """Yield ``(begin line index, end line index, TODO title or None)`` of every fenced block."""
    lines = text.splitlines()
    begin = None
    for number, line in enumerate(lines):
        marker = line.strip()
        if marker == BEGIN:
            if begin is not None:
                raise ValueError(f"line {number + 1}: {BEGIN} inside the block opened on line {begin + 1}")
            begin = number
        elif marker == END:
            if begin is None:
                raise ValueError(f"line {number + 1}: {END} without a {BEGIN} before it")
            title = None
            for previous in range(begin - 1, -1, -1):  # the nearest TODO in the comment block above
                if not lines[previous].strip().startswith("#"):
                    break
                match = TODO_LINE.match(lines[previous])
                if match:
                    title = match.group(1).strip()
                    break
            yield begin, number, title
            begin = None
    if begin is not None:
        raise ValueError(f"line {begin + 1}: {BEGIN} is never closed by {END}")


def strip_solutions(text: str, *, hints: bool = True) -> str:
    """The starter: each fenced block replaced by ``# YOUR CODE HERE`` and a NotImplementedError naming its TODO.

    ``hints=False`` also drops each TODO's ``# Hints:`` comment lines (everything from
    that line to the block), leaving the task alone: a harder assignment.
    """
    lines = text.splitlines()
    output, position = [], 0
    for begin, end, title in fences(text):
        above = lines[position:begin]
        if not hints:
            marker = next((number for number in range(len(above) - 1, -1, -1)
                           if above[number].strip() == HINTS_MARKER), None)
            if marker is not None and all(line.strip().startswith("#") for line in above[marker:]):
                above = above[:marker]
        output += above
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        output += [f"{indent}{STUB}", f'{indent}raise NotImplementedError("{title.replace(chr(34), chr(39))}")' if title
                   else f"{indent}raise NotImplementedError()"]
        position = end + 1
    output += lines[position:]
    return "\n".join(output) + ("\n" if text.endswith("\n") else "")


def solution_lines(text: str) -> list[str]:
    """The non-blank lines inside the fences (for tests: none of them may stand in the starter)."""
    lines = text.splitlines()
    return [lines[number] for begin, end, _ in fences(text) for number in range(begin + 1, end)
            if lines[number].strip()]


STUDENT_README = """\
# Assignment: Oregon Wildlife input pipelines

Implement the input pipelines of a CNN that classifies 10 kinds of wildlife, write and
read TFRecords, and explain where the time goes. `assignment_wildlife.py` runs from the
start: what you have not written yet is skipped, with a line naming its TODO, so your
first run already shows the naive pipeline and its timeline. Search for `# TODO`:

{todos}

## Setup

    python -m pip install -r requirements.txt

## The data

Oregon Wildlife is the Kaggle dataset "oregon-wildlife" by virtualdvid
(<https://www.kaggle.com/datasets/virtualdvid/oregon-wildlife>; downloading needs a free
Kaggle login). The lab used a filtered copy with these 10 classes:
bald_eagle, black_bear, cougar, deer, nutria, raccoon, raven, red_fox, sea_lions,
virginia_opossum. Keep those 10 folders as `oregon_wildlife/<class>/*.jpg` (remove the
others). The lab printed `total img num: 7168` after dropping `.gif` and `.bmp` files; the
script checks every file by its content instead, so your count may differ a little (the
dropped files are listed in `metrics.json`).

Without the data, the script uses a generated stand-in (shapes on textures, marked as
"stand-in" in every output): good for writing and testing your code, not for your answers.

## Runs

    python assignment_wildlife.py --limit 200 --epochs 2          # quick, offline, on the stand-in
    python assignment_wildlife.py --data-dir oregon_wildlife      # the real run (3 epochs; more is fine)
    python assignment_wildlife.py --check                         # your code measured + rubric (a few minutes)
    python assignment_wildlife.py --help                          # every flag

Or open `assignment_wildlife.ipynb` (the same code as a notebook: `python -m pip install
jupyterlab`, then `jupyter lab assignment_wildlife.ipynb`) and set the flags in its `ARGS` cell.

Outputs go to `outputs/assignment/` (`--out` to change it). An interrupted run (Ctrl-C)
resumes where it stopped when you run the same command again; `--fresh` starts over, and
so does any run after you edit the script.

## The rubric

`--check` measures your code itself (each pipeline's `tf.data` graph, every epoch it
yields, whether each image keeps its label, the speed of the pipelines on their own),
runs the script quickly, and prints one line per requirement, grouped by TODO:
PASS or FAIL with what it measured; your answers are marked READ, for your teacher.
Two lines time things: the optimized pipeline against the augmentation pipeline, and the
trainer's wait for input. Both are measured so that a busy laptop slows every pipeline
alike, but a machine busy enough (a video call, a compile) can still push them: if only
a timing line fails, close other programs and run `--check` again.

## What to hand in

1. your completed `assignment_wildlife.py` (or the notebook, if you worked there);
2. the output folder of your real run, `outputs/assignment/`, without its hidden
   `.resume/` folder (checkpoints and the starting weights, not needed): metrics.json,
   results.md, analysis.md, train.csv, test.csv, the figures and `tfrecords/` (about
   {handin_size});
3. your answers: TODO 6 writes them into `analysis.md`, under the lab's questions.

Run `python assignment_wildlife.py --check` before you hand in: every line should say PASS
(or READ, for the answers).
"""


HANDOUT_MARK = ".handout"  # marks a folder this command wrote, the only kind --overwrite replaces


def make_handout(out_dir: str | Path, *, overwrite: bool = False, hints: bool = True) -> tuple[Path, Path]:
    """Write the handout folder ``out_dir`` and ``out_dir.zip``; returns both paths.

    The folder holds the starter script and the same as a notebook, ``common/``,
    ``tfrecord_tools/``, ``requirements.txt`` and the student README. ``hints=False``
    leaves the TODOs' hints out (see :func:`strip_solutions`).
    """
    out_dir = Path(out_dir).resolve()
    repository = REPO_ROOT.resolve()
    if out_dir == repository or out_dir in repository.parents or repository in out_dir.parents:
        raise SystemExit(f"error: {out_dir} is, holds or lies inside the repository {repository}: write the "
                         "handout to a folder outside it (for example ../handout)")
    if out_dir.exists() and not out_dir.is_dir():
        raise SystemExit(f"error: {out_dir} is a file; give a folder name for the handout")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise SystemExit(f"error: {out_dir} exists and is not empty; choose a new folder or pass --overwrite")
        if not (out_dir / HANDOUT_MARK).is_file():
            raise SystemExit(f"error: {out_dir} is not a handout this command wrote (no {HANDOUT_MARK}): "
                             "--overwrite replaces only such a folder; choose a new folder")
    solution = (REPO_ROOT / SCRIPT).read_text(encoding="utf-8")
    starter = strip_solutions(solution, hints=hints)
    todos = "\n".join(f"- {title}" for _, _, title in fences(solution) if title)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        (staging / SCRIPT).write_text(starter, encoding="utf-8")
        nbformat.write(notebook_for(staging / SCRIPT), staging / NOTEBOOK)
        # Only the sources: no caches, editor or patch leftovers, hidden files.
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.orig", "*.rej", "*~", ".*")
        for package in PACKAGES:
            shutil.copytree(REPO_ROOT / package, staging / package, ignore=ignore)
        shutil.copy2(REPO_ROOT / "requirements.txt", staging / "requirements.txt")
        (staging / "README.md").write_text(STUDENT_README.format(todos=todos, handin_size=HANDIN_SIZE),
                                           encoding="utf-8")
        (staging / ".gitignore").write_text("outputs/\n__pycache__/\n", encoding="utf-8")
        (staging / HANDOUT_MARK).write_text("written by python -m course.handout; --overwrite may "
                                            "replace this folder\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private to its owner
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The zip under a temporary name first: an interrupted run never leaves half a zip.
    partial = Path(shutil.make_archive(str(out_dir.parent / f".{out_dir.name}.partial"), "zip",
                                       root_dir=out_dir.parent, base_dir=out_dir.name))
    zip_path = partial.replace(out_dir.with_name(out_dir.name + ".zip"))
    return out_dir, zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.handout",
                                     description="Make the student handout of assignment_wildlife.py: a folder "
                                                 "and a zip with the starter script, common/, "
                                                 "tfrecord_tools/, requirements.txt and a README.")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="folder to create (OUT_DIR.zip is made beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    parser.add_argument("--no-hints", dest="hints", action="store_false",
                        help="leave out the TODOs' hints (their '# Hints:' lines): only the tasks stay")
    arguments = parser.parse_args(argv)
    folder, zip_path = make_handout(arguments.out, overwrite=arguments.overwrite, hints=arguments.hints)
    starter_lines = len((folder / SCRIPT).read_text(encoding="utf-8").splitlines())
    print(f"handout: {folder}/ ({SCRIPT}: {starter_lines} lines) and {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

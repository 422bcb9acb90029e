"""Grade a class's assignment submissions in one command: each student's code probed, scored, written to a gradebook.

    python -m course.grade SUBMISSIONS --out GRADES            # the code itself (probe): about a minute each
    python -m course.grade SUBMISSIONS --out GRADES --train    # and a quick training run: a few minutes each

``SUBMISSIONS`` holds one folder per student, each with the student's
``assignment_wildlife.py`` (anywhere inside) and, if handed in, the output folder of
their real run (the folder that holds ``metrics.json``). One student at a time, so the
timing lines never measure the grader's own load:

1. the student's files are copied into a fresh work folder, and the course's own
   ``common/`` and ``tfrecord_tools/`` put in place of any the student sent (an edited
   rubric never grades itself); nothing is ever written into ``SUBMISSIONS``;
2. the script runs with ``--probe`` (and with ``--train``, the quick ``--check`` run),
   in its own process, within ``--time-limit`` seconds for the whole student;
3. the rubric's lines (:mod:`common.assignment_check`) are scored with the points table
   ``course/points.toml``; without ``--train`` the run's lines come from the handed-in
   folder (the student's own numbers, checked against each other).

Writes ``GRADES/gradebook.csv`` (one row per student: score, each TODO's points, the
failed lines, the answers to read, what was graded) and, per student,
``GRADES/<student>/results.json`` in the Gradescope autograder format and
``rubric.txt``. On Gradescope, ``--one /autograder/submission --results
/autograder/results/results.json`` grades the single submission there.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from common import assignment_check  # noqa: E402
from common.assignment_check.rubric import SECTIONS, Line, format_rubric  # noqa: E402
from common.files import atomic_path, file_sha256, write_json  # noqa: E402

SCRIPT = "assignment_wildlife.py"
COURSE_PACKAGES = ("common", "tfrecord_tools")
POINTS = REPO_ROOT / "course" / "points.toml"
TODOS = [section for section in SECTIONS if section != "graded"]


def points_table(path: Path = POINTS) -> dict[str, float]:
    """``{line id or TODO: points}`` from the teacher's table."""
    with open(path, "rb") as handle:
        return {key: float(value) for key, value in tomllib.load(handle).get("points", {}).items()}


def todo_points(section: str, table: dict[str, float]) -> float:
    """All the points of a TODO (or of the run): its own entry and those of its lines."""
    return table.get(section, 0.0) + sum(value for key, value in table.items() if key.startswith(section + "."))


def line_points(lines: list[Line], table: dict[str, float]) -> dict[str, float]:
    """The points each scored line is worth: its own entry, else an equal share of what its section has left.

    A line that stands for a whole TODO (``todo3.written`` when the pipeline does not
    run, ``todo3.measured`` when nothing was probed) is worth all of it, so every
    student is graded out of the same total.
    """
    scored = [line for line in lines if line.status in ("PASS", "FAIL", "SKIP")]
    worth = {}
    for section in {line.section for line in scored}:
        mine = [line for line in scored if line.section == section]
        unnamed = [line for line in mine if line.id not in table]
        left = todo_points(section, table) - sum(table[line.id] for line in mine if line.id in table)
        for line in mine:
            worth[line.id] = table[line.id] if line.id in table else max(left, 0.0) / len(unnamed)
    return worth


def find_script(folder: Path) -> Path | None:
    """The student's ``assignment_wildlife.py``: the shallowest one outside the course's packages."""
    found = [path for path in folder.rglob(SCRIPT)
             if not set(path.relative_to(folder).parts[:-1]) & {*COURSE_PACKAGES, ".resume", "__pycache__"}]
    return min(found, key=lambda path: len(path.parts)) if found else None


def find_handed_in(folder: Path) -> Path | None:
    """The output folder of the student's own run: a folder with ``metrics.json`` and ``results.md``."""
    found = sorted((path.parent for path in folder.rglob("metrics.json") if (path.parent / "results.md").is_file()
                    and ".resume" not in path.parts), key=lambda path: len(path.parts))
    return found[0] if found else None


def workspace_for(submission: Path, script: Path, work: Path) -> Path:
    """A copy of the student's files beside clean copies of the course's packages; returns the script's copy."""
    folder = work / "code"
    ignore = shutil.ignore_patterns("outputs", "__pycache__", ".resume", "*.tfrecord-*", *COURSE_PACKAGES)
    shutil.copytree(script.parent, folder, ignore=ignore, symlinks=False)
    for package in COURSE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    return folder / SCRIPT


def grade_submission(submission: Path, work: Path, *, train: bool, time_limit: float, data: list[str],
                     limit: int = 300) -> dict:
    """Everything the grader learns about one submission: its lines, what was graded, how it went."""
    started = time.monotonic()
    script = find_script(submission)
    if script is None:
        return {"status": "no script", "lines": [], "detail": f"no {SCRIPT} in {submission}"}
    graded = {"script_sha256": file_sha256(script), "script": str(script.relative_to(submission))}
    code = workspace_for(submission, script, work)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    logs, status = [], "graded"
    steps = [("probe", ["--probe"])] + ([("run", [])] if train else [])
    for name, extra in steps:
        remaining = time_limit - (time.monotonic() - started)
        command = [sys.executable, SCRIPT, "--limit", str(limit), "--epochs", "3", *data, *extra, "--fresh",
                   "--out", str(work / name)]
        try:
            finished = subprocess.run(command, cwd=code.parent, env=environment, capture_output=True, text=True,
                                      timeout=max(remaining, 1))
            logs.append(f"$ {' '.join(command[1:])}\n{finished.stdout}{finished.stderr}")
        except subprocess.TimeoutExpired as expired:
            logs.append(f"$ {' '.join(command[1:])}\n(stopped after the time limit of {time_limit:.0f} s)\n"
                        f"{(expired.stdout or b'').decode(errors='replace')}")
            status = f"time limit ({time_limit:.0f} s) reached during the {name}"
            break
    probe = work / "probe" / "probe.json"
    handed_in = find_handed_in(submission)
    if train and (work / "run" / "metrics.json").is_file():
        folder = work / "run"
    elif handed_in is not None:
        folder = work / "handed_in"  # graded from a copy: the submission is only ever read
        shutil.copytree(handed_in, folder, ignore=shutil.ignore_patterns(".resume", "probe"), symlinks=True)
    else:
        folder = None
    if folder is not None:
        lines = assignment_check.grade(folder, probe if probe.is_file() else work / "missing.json")
    else:
        lines = [line for line in assignment_check.grade(work / "probe", probe) if not line.id.startswith("run.")]
        lines.append(Line("run.handed_in", "the output folder of a run", "SKIP",
                          "no output folder with metrics.json and results.md was handed in, and --train was not "
                          "given"))
    return {"status": status, "lines": lines, "graded": graded, "log": "\n".join(logs),
            "seconds": time.monotonic() - started, "folder": str(folder) if folder else None}


def gradescope_results(outcome: dict, table: dict[str, float]) -> dict:
    """The Gradescope autograder's ``results.json``: a test per rubric line, with the points of the table."""
    worth = line_points(outcome["lines"], table)
    tests = []
    for number, line in enumerate(outcome["lines"], start=1):
        maximum = worth.get(line.id, 0.0)
        tests.append({"name": f"{SECTIONS.get(line.section, line.section)}: {line.requirement}",
                      "number": f"{TODOS.index(line.section) + 1 if line.section in TODOS else 0}.{number}",
                      "score": maximum if line.status == "PASS" else 0.0, "max_score": maximum,
                      "status": {"PASS": "passed", "FAIL": "failed"}.get(line.status, "passed"),
                      "output": (f"{line.status}: {line.measured}" if line.status != "READ"
                                 else f"for the teacher to read: {line.measured}"),
                      "visibility": "visible"})
    score = sum(test["score"] for test in tests)
    graded = outcome.get("graded", {})
    summary = f"{outcome['status']}; script sha256 {graded.get('script_sha256', '?')[:12]}"
    return {"score": score, "output": summary, "execution_time": round(outcome.get("seconds", 0)),
            "tests": tests, "stdout_visibility": "hidden"}


def gradebook_row(student: str, outcome: dict, table: dict[str, float]) -> dict:
    worth = line_points(outcome["lines"], table)
    row = {"student": student, "status": outcome["status"]}
    score = maximum = 0.0
    for todo in TODOS:
        lines = [line for line in outcome["lines"] if line.section == todo]
        earned = sum(worth.get(line.id, 0.0) for line in lines if line.status == "PASS")
        possible = sum(worth.get(line.id, 0.0) for line in lines)
        row[todo] = f"{earned:g}/{possible:g}"
        score, maximum = score + earned, maximum + possible
    row["score"], row["max_score"] = f"{score:g}", f"{maximum:g}"
    row["failed"] = " ".join(line.id for line in outcome["lines"] if line.status == "FAIL")
    row["answers_to_read"] = sum(line.status == "READ" for line in outcome["lines"])
    row["graded"] = "; ".join(line.measured for line in outcome["lines"] if line.section == "graded")
    row["script_sha256"] = outcome.get("graded", {}).get("script_sha256", "")
    row["seconds"] = round(outcome.get("seconds", 0))
    return row


def grade_class(submissions: Path, out: Path, *, train: bool, time_limit: float, data: list[str],
                table: dict[str, float], limit: int = 300) -> list[dict]:
    """Grade every student folder in ``submissions`` into ``out``; returns the gradebook rows."""
    students = sorted(path for path in submissions.iterdir() if path.is_dir() and not path.name.startswith("."))
    rows = []
    for index, folder in enumerate(students, start=1):
        print(f"[{index}/{len(students)}] {folder.name}: ", end="", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"grade-{folder.name}-") as work:
            outcome = grade_submission(folder, Path(work), train=train, time_limit=time_limit, data=data,
                                       limit=limit)
            student_out = out / folder.name
            student_out.mkdir(parents=True, exist_ok=True)
            write_json(student_out / "results.json", gradescope_results(outcome, table))
            with atomic_path(student_out / "rubric.txt") as temporary:
                temporary.write_text(format_rubric(outcome["lines"], folder.name) + "\n\n" + outcome.get("log", ""),
                                     encoding="utf-8")
        row = gradebook_row(folder.name, outcome, table)
        rows.append(row)
        print(f"{row['score']}/{row['max_score']} ({row['status']}, {row['seconds']} s)", flush=True)
        _write_gradebook(out / "gradebook.csv", rows)  # after every student: an interrupted grading keeps its rows
    return rows


def _write_gradebook(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, nargs="?", help="a folder of student folders")
    parser.add_argument("--out", type=Path, help="where the gradebook and each student's results go")
    parser.add_argument("--one", type=Path,
                        help="grade this one submission folder (on Gradescope: /autograder/submission)")
    parser.add_argument("--results", type=Path, help="with --one: the results.json to write")
    parser.add_argument("--train", action="store_true", help="also run each script quickly (the training lines)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per student, all runs included (default: 300, or 1200 with --train)")
    parser.add_argument("--data-dir", type=Path, default=None, help="grade on these photos instead of the stand-in")
    parser.add_argument("--limit", type=int, default=300,
                        help="training photos each script runs on (default: 300, as --check; fewer is faster)")
    parser.add_argument("--points", type=Path, default=POINTS, help=f"points table (default: {POINTS})")
    arguments = parser.parse_args(argv)
    time_limit = arguments.time_limit or (1200.0 if arguments.train else 300.0)
    data = (["--data-dir", str(arguments.data_dir.resolve()), "--data", "real"] if arguments.data_dir
            else ["--data", "standin"])
    table = points_table(arguments.points)
    if arguments.one is not None:
        if arguments.results is None:
            parser.error("--one needs --results (where results.json goes)")
        with tempfile.TemporaryDirectory(prefix="grade-") as work:
            outcome = grade_submission(arguments.one, Path(work), train=arguments.train, time_limit=time_limit,
                                       data=data, limit=arguments.limit)
        arguments.results.parent.mkdir(parents=True, exist_ok=True)
        write_json(arguments.results, gradescope_results(outcome, table))
        print(format_rubric(outcome["lines"], arguments.one))
        return 0
    if arguments.submissions is None or arguments.out is None:
        parser.error("give SUBMISSIONS and --out GRADES (or --one SUBMISSION --results FILE)")
    if not arguments.submissions.is_dir():
        parser.error(f"{arguments.submissions} is not a folder of student folders")
    if arguments.out.resolve() == arguments.submissions.resolve() or \
            arguments.submissions.resolve() in arguments.out.resolve().parents:
        parser.error(f"--out {arguments.out} lies inside {arguments.submissions}: grades never go into the submissions")
    rows = grade_class(arguments.submissions, arguments.out, train=arguments.train, time_limit=time_limit,
                       data=data, table=table, limit=arguments.limit)
    print(f"{len(rows)} submission(s) graded: {arguments.out / 'gradebook.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

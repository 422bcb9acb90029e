"""course.grade: a class folder graded in one command, into a gradebook and Gradescope results, read-only."""

import csv
import hashlib
import json
import os
import shutil

import pytest

from course import grade

from fakes import REPO_ROOT, student_solution


def tree_digest(folder):
    """A digest of every file's path and bytes under ``folder``: equal digests, untouched folder."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_points_come_from_the_table_and_a_todo_is_always_worth_its_total():
    table = grade.points_table()
    assert grade.todo_points("todo3", table) == 30 and grade.todo_points("todo6", table) == 0
    assert sum(grade.todo_points(todo, table) for todo in grade.TODOS) == 100
    whole = [grade.Line("todo3.written", "written", "FAIL", "TODO 3 not written yet")]
    assert grade.line_points(whole, table) == {"todo3.written": 30}
    shared = {"todo9": 6.0}
    lines = [grade.Line("todo9.a", "a", "PASS", ""), grade.Line("todo9.b", "b", "FAIL", ""),
             grade.Line("todo9.c", "c", "READ", "")]
    assert grade.line_points(lines, shared) == {"todo9.a": 3.0, "todo9.b": 3.0}


def test_gradescope_results_hold_a_test_per_line_with_its_points():
    table = grade.points_table()
    outcome = {"status": "graded", "seconds": 12.3, "graded": {"script_sha256": "ab" * 32},
               "lines": [grade.Line("todo1.crops", "crops", "PASS", "ok"), grade.Line("todo1.per_image", "per", "FAIL",
                                                                                     "1 of 4"),
                         grade.Line("todo6.time", "answer: time", "READ", "40 words")]}
    results = grade.gradescope_results(outcome, table)
    assert results["score"] == 3 and results["execution_time"] == 12
    assert [(test["score"], test["max_score"], test["status"]) for test in results["tests"]] == [
        (3.0, 3.0, "passed"), (0.0, 3.0, "failed"), (0.0, 0.0, "passed")]
    assert results["tests"][2]["output"] == "for the teacher to read: 40 words"
    assert all({"name", "score", "max_score", "output"} <= set(test) for test in results["tests"])


def test_a_submission_that_runs_too_long_is_stopped_at_the_time_limit(tmp_path):
    student = tmp_path / "slow_student"
    student.mkdir()
    (student / "assignment_wildlife.py").write_text("import time\ntime.sleep(600)\n")
    outcome = grade.grade_submission(student, tmp_path / "work", train=False, time_limit=3, data=["--data", "standin"])
    assert outcome["status"] == "time limit (3 s) reached during the probe"
    assert outcome["seconds"] < 30
    assert {line.id for line in outcome["lines"] if line.status == "SKIP"} >= {"todo1.measured", "run.handed_in"}


@pytest.mark.slow
def test_a_class_folder_grades_in_one_command_without_writing_into_it(tmp_path, empty_keras_home):
    submissions = tmp_path / "submissions"
    alice = submissions / "alice" / "my_work"
    alice.mkdir(parents=True)
    (alice / "assignment_wildlife.py").write_text(student_solution({}))
    # Alice also sent a rubric of her own that passes everything: it must not grade her.
    (alice / "common").mkdir()
    (alice / "common" / "__init__.py").write_text("raise SystemExit('a student edited common/')\n")
    (submissions / "bob").mkdir()
    (submissions / "bob" / "notes.txt").write_text("forgot the script")
    before = tree_digest(submissions)

    out = tmp_path / "grades"
    assert grade.main([str(submissions), "--out", str(out), "--limit", "100", "--time-limit", "600"]) == 0
    assert tree_digest(submissions) == before  # nothing written into a submission
    with open(out / "gradebook.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"alice", "bob"}
    assert rows["bob"]["status"] == "no script" and rows["bob"]["score"] == "0"
    alice_row = rows["alice"]
    assert alice_row["status"] == "graded", alice_row
    assert alice_row["todo1"] == "10/10" and alice_row["todo3"].startswith(("28/30", "30/30"))  # speed may vary
    assert alice_row["todo5"] == "25/25" and alice_row["todo4"] == "15/15"
    assert "the stand-in, --limit 100" in alice_row["graded"] and len(alice_row["script_sha256"]) == 64
    results = json.loads((out / "alice" / "results.json").read_text())
    assert results["score"] == float(alice_row["score"]) and results["tests"]
    assert (out / "alice" / "rubric.txt").read_text().startswith("assignment check of alice")
    # No handed-in folder and no --train: the run's lines say so rather than fail.
    assert "SKIP  the output folder of a run" in (out / "alice" / "rubric.txt").read_text()
    assert not [name for name in os.listdir(tmp_path) if name.startswith("grade-")]


def test_the_grades_never_go_into_the_submissions(tmp_path, capsys):
    (tmp_path / "submissions").mkdir()
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "submissions"), "--out", str(tmp_path / "submissions" / "grades")])
    assert "grades never go into the submissions" in capsys.readouterr().err


def test_the_script_is_found_anywhere_outside_the_course_packages(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "assignment_wildlife.py").write_text("x = 1\n")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "assignment_wildlife.py").write_text("x = 2\n")
    assert grade.find_script(tmp_path) == tmp_path / "deep" / "er" / "assignment_wildlife.py"
    shutil.copy(REPO_ROOT / "assignment_wildlife.py", tmp_path / "assignment_wildlife.py")
    assert grade.find_script(tmp_path) == tmp_path / "assignment_wildlife.py"

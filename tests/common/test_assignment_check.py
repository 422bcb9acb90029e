"""common.assignment_check: what the starter says about a TODO, and the rubric of a handed-in folder."""

import json

from common import assignment_check


def test_todo_names_are_found_inside_tensorflows_wrapping():
    error = NotImplementedError('in user code:\n\n    File "x.py", line 3\n\n    NotImplementedError: '
                                'TODO 1: the augmentation map\n')
    assert assignment_check.todo_name(error, "default") == "TODO 1: the augmentation map"
    assert assignment_check.not_written(NotImplementedError(), "the naive pipeline") == \
        "the naive pipeline is not written yet"
    assert assignment_check.not_written(NotImplementedError("it needs TODO 4: the TFRecords"), "x") == \
        "it needs TODO 4: the TFRecords"


def test_rubric_of_a_starter_like_folder_fails_and_says_what_is_missing(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "status": "complete",
        "parts": {"naive": "complete", "augmentation": "skipped", "tfrecords": "skipped"},
        "skipped": {"augmentation": "TODO 2 not written yet: the augmentation pipeline",
                    "tfrecords": "TODO 4 not written yet: the TFRecords"},
        "results": {"naive": {"seconds": 4.0, "input_wait_share": 0.4}},
        "answers": {"summary": "too short"},
    }))
    lines = {requirement: (passed, measured) for passed, requirement, measured in assignment_check.grade(tmp_path)}
    assert lines["the run finished"][0] and lines["naive pipeline implemented"][0]
    assert lines["augmentation pipeline implemented"] == (False, "TODO 2 not written yet: the augmentation "
                                                                 "pipeline")
    assert not lines["TFRecords verify"][0] and "TODO 4" in lines["TFRecords verify"][1]
    assert lines["every analysis question answered"] == (
        False, "0 of 5; not yet (or under 12 words): summary, accuracy, time, bottleneck, tfrecord")
    text = assignment_check.format_rubric(assignment_check.grade(tmp_path), tmp_path)
    assert "FAIL" in text and text.splitlines()[-1].startswith("2 of 11 pass")


def test_rubric_of_a_missing_folder_says_to_run_first(tmp_path):
    assert assignment_check.main([str(tmp_path)]) == 1

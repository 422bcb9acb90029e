"""assignment_wildlife.py as a solution and as the student's starter, run as subprocesses on the stand-in.

One module-scoped ``--check`` run of the solution (all four pipelines, the check's own
quick settings) serves the output, split and rubric assertions; one ``--check`` run of
the generated starter serves the handout assertions; one tiny run, interrupted with
Ctrl-C and then with kill -9 and resumed, serves the resume assertions.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from common import assignment_check
from course import handout

from fakes import REPO_ROOT, student_solution

SCRIPT = "assignment_wildlife.py"
PIPELINES = assignment_check.PIPELINES
TINY = ["--data", "standin", "--limit", "100", "--epochs", "2", "--image-size", "64", "--crop-size", "48",
        "--batch-size", "16", "--workers", "1"]


def run_script(folder, *arguments, keras_home, timeout=900):
    return subprocess.run([sys.executable, SCRIPT, *arguments], cwd=folder, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "KERAS_HOME": str(keras_home)})


def read_csv(path):
    with open(path, newline="") as csv_file:
        rows = list(csv.DictReader(csv_file))
    return [row["img_path"] for row in rows], [int(row["label"]) for row in rows]


def files_under(folder):
    """The run's outputs (not .resume/: the starting weights and the TFRecords' split links;
    not probe/: the short second run that ``--check`` adds)."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                  if path.is_file() and not {".resume", "probe"} & set(path.relative_to(folder).parts))


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """One Keras cache for the module, so each stand-in size is generated once."""
    return tmp_path_factory.mktemp("assignment_keras_home")


@pytest.fixture(scope="module")
def solution_check(tmp_path_factory, keras_home):
    out = tmp_path_factory.mktemp("solution_check")
    result = run_script(REPO_ROOT, "--check", "--out", str(out), keras_home=keras_home)
    return out, result


@pytest.fixture(scope="module")
def starter(tmp_path_factory, keras_home):
    folder, zip_path = handout.make_handout(tmp_path_factory.mktemp("handout") / "wildlife_assignment")
    out = folder / "check_out"
    result = run_script(folder, "--check", "--out", str(out), keras_home=keras_home)
    return folder, zip_path, out, result


@pytest.mark.slow
def test_solution_runs_all_four_pipelines_and_passes_its_own_check(solution_check):
    out, result = solution_check
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    rubric = result.stdout[result.stdout.index("assignment check of"):]
    tally = rubric.strip().splitlines()[-1]
    checks = rubric.count("\n  PASS  ")
    assert "  FAIL  " not in rubric
    assert tally == f"{checks} of {checks} checks pass; 5 answer(s) for the teacher to read"
    assert checks >= 30 and "  READ  answer: bottleneck" in rubric  # every TODO measured, the answers to read
    assert "INFO  test accuracy" in rubric
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["skipped"] == {}
    assert all(metrics["parts"][name] == "complete" for name in (*PIPELINES, "tfrecords"))
    epochs = int(assignment_check.QUICK_FLAGS[assignment_check.QUICK_FLAGS.index("--epochs") + 1])
    for name in PIPELINES:
        assert len(metrics["results"][name]["epochs"]) == epochs
    waits = {name: metrics["results"][name]["input_wait_share"] for name in PIPELINES}
    assert waits["augmentation"] > waits["optimized"] and waits["naive"] > waits["optimized"], waits
    assert {"Read", "Map", "Train", "Test", "Epoch"} <= set(metrics["results"]["naive"]["stages"])
    # The lab's loss (from_logits=True on softmax outputs) can never go below -1 + ln(e + 9) = 1.46;
    # the fixed loss must, on the easy stand-in, in 3 epochs.
    final_losses = [metrics["results"][name]["epochs"][-1]["train_loss"] for name in PIPELINES]
    assert min(final_losses) < 1.46 and all(loss < 2.3 for loss in final_losses), final_losses
    assert "Decode" in metrics["results"]["optimized"]["stages"]


@pytest.mark.slow
def test_solution_writes_every_output_and_marks_the_stand_in(solution_check):
    out, result = solution_check
    expected = ["train.csv", "test.csv", "samples.png", "augmentation_examples.png", "results.md", "analysis.md",
                "metrics.json", "run.json", "tfrecords/dataset.json", ".resume/weights/initial.weights.h5"]
    expected += [f"timeline_{name}.png" for name in PIPELINES]
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in [name for name in expected if name.endswith(".png")]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(out.rglob("*.partial*"))
    assert "OFFLINE STAND-IN" in result.stdout
    summary = [line for line in result.stdout.splitlines() if line.startswith("assignment_wildlife")][-1]
    assert summary.startswith("assignment_wildlife (stand-in data) | naive_s=")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["is_standin"] is True and metrics["measured"]["is_standin"] is True
    rejected = {Path(item["path"]).name for item in metrics["data"]["rejected"]}
    assert {"broken_truncated.jpg", "broken_not_an_image.jpg"} <= rejected
    analysis = (out / "analysis.md").read_text()
    assert "(stand-in)" in analysis.splitlines()[0] and "**stand-in**" in analysis
    for question in assignment_check.QUESTIONS.values():
        assert f"## {question}" in analysis
    assert "Not answered yet" not in analysis and "| tfrecord |" in analysis
    # The analysis quotes the run's own numbers.
    naive = metrics["measured"]["pipelines"]["naive"]
    assert f"{100 * naive['input_wait_share']:.0f}%" in metrics["answers"]["bottleneck"]


@pytest.mark.slow
def test_split_is_stratified_and_the_tfrecords_hold_the_same_split(solution_check):
    out, _ = solution_check
    metrics = json.loads((out / "metrics.json").read_text())
    class_names = metrics["data"]["class_names"]
    train_paths, train_labels = read_csv(out / "train.csv")
    test_paths, test_labels = read_csv(out / "test.csv")
    assert len(train_paths) == metrics["data"]["train_images"] == metrics["data"]["limit"]
    assert not set(train_paths) & set(test_paths)
    for path, label in zip(train_paths + test_paths, train_labels + test_labels, strict=True):
        assert Path(path).parent.name == class_names[label]
    for labels in (train_labels, test_labels):
        counts = Counter(labels)
        assert set(counts) == set(range(len(class_names))) and max(counts.values()) - min(counts.values()) <= 1
    sidecar = json.loads((out / "tfrecords" / "dataset.json").read_text())
    assert sidecar["label_to_index"] == {name: index for index, name in enumerate(class_names)}
    for split, labels in (("train", train_labels), ("test", test_labels)):
        assert sidecar["splits"][split]["class_counts"] == {class_names[label]: count
                                                           for label, count in Counter(labels).items()}


@pytest.mark.slow
def test_handout_holds_the_starter_and_what_it_imports_but_no_solution(starter):
    folder, zip_path, _, _ = starter
    assert zip_path.is_file() and zip_path.stat().st_size > 0
    assert (folder / "requirements.txt").read_text() == (REPO_ROOT / "requirements.txt").read_text()
    assert (folder / "tfrecord_tools" / "__main__.py").is_file()
    assert (folder / "common" / "datasets" / "wildlife.py").is_file()
    assert (folder / "common" / "assignment_check" / "measure.py").is_file()
    assert (folder / "assignment_wildlife.ipynb").is_file()  # the starter as a notebook too
    assert not (folder / "course").exists()  # the teacher's tools stay with the teacher
    readme = (folder / "README.md").read_text()
    for needed in ("oregon-wildlife", "virtualdvid", "Kaggle login", "total img num: 7168", "--limit",
                   "--check", "What to hand in"):
        assert needed in readme, needed
    solution = (REPO_ROOT / SCRIPT).read_text()
    starter_text = (folder / SCRIPT).read_text()
    outside = set(handout.strip_solutions(solution).splitlines())
    only_inside = [line for line in handout.solution_lines(solution) if line not in outside]
    assert len(only_inside) > 30
    starter_lines = set(starter_text.splitlines())
    assert not [line for line in only_inside if line in starter_lines]
    assert "### BEGIN SOLUTION" not in starter_text and "course" not in starter_text
    assert starter_text.count("# YOUR CODE HERE") == 6
    assert starter_text.count("# TODO ") == solution.count("# TODO ") == 6


@pytest.mark.slow
def test_starter_runs_offline_skips_what_is_not_written_and_fails_the_check(starter):
    _, _, out, result = starter
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for line in ("augmentation: skipped (TODO 2 not written yet: the augmentation pipeline)",
                 "optimized: skipped (TODO 3 not written yet: the optimized pipeline)",
                 "tfrecords: skipped (TODO 4 not written yet: the TFRecords)",
                 "tfrecord: skipped (it needs TODO 4: the TFRecords)",
                 "augmentation_examples.png: skipped (TODO 1 not written yet: the augmentation map)"):
        assert line in result.stdout, line
    assert (out / "timeline_naive.png").is_file()  # day one: the naive baseline and its timeline
    analysis = (out / "analysis.md").read_text()
    assert "| naive |" in analysis and analysis.count("Not answered yet (TODO 6)") == 5
    rubric = result.stdout[result.stdout.index("assignment check of"):]
    assert "PASS  naive pipeline trained" in rubric
    for missing in ("FAIL  augment is written and runs", "TODO 1 not written yet",
                    "FAIL  the augmentation pipeline is written and runs", "TODO 2 not written yet",
                    "FAIL  the optimized pipeline is written and runs", "TODO 3 not written yet",
                    "FAIL  the TFRecords verify", "FAIL  the TFRecord pipeline is written and runs",
                    "it needs TODO 4: the TFRecords", "FAIL  answer: summary"):
        assert missing in rubric, missing


def wait_for_part(out, part, process, timeout=240):
    """Wait until run.json says ``part`` finished (the run is then in a later part)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        try:
            parts = json.loads((out / "run.json").read_text())["parts"]
        except (OSError, ValueError, KeyError):
            parts = {}
        if parts.get(part, {}).get("status") == "complete":
            return
        time.sleep(0.2)
    raise AssertionError(f"{part} did not finish in {timeout} s")


def start(out, keras_home):
    # A shell's background job ignores SIGINT, and a child inherits that: give the script the default back.
    return subprocess.Popen([sys.executable, SCRIPT, *TINY, "--out", str(out)], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            env={**os.environ, "KERAS_HOME": str(keras_home)})


@pytest.mark.slow
def test_ctrl_c_then_kill_9_then_a_re_run_finishes_without_recomputing_finished_pipelines(
        tmp_path, keras_home, solution_check):
    out = tmp_path / "resume"
    first = start(out, keras_home)
    wait_for_part(out, "naive", first)
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130 and "Traceback" not in stderr
    assert "interrupted by Ctrl-C" in stderr and "run the same command again" in stderr
    assert len([line for line in stderr.splitlines() if "interrupt" in line]) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and "naive" in metrics["finished_parts"]

    second = start(out, keras_home)
    wait_for_part(out, "optimized", second)
    os.killpg(second.pid, signal.SIGKILL)  # kill -9 during the TFRecord pipeline
    second.communicate(timeout=60)
    finished_before = [name for name, part in json.loads((out / "run.json").read_text())["parts"].items()
                       if part["status"] == "complete"]
    assert {"naive", "augmentation", "optimized"} <= set(finished_before)

    third = run_script(REPO_ROOT, *TINY, "--out", str(out), keras_home=keras_home)
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-3000:]
    for name in ("naive", "augmentation", "optimized"):
        assert f"{name}: finished earlier" in third.stdout
        assert f"| {name} pipeline:" not in third.stdout  # not trained again
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and set(finished_before) <= set(metrics["resumed_parts"])
    assert all(len(metrics["results"][name]["epochs"]) == 2 for name in PIPELINES)
    # The same files as an uninterrupted run's (the solution's check run), nothing left over.
    check_out, _ = solution_check
    assert files_under(out) == files_under(check_out)


@pytest.mark.slow
def test_vgg16_offline_fails_fast_with_instructions(tmp_path, keras_home):
    result = run_script(REPO_ROOT, "--data", "standin", "--backbone", "vgg16", "--out", str(tmp_path / "out"),
                        keras_home=keras_home, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in result.stderr and "--weights none" in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_bad_flags_are_refused_before_any_work(tmp_path, keras_home):
    for flags, needed in ((["--shuffle-buffer", "0"], "positive whole number"),
                          (["--pipelines", "naive,optimized"], "invalid choice"),
                          (["--crop-size", "400"], "--crop-size 400")):
        result = run_script(REPO_ROOT, *flags, "--out", str(tmp_path / "out"), keras_home=keras_home, timeout=60)
        assert result.returncode == 2 and needed in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_a_too_small_limit_is_refused_in_one_line_before_any_photo_is_decoded(tmp_path, keras_home):
    result = run_script(REPO_ROOT, "--data", "standin", "--limit", "30", "--out", str(tmp_path / "out"),
                        keras_home=keras_home, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # The stand-in lists 802 training files (2 of them broken) and 200 test files; batches hold 32.
    assert result.stderr.strip() == (
        "error: --limit 30 is too small for the Oregon Wildlife stand-in (802 training / 200 test images, 10 "
        "classes): it is smaller than one global batch (32 images). The smallest accepted is --limit 39 (at --limit "
        "38, it would leave a class without a test image: its test share is 9 images for 10 classes); raise --limit "
        "to 39 or more.")
    assert "data root:" not in result.stdout and not list((tmp_path / "out").glob("*"))


# --------------------------------------------------------------------------- students' solutions, probed


PROBE = ["--data", "standin", "--limit", "100", "--image-size", "64", "--crop-size", "48", "--batch-size", "16",
         "--workers", "1", "--probe", "--fresh"]

UNOPTIMIZED = {
    # TODO 3 as written without the lesson: no parallel calls, no cache, no prefetch.
    3: """
    def decoded(csv_path):
        return (timeline.time_measured_dataset([str(csv_path)], datasets.read_csv, read_bytes, BYTES_SPEC, recorder)
                .map(timeline.timed_map(decode_element, recorder, stage="Decode")))

    train = (decoded(TRAIN_CSV).shuffle(config.shuffle_buffer, seed=config.seed).batch(config.batch_size)
             .map(timeline.timed_map(augment, recorder)))
    test = decoded(TEST_CSV).batch(config.batch_size).map(timeline.timed_map(center_crop, recorder))
    return train, test
    """,
    # TODO 5 with the labels shuffled apart from the images.
    5: """
    def pipeline(split, batch_map):
        photos = tfrecord_tools.load(TFRECORD_DIR, split, batch_size=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                     cache=True, shuffle=split == "train", seed=config.seed,
                                     shuffle_buffer=config.shuffle_buffer)
        images = photos.map(lambda image, label: image)
        labels = photos.map(lambda image, label: label).shuffle(1000)
        return (timeline.with_timeline_tags(tf.data.Dataset.zip((images, labels)), recorder)
                .batch(config.batch_size)
                .map(timeline.timed_map(batch_map, recorder), num_parallel_calls=AUTOTUNE)
                .prefetch(AUTOTUNE))

    return pipeline("train", augment), pipeline("test", center_crop)
    """,
}

SHORTCUTS = {
    # TODO 3 that trains on two batches an epoch.
    3: """
    def decoded(csv_path):
        return (timeline.time_measured_dataset([str(csv_path)], datasets.read_csv, read_bytes, BYTES_SPEC, recorder)
                .map(timeline.timed_map(decode_element, recorder, stage="Decode"), num_parallel_calls=AUTOTUNE))

    train = (decoded(TRAIN_CSV).cache().shuffle(config.shuffle_buffer, seed=config.seed).batch(config.batch_size)
             .take(2).map(timeline.timed_map(augment, recorder), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
    test = (decoded(TEST_CSV).cache().batch(config.batch_size)
            .map(timeline.timed_map(center_crop, recorder), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
    return train, test
    """,
    # TODO 5 that reads the photos through the CSV files instead of the records.
    5: """
    def pipeline(csv_path, batch_map):
        return (timeline.time_measured_dataset([str(csv_path)], datasets.read_csv, read_image, IMAGE_SPEC, recorder)
                .cache()
                .batch(config.batch_size)
                .map(timeline.timed_map(batch_map, recorder), num_parallel_calls=AUTOTUNE)
                .prefetch(AUTOTUNE))

    return pipeline(TRAIN_CSV, augment), pipeline(TEST_CSV, center_crop)
    """,
}


def probe_student(tmp_path, replacements, keras_home):
    """Write the student's script beside the course's packages, probe it, grade the probe; the lines by id."""
    folder = tmp_path / "student"
    folder.mkdir()
    for package in ("common", "tfrecord_tools"):
        (folder / package).symlink_to(REPO_ROOT / package)
    (folder / SCRIPT).write_text(student_solution(replacements))
    result = run_script(folder, *PROBE, "--out", str(tmp_path / "probe"), keras_home=keras_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {line.id: line for line in assignment_check.grade(tmp_path / "probe", tmp_path / "probe" / "probe.json")}


@pytest.mark.slow
def test_an_unoptimized_pipeline_and_labels_shuffled_from_their_images_fail_their_lines(tmp_path, keras_home):
    lines = probe_student(tmp_path, UNOPTIMIZED, keras_home)
    failed = {line_id for line_id, line in lines.items() if line.status == "FAIL" and line_id.startswith("todo")}
    assert {"todo3.parallel", "todo3.cache", "todo3.prefetch", "todo3.decoded_once", "todo5.labels",
            "todo5.reads_records"} <= failed
    assert "no prefetch at the end of the train pipeline" in lines["todo3.prefetch"].measured
    # What the student did right still passes.
    for line_id in ("todo1.crops", "todo1.per_image", "todo2.whole_split", "todo2.labels", "todo3.batch_first",
                    "todo3.whole_split", "todo3.labels", "todo4.verify", "todo4.labels", "todo5.prefetch",
                    "todo5.cache", "todo5.whole_split"):
        assert lines[line_id].status == "PASS", lines[line_id]


@pytest.mark.slow
def test_two_batches_an_epoch_and_a_tfrecord_pipeline_that_reads_the_jpegs_fail_their_lines(tmp_path, keras_home):
    lines = probe_student(tmp_path, SHORTCUTS, keras_home)
    assert lines["todo3.whole_split"].status == "FAIL"
    assert "yields 32 of 100 training images" in lines["todo3.whole_split"].measured
    assert lines["todo5.reads_records"].status == "FAIL"
    assert "the labels do not come from the records" in lines["todo5.reads_records"].measured
    for line_id in ("todo3.parallel", "todo3.cache", "todo3.prefetch", "todo3.decoded_once", "todo5.labels",
                    "todo5.whole_split", "todo5.parallel"):
        assert lines[line_id].status == "PASS", lines[line_id]


@pytest.mark.slow
def test_a_hand_edited_metrics_json_is_caught_by_the_hand_in_grader(tmp_path, solution_check):
    import shutil

    out, _ = solution_check
    handed_in = tmp_path / "handed_in"
    shutil.copytree(out, handed_in, ignore=shutil.ignore_patterns("probe", ".resume"))
    lines = {line.id: line for line in assignment_check.grade(handed_in)}
    assert lines["run.consistent"].status == "PASS" and lines["todo3.measured"].status == "SKIP"
    metrics = json.loads((handed_in / "metrics.json").read_text())
    metrics["results"]["augmentation"]["seconds"] *= 3  # a speed-up the student did not measure
    metrics["results"]["optimized"]["test_accuracy"] = 0.99
    (handed_in / "metrics.json").write_text(json.dumps(metrics))
    lines = {line.id: line for line in assignment_check.grade(handed_in)}
    assert lines["run.consistent"].status == "FAIL"
    assert "augmentation" in lines["run.consistent"].measured and "results.md" in lines["run.consistent"].measured
